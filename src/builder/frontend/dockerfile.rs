//! Dockerfile text → logical lines, as BuildKit's frontend reads it: parser
//! directives at the top (`# syntax=`, `# escape=`), comments, line continuations
//! (the escape character at the end of a line), here-documents after the line that
//! opens them. `instruction.rs` gives each line its meaning.

use std::fmt;

/// A place in the Dockerfile, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A Dockerfile that cannot be read, with the place at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{pos}: {message}")]
pub struct ParseError {
    pub file: String,
    pub pos: Pos,
    pub message: String,
}

/// A here-document: `<<EOF` (expanded), `<<"EOF"` (literal), `<<-EOF` (leading tabs stripped).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// Whether `$VAR` is expanded in it (the delimiter was not quoted).
    pub expand: bool,
}

/// One instruction's text, continuations joined.
#[derive(Debug, Clone)]
pub struct Line {
    /// Where the instruction's name starts.
    pub pos: Pos,
    /// As written (instructions are case-insensitive).
    pub name: String,
    /// Everything after the name, trimmed.
    pub args: String,
    /// For each byte of `args`, the place it came from.
    places: Vec<Pos>,
    pub heredocs: Vec<Heredoc>,
}

impl Line {
    /// The line that starts at byte `offset` of `args` (an ONBUILD trigger).
    pub fn tail(&self, offset: usize) -> Line {
        let text = &self.args[offset..];
        let name_len = text.find(char::is_whitespace).unwrap_or(text.len());
        let rest = &text[name_len..];
        let lead = rest.len() - rest.trim_start().len();
        let args_at = offset + name_len + lead;
        let args = self.args[args_at..].to_string();
        Line {
            pos: self.place(offset),
            name: text[..name_len].to_string(),
            places: self.places[args_at..args_at + args.len()].to_vec(),
            args,
            heredocs: self.heredocs.clone(),
        }
    }

    /// The place of byte `offset` of `args` (the end of the line past it).
    pub fn place(&self, offset: usize) -> Pos {
        self.places.get(offset).or(self.places.last()).copied().unwrap_or(self.pos)
    }
}

/// The directives and instruction lines of a Dockerfile.
#[derive(Debug, Clone)]
pub struct Lines {
    pub syntax: Option<String>,
    pub escape: char,
    pub lines: Vec<Line>,
}

/// `# name=value` at the top of the file.
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?;
    let (name, value) = body.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.trim().to_string()))
}

/// The here-documents a line opens: `<<[-]["']NAME["']`, in order.
fn heredoc_openers(args: &str) -> Vec<(String, bool, bool)> {
    let b = args.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < b.len() {
        if &b[i..i + 2] != b"<<" {
            i += 1;
            continue;
        }
        if b.get(i + 2) == Some(&b'<') {
            // `<<<`: a here-string, not a document.
            i += 3;
            continue;
        }
        let mut j = i + 2;
        let strip = b.get(j) == Some(&b'-');
        if strip {
            j += 1;
        }
        let quote = b.get(j).copied().filter(|c| *c == b'"' || *c == b'\'');
        if quote.is_some() {
            j += 1;
        }
        let start = j;
        // A word as the shell ends it (`run.sh` is a name; `EOF>out` is EOF then a redirect).
        while j < b.len() && !b[j].is_ascii_whitespace() && !b"<>|&;()'\"".contains(&b[j]) {
            j += 1;
        }
        let closed = match quote {
            Some(q) => b.get(j) == Some(&q),
            None => true,
        };
        if j > start && closed {
            out.push((args[start..j].to_string(), quote.is_none(), strip));
            i = j + usize::from(quote.is_some());
        } else {
            i += 2;
        }
    }
    out
}

/// Instructions whose lines may open here-documents.
fn takes_heredocs(name: &str) -> bool {
    ["RUN", "COPY", "ADD"].iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Splits `text` (the Dockerfile named `file`) into directives and instruction lines.
pub fn lines(file: &str, text: &str) -> Result<Lines, ParseError> {
    let err = |line: usize, column: usize, message: String| ParseError {
        file: file.to_string(),
        pos: Pos { line, column },
        message,
    };
    let raw: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut out = Lines { syntax: None, escape: '\\', lines: Vec::new() };
    let mut i = 0;
    // Directives: only before any other line, each name once.
    let mut seen = Vec::new();
    while i < raw.len() {
        let Some((name, value)) = directive(raw[i]) else { break };
        if seen.contains(&name) {
            return Err(err(i + 1, 1, format!("only one {name} parser directive can be used")));
        }
        match name.as_str() {
            "escape" => {
                out.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(err(i + 1, 1, format!("invalid escape token {other:?}: only \\ and ` are allowed")))
                    }
                }
            }
            "syntax" => out.syntax = Some(value),
            // Unknown directives are comments, and end the directive block.
            _ => break,
        }
        seen.push(name);
        i += 1;
    }
    let esc = out.escape;
    while i < raw.len() {
        let first = raw[i];
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start_line = i + 1;
        let indent = first.len() - trimmed.len();
        let name_len = trimmed.find(|c: char| c.is_whitespace()).unwrap_or(trimmed.len());
        let name = trimmed[..name_len].to_string();
        let pos = Pos { line: start_line, column: indent + 1 };
        // Join continued lines, remembering where each byte came from.
        let mut args = String::new();
        let mut places = Vec::new();
        let mut piece: &str = &trimmed[name_len..];
        let mut piece_col = indent + name_len + 1;
        let mut line_no = start_line;
        loop {
            let content = piece.trim_end();
            let continued = content.ends_with(esc);
            let kept = if continued { &content[..content.len() - esc.len_utf8()] } else { content };
            // Columns count characters, advanced one by one: linear in the line's length.
            for (column, ch) in (piece_col..).zip(kept.chars()) {
                args.push(ch);
                places.extend(std::iter::repeat_n(Pos { line: line_no, column }, ch.len_utf8()));
            }
            i += 1;
            if !continued {
                break;
            }
            // Comment and empty lines inside a continued instruction are dropped.
            while i < raw.len() && (raw[i].trim().is_empty() || raw[i].trim_start().starts_with('#')) {
                i += 1;
            }
            if i >= raw.len() {
                break;
            }
            piece = raw[i];
            piece_col = 1;
            line_no = i + 1;
        }
        // Trim, keeping places aligned.
        let lead = args.len() - args.trim_start().len();
        let trimmed_args = args.trim().to_string();
        let places = places[lead..lead + trimmed_args.len()].to_vec();
        let mut heredocs = Vec::new();
        if takes_heredocs(&name) {
            for (delim, expand, strip) in heredoc_openers(&trimmed_args) {
                let opened_at = Pos { line: line_no, column: 1 };
                let mut content = String::new();
                loop {
                    let Some(body) = raw.get(i) else {
                        return Err(err(
                            opened_at.line,
                            opened_at.column,
                            format!("here-document {delim} is not terminated (no line {delim})"),
                        ));
                    };
                    i += 1;
                    let body = if strip { body.trim_start_matches('\t') } else { body };
                    if body == delim {
                        break;
                    }
                    content.push_str(body);
                    content.push('\n');
                }
                heredocs.push(Heredoc { name: delim, content, expand });
            }
        }
        out.lines.push(Line { pos, name, args: trimmed_args, places, heredocs });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_keep_the_place_of_every_byte() {
        let l = lines("Dockerfile", "FROM a\nRUN echo a \\\n  # note\n    b\n").unwrap();
        let run = &l.lines[1];
        assert_eq!(run.args, "echo a     b");
        assert_eq!(run.place(0), Pos { line: 2, column: 5 });
        assert_eq!(run.place(run.args.len() - 1), Pos { line: 4, column: 5 });
    }

    #[test]
    fn heredoc_openers_are_found_in_order() {
        assert_eq!(
            heredoc_openers(r#"<<-"A" cat <<B x<<<not"#),
            vec![("A".to_string(), false, true), ("B".to_string(), true, false)]
        );
    }
}
