//! Names for containers made by `run` and `create` without `--name`: Docker's shape,
//! `adjective_surname`, from lists of our own (surnames of people who shaped
//! filesystems, kernels and computing). `mount`'s containers keep buildah's
//! `IMAGE-working-container` names, so the two never meet.

const ADJECTIVES: &[&str] = &[
    "agile", "amber", "ample", "azure", "bold", "brave", "brisk", "calm", "candid", "civil", "clever", "cosmic",
    "crisp", "daring", "deft", "eager", "earnest", "fair", "fearless", "fond", "frank", "gentle", "glad", "golden",
    "hardy", "hearty", "honest", "humble", "jolly", "keen", "kind", "lively", "loyal", "lucid", "merry", "mellow",
    "nimble", "noble", "patient", "placid", "plucky", "polite", "proud", "quiet", "rapid", "ready", "serene", "sharp",
    "steady", "sunny", "swift", "tender", "tidy", "upbeat", "vivid", "warm", "wise", "witty", "zealous", "zesty",
];

const SURNAMES: &[&str] = &[
    "allen",
    "babbage",
    "backus",
    "barkley",
    "bartik",
    "lampson",
    "bosack",
    "cerf",
    "codd",
    "conway",
    "corbato",
    "dijkstra",
    "engelbart",
    "estrin",
    "floyd",
    "goldberg",
    "hamming",
    "hoare",
    "holberton",
    "hopper",
    "kahn",
    "karp",
    "kay",
    "kernighan",
    "knuth",
    "lamport",
    "lovelace",
    "mccarthy",
    "mcilroy",
    "mckusick",
    "metcalfe",
    "minsky",
    "moore",
    "naur",
    "neumann",
    "nygaard",
    "ousterhout",
    "perlman",
    "pike",
    "postel",
    "ritchie",
    "rivest",
    "saltzer",
    "sammet",
    "shannon",
    "spafford",
    "stonebraker",
    "sutherland",
    "tanenbaum",
    "thompson",
    "torvalds",
    "turing",
    "wheeler",
    "wilkes",
    "wirth",
    "wozniak",
];

/// A random `adjective_surname` (the caller retries on a name already taken).
pub fn random() -> String {
    let mut raw = [0u8; 4];
    // No randomness is worse than a repeated name only in how often a retry is needed.
    let _ = rustix::rand::getrandom(&mut raw, rustix::rand::GetRandomFlags::empty());
    let n = u32::from_le_bytes(raw) as usize;
    format!("{}_{}", ADJECTIVES[n % ADJECTIVES.len()], SURNAMES[(n / ADJECTIVES.len()) % SURNAMES.len()])
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_valid_container_names_and_vary() {
        let names: std::collections::BTreeSet<String> = (0..64).map(|_| super::random()).collect();
        assert!(names.len() > 32, "{names:?}");
        for n in &names {
            assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{n}");
            assert!(!n.contains("working-container"));
        }
    }
}
