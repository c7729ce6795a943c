//! `.dockerignore` and `--exclude` patterns, and COPY source globs: Go's
//! `filepath.Match` per path component (`*`, `?`, `[a-z]`, `[^a]`, `\\x`), `**` for
//! any number of components, `!` to re-include; the last matching pattern decides.

use std::path::Path;

/// A list of patterns, in order.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    /// (components, excluded when matched: false for `!pattern`).
    list: Vec<(Vec<String>, bool)>,
}

/// Whether a COPY source is a glob.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn components(p: &str) -> Vec<String> {
    p.split('/').filter(|c| !c.is_empty() && *c != ".").map(String::from).collect()
}

impl Patterns {
    /// A `.dockerignore` file's patterns (comments and blank lines skipped).
    pub fn parse(text: &str) -> Patterns {
        let mut list = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (pattern, exclude) = match line.strip_prefix('!') {
                Some(p) => (p.trim(), false),
                None => (line, true),
            };
            let cleaned = super::path::clean(pattern.trim_start_matches('/')).unwrap_or_default();
            list.push((components(&cleaned.to_string_lossy()), exclude));
        }
        Patterns { list }
    }

    /// One pattern.
    pub fn single(pattern: &str) -> Patterns {
        Patterns { list: vec![(components(pattern), true)] }
    }

    /// Adds `--exclude` patterns.
    pub fn with(mut self, more: &[String]) -> Patterns {
        self.list.extend(more.iter().map(|p| (components(p), true)));
        self
    }

    /// Whether `path` (relative) is excluded: a pattern matching it or one of its parents.
    pub fn matches(&self, path: &Path) -> bool {
        let parts = components(&path.to_string_lossy());
        let mut excluded = false;
        for (pattern, exclude) in &self.list {
            let hit = (1..=parts.len()).any(|n| match_parts(pattern, &parts[..n]));
            if hit {
                excluded = *exclude;
            }
        }
        excluded
    }

    /// Whether the (only) pattern matches `path` itself.
    pub fn matches_exactly(&self, path: &Path) -> bool {
        let parts = components(&path.to_string_lossy());
        self.list.iter().any(|(p, _)| match_parts(p, &parts))
    }
}

fn match_parts(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| match_parts(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(p, prest)| match_component(first.as_bytes(), p.as_bytes()) && match_parts(rest, prest)),
    }
}

/// Go's `filepath.Match` on one component.
fn match_component(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| match_component(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && match_component(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some((&c, srest)) = s.split_first() else { return false };
            let (negate, body) = match rest.first() {
                Some(b'^' | b'!') => (true, &rest[1..]),
                _ => (false, rest),
            };
            let Some(end) = body.iter().skip(1).position(|&b| b == b']').map(|i| i + 1) else { return false };
            let set = &body[..end];
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && match_component(&body[end + 1..], srest)
        }
        Some((b'\\', rest)) if !rest.is_empty() => s.first() == Some(&rest[0]) && match_component(&rest[1..], &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && match_component(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_patterns_match_as_docker_does() {
        let p = Patterns::parse("# build output\n*.pyc\n/tmp\n**/cache\n!keep.pyc\ndocs/[a-c]*.md\n");
        let m = |s: &str| p.matches(Path::new(s));
        assert!(m("x.pyc") && !m("keep.pyc"), "last match decides");
        assert!(!m("sub/x.pyc"), "* stays in one component");
        assert!(m("tmp/a/b"), "a matched dir excludes what is inside");
        assert!(m("a/b/cache") && m("cache/x"), "** spans components, zero included");
        assert!(m("docs/b1.md") && !m("docs/d.md"));
        assert!(Patterns::single("src/*.rs").matches_exactly(Path::new("src/main.rs")));
        assert!(!Patterns::single("src/*.rs").matches_exactly(Path::new("src/a/b.rs")));
        assert!(match_component(b"[^a]?", b"bc") && !match_component(b"[^a]?", b"ac"));
    }
}
