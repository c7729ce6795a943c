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

/// Expands one word: quotes removed, escapes applied, variables substituted.
pub fn expand(word: &str, escape: char, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut lexer = Lexer { chars: word.chars().collect(), at: 0, escape, env };
    let words = lexer.words(false, None)?;
    Ok(words.into_iter().next().unwrap_or_default())
}

/// Expands and splits at whitespace outside quotes, unquoted variable values included (EXPOSE).
pub fn expand_words(word: &str, escape: char, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
    let mut lexer = Lexer { chars: word.chars().collect(), at: 0, escape, env };
    lexer.words(true, None)
}

struct Lexer<'a> {
    chars: Vec<char>,
    at: usize,
    escape: char,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.at += 1;
        c
    }

    /// Reads words until the end, or until an unescaped `stop` (the `}` closing a
    /// `${VAR:-word}`), which is consumed.
    fn words(&mut self, split: bool, stop: Option<char>) -> Result<Vec<String>, String> {
        let mut words: Vec<String> = Vec::new();
        let mut cur = String::new();
        // A word that has begun (`""` is a word, though empty).
        let mut begun = false;
        loop {
            let Some(c) = self.next() else {
                if stop.is_some() {
                    return Err("missing '}' in a variable substitution".to_string());
                }
                break;
            };
            if Some(c) == stop {
                break;
            }
            if c == self.escape {
                match self.next() {
                    Some(n) => cur.push(n),
                    None => cur.push(c),
                }
                begun = true;
            } else if c == '\'' {
                loop {
                    match self.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => {
                            return Err("unexpected end of statement while looking for matching single-quote".into())
                        }
                    }
                }
                begun = true;
            } else if c == '"' {
                loop {
                    match self.next() {
                        Some('"') => break,
                        Some('$') => cur.push_str(&self.variable()?),
                        Some(e) if e == self.escape => match self.next() {
                            Some(n) if n == '"' || n == '$' || n == self.escape => cur.push(n),
                            Some(n) => {
                                cur.push(e);
                                cur.push(n);
                            }
                            None => {
                                return Err("unexpected end of statement while looking for matching double-quote".into())
                            }
                        },
                        Some(n) => cur.push(n),
                        None => {
                            return Err("unexpected end of statement while looking for matching double-quote".into())
                        }
                    }
                }
                begun = true;
            } else if c == '$' {
                let value = self.variable()?;
                if split {
                    let mut parts = value.split(char::is_whitespace);
                    if let Some(first) = parts.next() {
                        cur.push_str(first);
                        begun |= !first.is_empty();
                    }
                    for part in parts {
                        if begun {
                            words.push(std::mem::take(&mut cur));
                        }
                        cur.push_str(part);
                        begun = !part.is_empty();
                    }
                } else {
                    cur.push_str(&value);
                    begun = true;
                }
            } else if split && c.is_whitespace() {
                if begun {
                    words.push(std::mem::take(&mut cur));
                    begun = false;
                }
            } else {
                cur.push(c);
                begun = true;
            }
        }
        if begun || !split {
            words.push(cur);
        }
        Ok(words)
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
            self.at += 1;
        }
        name
    }

    /// After a `$`: the value it stands for.
    fn variable(&mut self) -> Result<String, String> {
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
                let op = self.next();
                let set = value.is_some() && !(colon && value.as_deref() == Some(""));
                match op {
                    Some('}') if !colon => Ok(value.unwrap_or_default()),
                    Some('-') => {
                        let word = self.words(false, Some('}'))?.concat();
                        Ok(if set { value.unwrap_or_default() } else { word })
                    }
                    Some('+') => {
                        let word = self.words(false, Some('}'))?.concat();
                        Ok(if set { word } else { String::new() })
                    }
                    Some('?') => {
                        let word = self.words(false, Some('}'))?.concat();
                        match set {
                            true => Ok(value.unwrap_or_default()),
                            false if word.is_empty() => Err(format!("{name}: is not allowed to be unset")),
                            false => Err(format!("{name}: {word}")),
                        }
                    }
                    Some(c) => Err(format!("unsupported modifier ({c}) in substitution of {name}")),
                    None => Err("missing '}' in a variable substitution".into()),
                }
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.name();
                Ok((self.env)(&name).unwrap_or_default())
            }
            // `$` before anything else is itself.
            _ => Ok("$".into()),
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
}
