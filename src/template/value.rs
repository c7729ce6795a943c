//! What a template works on: a piece of a JSON document (borrowed where it can be),
//! with the Go type Docker's own struct gives that field where it matters for
//! printing. Docker runs templates over typed structs, so an absent list prints `[]`,
//! an absent map `map[]` and an absent pointer `<nil>`; JSON has only `null`, so the
//! field's name says which (see `shape_of`).

use std::borrow::Cow;

use serde_json::Value as J;

/// The Go type behind a value, as far as printing and zero values need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A struct, a slice, or a value of a slice or map.
    Plain,
    /// `map[string]string` (labels, options): a missing key is `""`.
    StrMap,
    /// Any other map.
    Map,
    /// A pointer: `null` prints `<nil>`.
    Ptr,
    /// A string Docker's JSON omits when empty: `null` prints nothing.
    Str,
    /// A key a map lacks: prints `<no value>`.
    Missing,
}

/// Docker's map- and pointer-typed fields, by name; every other `null` in its
/// inspect documents is a nil slice.
pub fn shape_of(field: &str) -> Shape {
    match field {
        "Labels" | "Options" | "DriverOpts" | "Annotations" | "Sysctls" | "StorageOpt" | "Tmpfs" | "Data"
        | "Attributes" | "Label()" => Shape::StrMap,
        "Volumes" | "ExposedPorts" | "Ports" | "PortBindings" | "Networks" | "Containers" => Shape::Map,
        "Healthcheck" | "Health" | "RestartPolicy" | "IPAM" | "Metadata" | "UsageData" | "RootFS" | "PidsLimit" => {
            Shape::Ptr
        }
        "StopSignal" | "Variant" | "OsVersion" | "Domainname" | "MacAddress" => Shape::Str,
        _ => Shape::Plain,
    }
}

/// A value during execution.
#[derive(Debug, Clone)]
pub struct Val<'d> {
    pub j: Cow<'d, J>,
    pub shape: Shape,
}

impl<'d> Val<'d> {
    /// A value borrowed from the document.
    pub fn data(j: &'d J, shape: Shape) -> Val<'d> {
        Val { j: Cow::Borrowed(j), shape }
    }

    /// A value made while executing.
    pub fn owned(j: J) -> Val<'d> {
        Val { j: Cow::Owned(j), shape: Shape::Plain }
    }

    pub fn str(s: impl Into<String>) -> Val<'d> {
        Val::owned(J::String(s.into()))
    }

    pub fn int(i: i64) -> Val<'d> {
        Val::owned(J::from(i))
    }

    pub fn missing() -> Val<'d> {
        Val { j: Cow::Owned(J::Null), shape: Shape::Missing }
    }

    /// Child `key` of an object, borrowed when this value is.
    pub fn child(self, key: &str) -> Option<Val<'d>> {
        let shape = if matches!(self.shape, Shape::StrMap | Shape::Map) { Shape::Plain } else { shape_of(key) };
        let j = match self.j {
            Cow::Borrowed(j) => Cow::Borrowed(j.get(key)?),
            Cow::Owned(mut j) => Cow::Owned(j.as_object_mut()?.remove(key)?),
        };
        Some(Val { j, shape })
    }

    /// Element `i` of an array.
    pub fn elem(&self, i: usize) -> Option<Val<'d>> {
        let j = match &self.j {
            Cow::Borrowed(j) => Cow::Borrowed(j.get(i)?),
            Cow::Owned(j) => Cow::Owned(j.get(i)?.clone()),
        };
        Some(Val { j, shape: Shape::Plain })
    }

    /// Go's truth: false, 0, nil, and empty strings, slices and maps are false.
    pub fn truth(&self) -> bool {
        match &*self.j {
            J::Null => false,
            J::Bool(b) => *b,
            J::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            J::String(s) => !s.is_empty(),
            J::Array(a) => !a.is_empty(),
            // A struct is always true; only a map can be empty.
            J::Object(o) => !o.is_empty() || self.shape == Shape::Plain,
        }
    }

    /// The Go type's name, as `%T` and `printf`'s complaints spell it.
    pub fn type_name(&self) -> &'static str {
        match &*self.j {
            J::Null => "<nil>",
            J::Bool(_) => "bool",
            J::Number(n) if n.is_f64() => "float64",
            J::Number(_) => "int",
            J::String(_) => "string",
            J::Array(_) => "[]string",
            J::Object(_) if self.shape == Shape::StrMap => "map[string]string",
            J::Object(_) => "map[string]interface {}",
        }
    }

    /// The value as Go's `fmt` prints it with `%v` (what `{{.X}}` prints).
    pub fn print(&self, out: &mut String) {
        match (&*self.j, self.shape) {
            (J::Null, Shape::Plain) => out.push_str("[]"),
            (J::Null, Shape::StrMap | Shape::Map) => out.push_str("map[]"),
            (J::Null, Shape::Ptr) => out.push_str("<nil>"),
            (J::Null, Shape::Str) => {}
            (J::Null, Shape::Missing) => out.push_str("<no value>"),
            (j, shape) => print_json(j, shape, out),
        }
    }

    /// `print` into a new string.
    pub fn printed(&self) -> String {
        let mut s = String::new();
        self.print(&mut s);
        s
    }
}

/// A JSON value as `%v` prints the Go value it was encoded from.
fn print_json(j: &J, shape: Shape, out: &mut String) {
    match j {
        J::Null => out.push_str("<nil>"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) if !n.is_f64() => out.push_str(&i.to_string()),
            (_, Some(u)) if !n.is_f64() => out.push_str(&u.to_string()),
            _ => out.push_str(&go_float(n.as_f64().unwrap_or(0.0), None)),
        },
        J::String(s) => out.push_str(s),
        J::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_json(e, Shape::Plain, out);
            }
            out.push(']');
        }
        // An empty struct (ExposedPorts' values) prints `{}`; a struct with fields
        // prints as a map here, its fields named (JSON keeps no field order).
        J::Object(o) if o.is_empty() && shape == Shape::Plain => out.push_str("{}"),
        J::Object(o) => {
            out.push_str("map[");
            for (i, (k, v)) in o.iter().filter(|(k, _)| !k.ends_with("()")).enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                print_json(v, Shape::Plain, out);
            }
            out.push(']');
        }
    }
}

/// A float as Go's `%g` formats it (`%v` is `%g` with the shortest precision):
/// an exponent (`1e+06`) when it is below -4 or at least the precision (6 for the
/// shortest form).
pub fn go_float(f: f64, prec: Option<usize>) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let e = match prec {
        None => format!("{f:e}"),
        Some(p) => format!("{f:.*e}", p.max(1) - 1),
    };
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mant = if mant.contains('.') { mant.trim_end_matches('0').trim_end_matches('.') } else { mant };
    let digits = mant.trim_start_matches('-').replace('.', "").len() as i32;
    let eprec = match prec {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i32;
            if p > digits && digits > exp {
                digits
            } else {
                p
            }
        }
    };
    if exp < -4 || exp >= eprec {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        format!("{f:.*}", (digits - 1 - exp).max(0) as usize)
    }
}

/// Go's `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_gos_shortest_g() {
        // Expectations from Go's fmt.Sprint (documented in strconv.FormatFloat).
        for (f, want) in
            [(3.0, "3"), (0.5, "0.5"), (1e6, "1e+06"), (123456.7, "123456.7"), (1e-5, "1e-05"), (0.0001, "0.0001")]
        {
            assert_eq!(go_float(f, None), want, "{f}");
        }
        assert_eq!(go_float(1.23456, Some(3)), "1.23");
        assert_eq!(go_float(1234.5, Some(2)), "1.2e+03");
    }

    #[test]
    fn quote_is_gos() {
        assert_eq!(quote("a\"b\n\x1b"), "\"a\\\"b\\n\\x1b\"");
    }
}
