//! The lexer of Go's `text/template`: text, and inside `{{…}}` the tokens Go's
//! `text/template/parse` lexer emits (with `{{-`/`-}}` trimming and comments), each
//! with its line.

use super::parse::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Text(String),
    Open,
    Close,
    Field(String),
    /// `.Name` right after a term (no space): a field of that term.
    Chain(String),
    Var(String),
    Ident(String),
    Str(String),
    Char(i64),
    Num(String),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    /// `.` alone.
    Dot,
}

pub(super) struct Item {
    pub tok: Tok,
    pub line: usize,
}

pub(super) fn lex(src: &str) -> Result<Vec<Item>, ParseError> {
    let b = src.as_bytes();
    let mut items = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let err = |line, msg: String| Err(ParseError { line, msg });
    loop {
        let start = i;
        let Some(off) = src[i..].find("{{") else {
            if i < b.len() {
                items.push(Item { tok: Tok::Text(src[i..].to_string()), line });
            }
            return Ok(items);
        };
        let open = i + off;
        let mut text = &src[start..open];
        i = open + 2;
        // `{{- ` trims the text before it.
        if b.get(i) == Some(&b'-') && b.get(i + 1).is_some_and(|c| is_space(*c)) {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            i += 1;
        }
        line += src[start..open].matches('\n').count();
        if !text.is_empty() {
            items.push(Item { tok: Tok::Text(text.to_string()), line });
        }
        while b.get(i).is_some_and(|c| is_space(*c)) {
            line += usize::from(b[i] == b'\n');
            i += 1;
        }
        if src[i..].starts_with("/*") {
            let Some(end) = src[i + 2..].find("*/") else { return err(line, "unclosed comment".into()) };
            line += src[i..i + 2 + end].matches('\n').count();
            i += 2 + end + 2;
            let (close, trim) =
                close_at(src, i).ok_or(ParseError { line, msg: "comment ends before closing delimiter".into() })?;
            i = close;
            if trim {
                i = skip_space(src, i, &mut line);
            }
            continue;
        }
        items.push(Item { tok: Tok::Open, line });
        loop {
            let Some(&c) = b.get(i) else { return err(line, "unclosed action".into()) };
            if let Some((close, trim)) = close_at(src, i) {
                items.push(Item { tok: Tok::Close, line });
                i = close;
                if trim {
                    i = skip_space(src, i, &mut line);
                }
                break;
            }
            let tok_line = line;
            let tok = match c {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    line += usize::from(c == b'\n');
                    i += 1;
                    continue;
                }
                b'|' | b'(' | b')' | b',' | b'=' => {
                    i += 1;
                    match c {
                        b'|' => Tok::Pipe,
                        b'(' => Tok::LParen,
                        b')' => Tok::RParen,
                        b',' => Tok::Comma,
                        _ => Tok::Assign,
                    }
                }
                b':' if b.get(i + 1) == Some(&b'=') => {
                    i += 2;
                    Tok::Declare
                }
                b'"' => {
                    let (s, n) =
                        quoted(&src[i..]).ok_or(ParseError { line, msg: "unterminated quoted string".into() })?;
                    i += n;
                    Tok::Str(unquote(s).map_err(|m| ParseError { line, msg: m })?)
                }
                b'`' => {
                    let end = src[i + 1..]
                        .find('`')
                        .ok_or(ParseError { line, msg: "unterminated raw quoted string".into() })?;
                    let s = &src[i + 1..i + 1 + end];
                    line += s.matches('\n').count();
                    i += end + 2;
                    Tok::Str(s.to_string())
                }
                b'\'' => {
                    let end = char_end(&src[i..])
                        .ok_or(ParseError { line, msg: "unterminated character constant".into() })?;
                    let s = unquote(&format!("\"{}\"", &src[i + 1..i + end - 1]))
                        .map_err(|m| ParseError { line, msg: m })?;
                    let mut cs = s.chars();
                    let (Some(ch), None) = (cs.next(), cs.next()) else {
                        return err(line, format!("malformed character constant: {}", &src[i..i + end]));
                    };
                    i += end;
                    Tok::Char(i64::from(u32::from(ch)))
                }
                b'$' => {
                    let n = 1 + word_len(&src[i + 1..]);
                    let t = Tok::Var(src[i..i + n].to_string());
                    i += n;
                    t
                }
                b'.' if b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') => {
                    let n = word_len(&src[i + 1..]);
                    let name = src[i + 1..i + 1 + n].to_string();
                    let follows = !is_space(b[i - 1])
                        && matches!(
                            items.last().map(|t: &Item| &t.tok),
                            Some(Tok::Field(_) | Tok::Chain(_) | Tok::Var(_) | Tok::RParen)
                        );
                    let t = if follows { Tok::Chain(name) } else { Tok::Field(name) };
                    i += 1 + n;
                    t
                }
                b'.' if !b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                    i += 1;
                    Tok::Dot
                }
                b'0'..=b'9' | b'-' | b'+' | b'.' => {
                    let n = number_len(&src[i..]);
                    if n == 0 {
                        return err(line, format!("bad character {:?}", c as char));
                    }
                    let t = Tok::Num(src[i..i + n].to_string());
                    i += n;
                    t
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    let n = word_len(&src[i..]);
                    let t = Tok::Ident(src[i..i + n].to_string());
                    i += n;
                    t
                }
                _ => {
                    let ch = src[i..].chars().next().unwrap_or('?');
                    return err(line, format!("bad character {ch:?}"));
                }
            };
            items.push(Item { tok, line: tok_line });
        }
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Where the action closing at `i` (` -}}` or `}}`) ends, and whether it trims.
fn close_at(src: &str, i: usize) -> Option<(usize, bool)> {
    let b = src.as_bytes();
    if src[i..].starts_with("}}") {
        return Some((i + 2, false));
    }
    if b.get(i).is_some_and(|c| is_space(*c)) && src[i + 1..].starts_with("-}}") {
        return Some((i + 4, true));
    }
    None
}

fn skip_space(src: &str, mut i: usize, line: &mut usize) -> usize {
    while src.as_bytes().get(i).is_some_and(|c| is_space(*c)) {
        *line += usize::from(src.as_bytes()[i] == b'\n');
        i += 1;
    }
    i
}

fn word_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len())
}

/// A Go number: optional sign, then digits, letters (hex, exponents), `_`, `.` and
/// an exponent's sign; Go's scanner takes the same run and then checks it.
fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = i;
    while let Some(&c) = b.get(i) {
        let exp_sign =
            matches!(c, b'+' | b'-') && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P') && !s[digits..].starts_with("0x");
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    if i == digits {
        0
    } else {
        i
    }
}

/// Where the quoted literal at the start of `s` ends (after its closing `quote`,
/// escapes skipped); `None` if a newline or the end comes first.
fn closing(s: &str, quote: u8) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'\n' => return None,
            c if c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The `"…"` at the start of `s` (escapes kept) and its length in bytes.
fn quoted(s: &str) -> Option<(&str, usize)> {
    closing(s, b'"').map(|n| (&s[..n], n))
}

fn char_end(s: &str) -> Option<usize> {
    closing(s, b'\'')
}

/// A double-quoted Go string literal's value, as `strconv.Unquote`.
fn unquote(q: &str) -> Result<String, String> {
    let inner = &q[1..q.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut cs = inner.chars();
    let bad = || format!("invalid syntax in string {q}");
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(c) = cs.next() {
        if c != '\\' {
            flush(&mut bytes, &mut out);
            out.push(c);
            continue;
        }
        let e = cs.next().ok_or_else(bad)?;
        let simple = match e {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            _ => None,
        };
        if let Some(s) = simple {
            flush(&mut bytes, &mut out);
            out.push(s);
            continue;
        }
        let (n, radix) = match e {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (2, 8),
            _ => return Err(bad()),
        };
        let mut digits: String = if radix == 8 { e.to_string() } else { String::new() };
        for _ in 0..n {
            digits.push(cs.next().ok_or_else(bad)?);
        }
        let v = u32::from_str_radix(&digits, radix).map_err(|_| bad())?;
        if matches!(e, 'u' | 'U') {
            flush(&mut bytes, &mut out);
            out.push(char::from_u32(v).ok_or_else(bad)?);
        } else {
            // `\x` and octal escapes are bytes: a run of them may spell UTF-8.
            bytes.push(u8::try_from(v).map_err(|_| bad())?);
        }
    }
    flush(&mut bytes, &mut out);
    Ok(out)
}

fn flush(bytes: &mut Vec<u8>, out: &mut String) {
    if !bytes.is_empty() {
        out.push_str(&String::from_utf8_lossy(bytes));
        bytes.clear();
    }
}
