//! Words and variables as BuildKit's shell lexer reads them: quotes ('…' literal,
//! "…" with `$` expanded), the escape character, `$VAR`, `${VAR}`, and the
//! `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`, `${VAR:?message}` forms.

/// Splits `raw` at whitespace outside quotes, keeping quotes and escapes in the words
/// (they mean something only when the word is expanded).
pub fn split_raw(raw: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, c) if c == escape && quote != Some('\'') => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Most bytes one expansion may produce (a word, or an instruction's words together):
/// `ARG B=${A}${A}` repeated doubles at each step, and would otherwise grow until
/// memory runs out.
pub const MAX_EXPANSION: usize = 1 << 20;

/// Expands one word: quotes removed, escapes applied, variables substituted.
pub fn expand(word: &str, escape: char, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let words = Lexer { chars: word.chars().collect(), at: 0, escape, env }.words(false)?;
    Ok(words.into_iter().next().unwrap_or_default())
}

/// Expands and splits at whitespace outside quotes, unquoted variable values included (EXPOSE).
pub fn expand_words(word: &str, escape: char, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
    Lexer { chars: word.chars().collect(), at: 0, escape, env }.words(true)
}

struct Lexer<'a> {
    chars: Vec<char>,
    at: usize,
    escape: char,
    env: &'a dyn Fn(&str) -> Option<String>,
}

/// A `${NAME<op>word}` whose word is being read: what its closing `}` decides.
struct Modifier {
    name: String,
    value: Option<String>,
    /// Set (and, with `:`, not empty).
    set: bool,
    op: char,
}

impl Modifier {
    fn resolve(self, word: String) -> Result<String, String> {
        match (self.op, self.set) {
            ('-', true) | ('?', true) => Ok(self.value.unwrap_or_default()),
            ('-', false) | ('+', true) => Ok(word),
            ('+', false) => Ok(String::new()),
            (_, false) if word.is_empty() => Err(format!("{}: is not allowed to be unset", self.name)),
            _ => Err(format!("{}: {word}", self.name)),
        }
    }
}

/// The words being built at one level: the whole input, or a modifier's word.
/// Nesting lives in a `Vec` of these, not on the call stack, so a deeply nested
/// `${A:-${A:-…}}` costs heap in proportion to its length, never a stack overflow.
struct Frame {
    words: Vec<String>,
    cur: String,
    /// A word has begun (`""` is a word, though empty).
    begun: bool,
    split: bool,
    /// Inside `"…"`.
    quoted: bool,
    /// Bytes in `words` and `cur`.
    size: usize,
    /// `None` for the outermost frame.
    modifier: Option<Modifier>,
}

impl Frame {
    fn new(split: bool, modifier: Option<Modifier>) -> Frame {
        Frame { words: Vec::new(), cur: String::new(), begun: false, split, quoted: false, size: 0, modifier }
    }

    fn push_str(&mut self, s: &str) -> Result<(), String> {
        self.size += s.len();
        if self.size > MAX_EXPANSION {
            return Err(format!("variable expansion larger than the limit of {MAX_EXPANSION} bytes"));
        }
        self.cur.push_str(s);
        Ok(())
    }

    fn push(&mut self, c: char) -> Result<(), String> {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }

    fn end_word(&mut self) {
        self.words.push(std::mem::take(&mut self.cur));
    }

    /// A variable's value where its `$` stood.
    fn value(&mut self, value: &str) -> Result<(), String> {
        if self.quoted || !self.split {
            self.begun = true;
            return self.push_str(value);
        }
        let mut parts = value.split(char::is_whitespace);
        if let Some(first) = parts.next() {
            self.push_str(first)?;
            self.begun |= !first.is_empty();
        }
        for part in parts {
            if self.begun {
                self.end_word();
            }
            self.push_str(part)?;
            self.begun = !part.is_empty();
        }
        Ok(())
    }

    fn finish(mut self) -> Vec<String> {
        if self.begun || !self.split {
            self.end_word();
        }
        self.words
    }
}

const DQUOTE_EOF: &str = "unexpected end of statement while looking for matching double-quote";
const MISSING_BRACE: &str = "missing '}' in a variable substitution";

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.at += 1;
        c
    }

    /// Reads the whole input into words, in one pass over it.
    fn words(&mut self, split: bool) -> Result<Vec<String>, String> {
        let mut frames = vec![Frame::new(split, None)];
        loop {
            let depth = frames.len();
            let top = frames.last_mut().expect("the outermost frame stays");
            let Some(c) = self.next() else {
                if top.quoted {
                    return Err(DQUOTE_EOF.into());
                }
                if depth > 1 {
                    return Err(MISSING_BRACE.into());
                }
                break;
            };
            if top.quoted {
                match c {
                    '"' => top.quoted = false,
                    '$' => self.dollar(&mut frames)?,
                    e if e == self.escape => match self.next() {
                        Some(n) if n == '"' || n == '$' || n == self.escape => top.push(n)?,
                        Some(n) => {
                            top.push(e)?;
                            top.push(n)?;
                        }
                        None => return Err(DQUOTE_EOF.into()),
                    },
                    n => top.push(n)?,
                }
                continue;
            }
            if c == '}' && top.modifier.is_some() {
                let mut done = frames.pop().expect("a modifier frame");
                let modifier = done.modifier.take().expect("checked above");
                let value = modifier.resolve(done.finish().concat())?;
                frames.last_mut().expect("the outermost frame stays").value(&value)?;
                continue;
            }
            if c == self.escape {
                top.push(self.next().unwrap_or(c))?;
                top.begun = true;
            } else if c == '\'' {
                loop {
                    match self.next() {
                        Some('\'') => break,
                        Some(n) => top.push(n)?,
                        None => {
                            return Err("unexpected end of statement while looking for matching single-quote".into())
                        }
                    }
                }
                top.begun = true;
            } else if c == '"' {
                top.quoted = true;
                top.begun = true;
            } else if c == '$' {
                self.dollar(&mut frames)?;
            } else if top.split && c.is_whitespace() {
                if top.begun {
                    top.end_word();
                    top.begun = false;
                }
            } else {
                top.push(c)?;
                top.begun = true;
            }
        }
        Ok(frames.pop().expect("the outermost frame stays").finish())
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
            self.at += 1;
        }
        name
    }

    /// After a `$`: its value goes to the top frame, or a modifier's word begins.
    fn dollar(&mut self, frames: &mut Vec<Frame>) -> Result<(), String> {
        let top = frames.last_mut().expect("the outermost frame stays");
        match self.peek() {
            Some('{') => {
                self.at += 1;
                let name = self.name();
                if name.is_empty() {
                    return Err("bad substitution: a variable name must follow ${".into());
                }
                let value = (self.env)(&name);
                let colon = self.peek() == Some(':');
                if colon {
                    self.at += 1;
                }
                let set = value.is_some() && !(colon && value.as_deref() == Some(""));
                match self.next() {
                    Some('}') if !colon => top.value(&value.unwrap_or_default()),
                    Some(op @ ('-' | '+' | '?')) => {
                        frames.push(Frame::new(false, Some(Modifier { name, value, set, op })));
                        Ok(())
                    }
                    Some(c) => Err(format!("unsupported modifier ({c}) in substitution of {name}")),
                    None => Err(MISSING_BRACE.into()),
                }
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.name();
                top.value(&(self.env)(&name).unwrap_or_default())
            }
            // `$` before anything else is itself.
            _ => top.value("$"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("apple".into()),
            "SP" => Some("two words".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_quotes_and_escapes_expand_as_buildkit_does() {
        let x = |w: &str| expand(w, '\\', &env).unwrap();
        let cases = [
            ("$A", "apple"),
            ("${A}s", "apples"),
            ("pre-$A-post", "pre-apple-post"),
            ("$NOPE", ""),
            ("${NOPE:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${A:-def}", "apple"),
            ("${A:+alt}", "alt"),
            ("${NOPE:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${NOPE:-$A}", "apple"),
            ("${NOPE:-a b}", "a b"),
            ("'$A'", "$A"),
            ("\"$A and ${SP}\"", "apple and two words"),
            ("\\$A", "$A"),
            ("\"a\\\"b\"", "a\"b"),
            ("a\\ b", "a b"),
            ("cost$", "cost$"),
            ("$1", "$1"),
            ("\"\"", ""),
        ];
        for (word, want) in cases {
            assert_eq!(x(word), want, "{word}");
        }
        assert_eq!(expand("`$A", '`', &env).unwrap(), "$A", "the escape directive's character");
        assert_eq!(expand("${NOPE:?must be set}", '\\', &env).unwrap_err(), "NOPE: must be set");
        assert_eq!(expand("${A/x/y}", '\\', &env).unwrap_err(), "unsupported modifier (/) in substitution of A");
        assert!(expand("'open", '\\', &env).unwrap_err().contains("single-quote"));
        assert!(expand("${A", '\\', &env).unwrap_err().contains("missing '}'"));
    }

    #[test]
    fn words_split_outside_quotes_and_after_expansion() {
        assert_eq!(expand_words("80 $SP \"x y\" ''", '\\', &env).unwrap(), ["80", "two", "words", "x y", ""]);
        assert_eq!(expand_words("  $NOPE  ", '\\', &env).unwrap(), Vec::<String>::new());
        assert_eq!(split_raw(r#"a="b c" d=e\ f 'g h'"#, '\\'), [r#"a="b c""#, r"d=e\ f", "'g h'"]);
    }

    #[test]
    fn nesting_100k_deep_expands_without_recursion() {
        let n = 100_000;
        let word = format!("{}x{}", "${NOPE:-".repeat(n), "}".repeat(n));
        assert_eq!(expand(&word, '\\', &env).unwrap(), "x");
        let open = "${NOPE:-".repeat(n);
        assert_eq!(expand(&open, '\\', &env).unwrap_err(), "missing '}' in a variable substitution");
    }

    #[test]
    fn expansion_is_capped_and_linear() {
        let big = "y".repeat(MAX_EXPANSION / 2 + 1);
        let env2 = |n: &str| (n == "B").then(|| big.clone());
        assert!(expand("$B$B", '\\', &env2).unwrap_err().contains("larger than the limit of 1048576 bytes"));
        assert!(expand_words("$B \"$B\"", '\\', &env2).unwrap_err().contains("limit"));
        assert_eq!(expand("$B", '\\', &env2).unwrap().len(), big.len());
        // A MiB of plain text in one word: one pass, well under a second.
        let line = "z".repeat(MAX_EXPANSION - 1);
        let t = std::time::Instant::now();
        assert_eq!(expand(&line, '\\', &env).unwrap().len(), line.len());
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
