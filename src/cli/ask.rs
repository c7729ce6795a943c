//! What the destructive verbs (`prune`s, `volume prune`) ask first and report after,
//! as Docker words them.

use std::io::{BufRead, Write};

/// Asks `question` on stderr, reads the answer from stdin: yes only for `y`/`yes`.
pub fn confirm(warning: &str) -> anyhow::Result<bool> {
    let mut err = std::io::stderr().lock();
    write!(err, "WARNING! {warning}\nAre you sure you want to continue? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    // Bounded: an answer is a word.
    std::io::Read::take(std::io::stdin().lock(), 1024).read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// `Deleted Containers:` (or Images, Volumes) and one line each, as Docker lists what
/// a prune removed; nothing when nothing was.
pub fn deleted(what: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    outln!("{what}:");
    for i in items {
        outln!("{i}");
    }
    outln!();
}
