//! The functions a template may call: Go's builtins (`and`/`or` are in the
//! executor, which evaluates their arguments lazily) and Docker's (`json`, `join`,
//! `split`, `lower`, `upper`, `title`, `pad`, `truncate`), each checking its
//! arguments' types as Go's reflection-based call does.

use std::cmp::Ordering;

use serde_json::Value as J;

use super::exec::Exec;
use super::printf::{sprint, sprintf};
use super::value::{Shape, Val};

/// The longest string one function call may make.
pub const MAX_VALUE: usize = 16 << 20;

/// Every function a template may name (checked when it is parsed, as Go does).
pub const NAMES: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "eq", "ne", "lt", "le", "gt", "ge", "print", "printf", "println",
    "html", "js", "urlquery", "call", "json", "join", "split", "lower", "upper", "title", "pad", "truncate",
];

type R<'d> = Result<Val<'d>, String>;

/// Calls `name` with `args` (the pipeline's value, if any, last).
pub fn call<'d>(e: &Exec<'_, 'd>, name: &str, args: Vec<Val<'d>>) -> R<'d> {
    let room = e.room();
    // Docker renders a table's header with its functions passing their first
    // argument through, so `{{upper .Names}}` heads its column `NAMES`.
    if e.header && matches!(name, "json" | "split" | "join" | "title" | "lower" | "upper" | "truncate") {
        return args.into_iter().next().ok_or_else(|| arity(name, 1, 0));
    }
    let v = match name {
        "not" => {
            want(name, &args, 1)?;
            Val::owned(J::Bool(!args[0].truth()))
        }
        "len" => {
            want(name, &args, 1)?;
            Val::int(len(&args[0])? as i64)
        }
        "index" => index(args)?,
        "slice" => slice(args)?,
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            let mut any = false;
            for b in &args[1..] {
                any |= compare(&args[0], b, true)? == Ordering::Equal;
            }
            Val::owned(J::Bool(any))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(name, &args, 2)?;
            let o = compare(&args[0], &args[1], name == "ne")?;
            let b = match name {
                "ne" => o != Ordering::Equal,
                "lt" => o == Ordering::Less,
                "le" => o != Ordering::Greater,
                "gt" => o == Ordering::Greater,
                _ => o != Ordering::Less,
            };
            Val::owned(J::Bool(b))
        }
        "print" => Val::str(sprint(&args, false, room)?),
        "println" => Val::str(sprint(&args, true, room)?),
        "printf" => {
            let (f, rest) = args.split_first().ok_or_else(|| arity(name, 1, 0))?;
            Val::str(sprintf(string(f)?, rest, room)?)
        }
        "html" => Val::str(html(&sprint(&args, false, room)?)),
        "js" => Val::str(js(&sprint(&args, false, room)?)),
        "urlquery" => Val::str(urlquery(&sprint(&args, false, room)?)),
        "call" => return Err("no function values here to call".into()),
        "json" => {
            want(name, &args, 1)?;
            let s = serde_json::to_string(&without_methods(&args[0].j)).map_err(|e| e.to_string())?;
            Val::str(s)
        }
        "join" => {
            want(name, &args, 2)?;
            let parts = strings(&args[0])?;
            let sep = string(&args[1])?;
            if parts.iter().map(|p| p.len() + sep.len()).sum::<usize>() > room {
                return Err("result over the output limit".into());
            }
            Val::str(parts.join(sep))
        }
        "split" => {
            want(name, &args, 2)?;
            let (s, sep) = (string(&args[0])?, string(&args[1])?);
            let parts: Vec<J> = if sep.is_empty() {
                s.chars().map(|c| J::String(c.to_string())).collect()
            } else {
                s.split(sep).map(|p| J::String(p.into())).collect()
            };
            Val::owned(J::Array(parts))
        }
        "lower" => {
            want(name, &args, 1)?;
            Val::str(string(&args[0])?.to_lowercase())
        }
        "upper" => {
            want(name, &args, 1)?;
            Val::str(string(&args[0])?.to_uppercase())
        }
        "title" => {
            want(name, &args, 1)?;
            Val::str(title(string(&args[0])?))
        }
        "pad" => {
            want(name, &args, 3)?;
            let s = string(&args[0])?;
            let (l, r) = (int(&args[1])?, int(&args[2])?);
            if s.is_empty() {
                return Ok(Val::str(""));
            }
            let (l, r) = (usize::try_from(l).unwrap_or(0), usize::try_from(r).unwrap_or(0));
            if l.saturating_add(r).saturating_add(s.len()) > room {
                return Err("result over the output limit".into());
            }
            Val::str(format!("{}{s}{}", " ".repeat(l), " ".repeat(r)))
        }
        "truncate" => {
            want(name, &args, 2)?;
            let s = string(&args[0])?;
            let n = usize::try_from(int(&args[1])?).map_err(|_| "negative length")?;
            // Docker cuts bytes, not characters.
            Val::str(if s.len() < n { s.to_string() } else { String::from_utf8_lossy(&s.as_bytes()[..n]).into_owned() })
        }
        _ => return Err(format!("function {name:?} not defined")),
    };
    if v.j.as_str().is_some_and(|s| s.len() > room) {
        return Err("result over the output limit".into());
    }
    Ok(v)
}

fn arity(name: &str, want: usize, got: usize) -> String {
    format!("wrong number of args for {name}: want {want} got {got}")
}

fn want(name: &str, args: &[Val], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(arity(name, n, args.len()));
    }
    Ok(())
}

fn wrong(want: &str, v: &Val) -> String {
    format!("wrong type for value; expected {want}; got {}", v.type_name())
}

fn string<'a>(v: &'a Val) -> Result<&'a str, String> {
    v.j.as_str().ok_or_else(|| wrong("string", v))
}

fn int(v: &Val) -> Result<i64, String> {
    match &*v.j {
        J::Number(n) if !n.is_f64() => n.as_i64().ok_or_else(|| wrong("int", v)),
        _ => Err(wrong("int", v)),
    }
}

fn strings(v: &Val) -> Result<Vec<String>, String> {
    match &*v.j {
        J::Array(a) => a.iter().map(|e| e.as_str().map(str::to_string).ok_or_else(|| wrong("[]string", v))).collect(),
        J::Null if v.shape == Shape::Plain => Ok(Vec::new()),
        _ => Err(wrong("[]string", v)),
    }
}

fn len(v: &Val) -> Result<usize, String> {
    match &*v.j {
        J::String(s) => Ok(s.len()),
        J::Array(a) => Ok(a.len()),
        J::Object(o) if v.shape != Shape::Plain || o.is_empty() => Ok(o.len()),
        J::Object(o) => Ok(o.keys().filter(|k| !k.ends_with("()")).count()),
        J::Null if matches!(v.shape, Shape::Plain | Shape::Map | Shape::StrMap) => Ok(0),
        _ => Err(format!("len of type {}", v.type_name())),
    }
}

/// `index X K…`: X's element at each key in turn; a map's missing key is its
/// element type's zero value (`""` for labels), as Go's.
fn index(args: Vec<Val>) -> R {
    let mut it = args.into_iter();
    let mut v = it.next().ok_or("wrong number of args for index: want at least 1 got 0")?;
    for k in it {
        v = match (&*v.j, &*k.j) {
            (J::Array(a), J::Number(n)) => {
                let i = n.as_i64().filter(|i| *i >= 0 && (*i as usize) < a.len());
                let i = i.ok_or_else(|| format!("index out of range: {}", k.printed()))?;
                v.elem(i as usize).ok_or("index out of range")?
            }
            (J::String(s), J::Number(n)) => {
                let i = n.as_i64().filter(|i| *i >= 0 && (*i as usize) < s.len());
                let i = i.ok_or_else(|| format!("index out of range: {}", k.printed()))?;
                Val::int(i64::from(s.as_bytes()[i as usize]))
            }
            (J::Object(_), J::String(key)) => {
                let zero = if v.shape == Shape::StrMap { Val::str("") } else { Val::missing() };
                let key = key.clone();
                v.child(&key).unwrap_or(zero)
            }
            (J::Null, J::String(_)) if v.shape == Shape::StrMap => Val::str(""),
            (J::Null, _) => return Err("index of untyped nil".into()),
            (J::Object(_), _) => return Err(wrong("string", &k)),
            _ => return Err(format!("can't index item of type {}", v.type_name())),
        };
    }
    Ok(v)
}

/// `slice X I J`: a substring (by bytes) or a sublist.
fn slice(args: Vec<Val>) -> R {
    let (x, idx) = args.split_first().ok_or("wrong number of args for slice: want at least 1 got 0")?;
    if idx.len() > 2 {
        return Err("too many slice indexes".into());
    }
    let n = match &*x.j {
        J::String(s) => s.len(),
        J::Array(a) => a.len(),
        _ => return Err(format!("can't slice item of type {}", x.type_name())),
    };
    let mut bounds = [0, n];
    for (b, i) in bounds.iter_mut().zip(idx) {
        *b = usize::try_from(int(i)?).map_err(|_| "index out of range")?;
    }
    let [lo, hi] = bounds;
    if lo > hi || hi > n {
        return Err(format!("index out of range: {hi}"));
    }
    Ok(match &*x.j {
        J::String(s) => Val::str(String::from_utf8_lossy(&s.as_bytes()[lo..hi]).into_owned()),
        J::Array(a) => Val::owned(J::Array(a[lo..hi].to_vec())),
        _ => unreachable!("checked above"),
    })
}

/// Go's `eq`/`lt` on basic kinds; `equality` allows bools and nil as well.
fn compare(a: &Val, b: &Val, equality: bool) -> Result<Ordering, String> {
    match (&*a.j, &*b.j) {
        (J::String(x), J::String(y)) => Ok(x.cmp(y)),
        (J::Number(x), J::Number(y)) => match (x.as_i64(), y.as_i64(), x.is_f64() || y.is_f64()) {
            (Some(x), Some(y), false) => Ok(x.cmp(&y)),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                x.partial_cmp(&y).ok_or_else(|| "incomparable numbers".into())
            }
        },
        (J::Bool(x), J::Bool(y)) if equality => Ok(x.cmp(y)),
        (J::Null, J::Null) if equality => Ok(Ordering::Equal),
        (J::Null, _) | (_, J::Null) if equality => Ok(Ordering::Less),
        (J::Array(_) | J::Object(_), _) | (_, J::Array(_) | J::Object(_)) => Err(format!(
            "non-comparable type {}",
            if a.j.is_array() || a.j.is_object() { a.printed() } else { b.printed() }
        )),
        (J::Bool(_), J::Bool(_)) => Err("invalid type for comparison".into()),
        _ => Err("incompatible types for comparison".into()),
    }
}

/// The value as `json` encodes it: the helpers behind methods left out, and an
/// object whose JSON differs from its template fields (an event's legacy lower-case
/// fields) replaced by the JSON it keeps under `json()`.
pub fn without_methods(j: &J) -> J {
    match j {
        J::Object(o) if o.contains_key("json()") => without_methods(&o["json()"]),
        J::Object(o) => J::Object(
            o.iter().filter(|(k, _)| !k.ends_with("()")).map(|(k, v)| (k.clone(), without_methods(v))).collect(),
        ),
        J::Array(a) => J::Array(a.iter().map(without_methods).collect()),
        j => j.clone(),
    }
}

/// Go's `strings.Title`: a letter after anything but a letter, digit, `_` or `'`
/// starts a word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev: Option<char> = None;
    for c in s.chars() {
        let starts = prev.is_none_or(|p| !(p.is_alphanumeric() || p == '_' || p == '\''));
        if starts {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    out
}

fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' | '>' | '&' | '=' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn urlquery(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b' ' => out.push('+'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
