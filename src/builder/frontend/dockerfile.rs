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

/// `# name=value` at the top of the file, as BuildKit matches it: a letter, then
/// letters and digits, `=`, a value that is not empty.
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim_start().strip_prefix('#')?.trim_start();
    let (name, value) = body.split_once('=')?;
    let name = name.trim_end();
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) || !chars.all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let value = value.trim();
    (!value.is_empty()).then(|| (name.to_ascii_lowercase(), value.to_string()))
}

/// Whether a line continues on the next: it ends (spaces and tabs aside) in the
/// escape character, and that one is not itself escaped (`trailing\\` ends the
/// line). BuildKit's rule.
fn continues(content: &str, esc: char) -> bool {
    let t = content.trim_end_matches([' ', '\t']);
    let Some(before) = t.strip_suffix(esc) else { return false };
    !before.ends_with(esc)
}

/// The here-documents a line opens, in order: (name, expanded, tabs stripped). As
/// BuildKit finds them, a here-document is a whole shell word `[n]<<[-]WORD`: so
/// `$((1<<20))` and `"a<<b"` open none.
fn heredoc_openers(args: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    for word in super::words::split_raw(args, '\\') {
        let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
        let Some(rest) = rest.strip_prefix("<<") else { continue };
        let (strip, rest) = match rest.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if rest.is_empty() || rest.contains('<') {
            continue;
        }
        // The name is the word unquoted; a quote anywhere in it means a literal document.
        let mut name = String::new();
        let mut quote: Option<char> = None;
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (q, '\\') if q != Some('\'') => name.extend(chars.next()),
                _ => name.push(c),
            }
        }
        if !name.is_empty() {
            out.push((name, !rest.contains(['\'', '"']), strip));
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
    // A byte-order mark at the start is not part of the first line (BuildKit drops it).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
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
            // Lint settings for BuildKit's checks: a directive (the block goes on), with
            // nothing for us to apply.
            "check" => {}
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
            let continued = continues(piece, esc);
            let content = if continued { piece.trim_end_matches([' ', '\t']) } else { piece.trim_end() };
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
    fn heredoc_openers_are_whole_words() {
        assert_eq!(
            heredoc_openers(r#"<<-"A" cat <<B x<<<not 2<<C"#),
            vec![("A".to_string(), false, true), ("B".to_string(), true, false), ("C".to_string(), true, false)]
        );
        assert!(heredoc_openers("echo $((1<<20))").is_empty());
        assert!(heredoc_openers(r#"echo "a<<b" 'x <<EOF'"#).is_empty());
        assert!(heredoc_openers("echo $((1 << 20))").is_empty(), "a bare << is no document");
    }

    #[test]
    fn an_escaped_escape_does_not_continue_the_line() {
        let l = lines("Dockerfile", "FROM a\nENV C trailing\\\\\nRUN true\n").unwrap();
        assert_eq!(l.lines.len(), 3);
        assert_eq!(l.lines[1].args, "C trailing\\\\");
        let l = lines("Dockerfile", "FROM a\nRUN a \\ \t\n  b\n").unwrap();
        assert_eq!(l.lines[1].args, "a   b");
    }

    #[test]
    fn a_bom_is_dropped_and_check_is_a_directive() {
        let l = lines("Dockerfile", "\u{feff}# check=skip=all\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(l.escape, '`');
        assert_eq!(l.lines[0].name, "FROM");
    }
}
