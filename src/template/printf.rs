//! Go's `fmt.Sprint`, `Sprintln` and `Sprintf` for template values: the verbs
//! `v s q d x X o b c U e E f F g G t T %`, the flags `+ - # 0 space`, width and
//! precision, and Go's in-band complaints (`%!d(string=x)`, `%!v(MISSING)`,
//! `%!(EXTRA …)`). Width and precision are bounded by what the output may still hold.

use serde_json::Value as J;

use super::value::{go_float, quote, Val};

/// `print` (`ln`: `println`): operands printed as `%v`, spaced as Go spaces them.
pub fn sprint(args: &[Val], ln: bool, room: usize) -> Result<String, String> {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = |v: &Val| v.j.is_string();
        if i > 0 && (ln || !(is_str(a) || is_str(&args[i - 1]))) {
            out.push(' ');
        }
        a.print(&mut out);
        if out.len() > room {
            return Err("result over the output limit".into());
        }
    }
    if ln {
        out.push('\n');
    }
    Ok(out)
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// `printf FORMAT ARGS…`.
pub fn sprintf(format: &str, args: &[Val], room: usize) -> Result<String, String> {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if out.len() > room {
            return Err("result over the output limit".into());
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = number(&mut chars, room)?;
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(number(&mut chars, room)?.unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let body = verb_body(verb, &spec, arg);
        pad(&mut out, &body, &spec, verb);
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[next..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("{}={}", a.type_name(), a.printed()));
        }
        out.push(')');
    }
    if out.len() > room {
        return Err("result over the output limit".into());
    }
    Ok(out)
}

fn number(chars: &mut std::iter::Peekable<std::str::Chars>, room: usize) -> Result<Option<usize>, String> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        chars.next();
        let v = n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize);
        if v > room {
            return Err("printf width or precision over the output limit".into());
        }
        n = Some(v);
    }
    Ok(n)
}

enum Kind {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
    Other,
}

fn kind(v: &Val) -> Kind {
    match &*v.j {
        J::Number(n) if !n.is_f64() => {
            n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)).map_or(Kind::Other, Kind::Int)
        }
        J::Number(n) => Kind::Float(n.as_f64().unwrap_or(0.0)),
        J::String(s) => Kind::Str(s.clone()),
        J::Bool(b) => Kind::Bool(*b),
        _ => Kind::Other,
    }
}

fn bad(verb: char, v: &Val) -> String {
    format!("%!{verb}({}={})", v.type_name(), v.printed())
}

/// The formatted value before width padding.
fn verb_body(verb: char, spec: &Spec, v: &Val) -> String {
    let sign = |neg: bool| {
        if neg {
            "-"
        } else if spec.plus {
            "+"
        } else if spec.space {
            " "
        } else {
            ""
        }
    };
    match (verb, kind(v)) {
        ('v', Kind::Float(f)) | ('g', Kind::Float(f)) | ('G', Kind::Float(f)) => {
            let s = go_float(f.abs(), spec.prec);
            let s = if verb == 'G' { s.to_uppercase() } else { s };
            format!("{}{s}", sign(f.is_sign_negative() && f != 0.0))
        }
        ('v', Kind::Int(i)) | ('d', Kind::Int(i)) => format!("{}{}", sign(i < 0), i.unsigned_abs()),
        ('v', _) => v.printed(),
        ('s', Kind::Str(s)) => match spec.prec {
            Some(p) => s.chars().take(p).collect(),
            None => s,
        },
        ('s', Kind::Other) => v.printed(),
        ('q', Kind::Str(s)) if spec.sharp && !s.contains('`') => format!("`{s}`"),
        ('q', Kind::Str(s)) => quote(&s),
        ('q', Kind::Int(i)) => match u32::try_from(i).ok().and_then(char::from_u32) {
            Some(c) => format!("'{}'", quote(&c.to_string()).trim_matches('"').replace("\\\"", "\"")),
            None => bad(verb, v),
        },
        ('t', Kind::Bool(b)) => b.to_string(),
        ('T', _) => v.type_name().to_string(),
        ('c', Kind::Int(i)) => u32::try_from(i).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}').to_string(),
        ('U', Kind::Int(i)) => format!("U+{:04X}", i),
        ('x' | 'X' | 'o' | 'O' | 'b', Kind::Int(i)) => {
            let a = i.unsigned_abs();
            let digits = match verb {
                'x' => format!("{a:x}"),
                'X' => format!("{a:X}"),
                'b' => format!("{a:b}"),
                _ => format!("{a:o}"),
            };
            let prefix = match (verb, spec.sharp) {
                ('x', true) => "0x",
                ('X', true) => "0X",
                ('o', true) => "0",
                ('O', _) => "0o",
                _ => "",
            };
            format!("{}{prefix}{digits}", sign(i < 0))
        }
        ('x' | 'X', Kind::Str(s)) => {
            let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
            if verb == 'X' {
                hex.to_uppercase()
            } else {
                hex
            }
        }
        ('e' | 'E' | 'f' | 'F', Kind::Float(f)) => {
            let p = spec.prec.unwrap_or(6);
            let s = if matches!(verb, 'f' | 'F') { format!("{:.p$}", f.abs()) } else { exp_form(f.abs(), p) };
            let s = if verb == 'E' { s.to_uppercase() } else { s };
            format!("{}{s}", sign(f.is_sign_negative() && f != 0.0))
        }
        _ => bad(verb, v),
    }
}

/// `%e`: Rust's `1.5e3` as Go's `1.500000e+03`.
fn exp_form(f: f64, p: usize) -> String {
    let s = format!("{f:.p$e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

fn pad(out: &mut String, body: &str, spec: &Spec, verb: char) {
    let n = body.chars().count();
    let w = spec.width.unwrap_or(0);
    if n >= w {
        out.push_str(body);
        return;
    }
    let fill = w - n;
    let numeric = matches!(verb, 'd' | 'x' | 'X' | 'o' | 'b' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 'v');
    if spec.minus {
        out.push_str(body);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if spec.zero && numeric && body.starts_with(['-', '+', ' ']) {
        let (s, rest) = body.split_at(1);
        out.push_str(s);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(rest);
    } else if spec.zero {
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(body);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(body);
    }
}
