//! `--user` / the image's `User`, resolved against the container's own
//! `/etc/passwd` and `/etc/group`, read from its layers before the fork (regular
//! files only, at most 1 MiB each, symlinks not followed).

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, set explicitly (empty clears the host's).
    pub groups: Vec<u32>,
    pub home: String,
}

const MAX_DB: u64 = 1 << 20;

/// The largest uid or gid accepted, as runc's: `(uid_t)-1` would mean "leave
/// unchanged" to `setuid` (so the process would stay root), and negative or
/// wrapping ids have no meaning.
const MAX_ID: u32 = i32::MAX as u32;

/// A uid or gid written as a number: `None` if `s` is a name, an error if it is a
/// number outside 0..=MAX_ID.
fn numeric_id(s: &str) -> Option<Result<u32, String>> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = s.parse::<u32>().ok().filter(|n| *n <= MAX_ID);
    Some(n.ok_or_else(|| format!("{s}: uids and gids must be in range 0-{MAX_ID}")))
}

/// Refuses `spec` (`USER[:GROUP]`) when a part written as a number is no valid id.
pub fn check_ids(spec: &str) -> Result<(), String> {
    let (u, g) = spec.split_once(':').map_or((spec, None), |(u, g)| (u, Some(g)));
    for part in std::iter::once(u).chain(g) {
        if let Some(Err(e)) = numeric_id(part) {
            return Err(e);
        }
    }
    Ok(())
}

/// A uid or gid field of `/etc/passwd` or `/etc/group`.
fn db_id(field: &str, what: &str) -> Result<u32, String> {
    match numeric_id(field) {
        Some(Ok(n)) => Ok(n),
        _ => Err(format!("bad {what}: {field:?}")),
    }
}

/// Resolves `spec` (`UID`, `NAME`, `UID:GID`, `NAME:GROUP`) with the files the
/// container's layers (top first, its upper dir included) show.
pub fn resolve(spec: &str, layers: &[std::path::PathBuf]) -> Result<User, String> {
    let read = |p: &str| {
        layers_store::fsroot::lowers::read_visible_file(layers, p, MAX_DB)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    resolve_with(spec, &read("etc/passwd"), &read("etc/group"))
}

/// As `resolve`, with the files' contents given.
pub fn resolve_with(spec: &str, passwd: &str, group: &str) -> Result<User, String> {
    check_ids(spec)?;
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entries: Vec<Vec<&str>> =
        passwd.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 7).collect();
    let by_name = entries.iter().find(|f| f[0] == u);
    let by_uid = numeric_id(u).and_then(Result::ok);
    let entry = by_name.or_else(|| by_uid.and_then(|n| entries.iter().find(|f| f[2].parse() == Ok(n))));
    let (uid, mut gid, home, name) = match (entry, by_uid) {
        (Some(f), _) => (
            db_id(f[2], &format!("uid for {u} in /etc/passwd"))?,
            db_id(f[3], &format!("gid for {u} in /etc/passwd"))?,
            f[5].to_string(),
            Some(f[0]),
        ),
        (None, Some(n)) => (n, 0, "/".to_string(), None),
        (None, None) => return Err(format!("unable to find user {u}: no matching entries in the image's /etc/passwd")),
    };
    let groups_db: Vec<Vec<&str>> =
        group.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 4).collect();
    if let Some(g) = g {
        gid = match groups_db.iter().find(|f| f[0] == g) {
            Some(f) => db_id(f[2], &format!("gid for group {g} in /etc/group"))?,
            None => match numeric_id(g) {
                Some(n) => n?,
                None => return Err(format!("unable to find group {g}: no matching entries in the image's /etc/group")),
            },
        };
    }
    // Supplementary groups: those listing the user by name (none given a group explicitly, as docker).
    let mut groups = vec![gid];
    if let (Some(name), None) = (name, g) {
        for f in &groups_db {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(n) = db_id(f[2], "gid") {
                    if !groups.contains(&n) {
                        groups.push(n);
                    }
                }
            }
        }
    }
    let home = if uid == 0 && home.is_empty() { "/root".into() } else { home };
    Ok(User { uid, gid, groups, home: if home.is_empty() { "/".into() } else { home } })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nbad:x\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app\napp:x:1000:\naudio:x:29:other,app\n";

    #[test]
    fn names_numbers_and_groups() {
        let app = resolve_with("app", PASSWD, GROUP).unwrap();
        assert_eq!(app, User { uid: 1000, gid: 1000, groups: vec![1000, 10, 29], home: "/home/app".into() });
        let root = resolve_with("0", PASSWD, GROUP).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let num = resolve_with("4242:77", PASSWD, GROUP).unwrap();
        assert_eq!(num, User { uid: 4242, gid: 77, groups: vec![77], home: "/".into() });
        assert_eq!(resolve_with("app:wheel", PASSWD, GROUP).unwrap().groups, [10]);
        assert!(resolve_with("nobody", PASSWD, GROUP).unwrap_err().contains("unable to find user nobody"));
        assert!(resolve_with("app:nogroup", PASSWD, GROUP).is_err());
    }

    #[test]
    fn ids_that_are_not_uids_are_refused() {
        for spec in ["4294967295", "4294967296", "-1", "2147483648", "0:4294967295", "app:-1", "99999999999999999999"] {
            let e = resolve_with(spec, PASSWD, GROUP).unwrap_err();
            assert!(e.contains("must be in range 0-2147483647"), "{spec}: {e}");
        }
        assert_eq!(resolve_with("2147483647", PASSWD, GROUP).unwrap().uid, 2147483647);
        let bad = "evil:x:4294967295:0::/:/bin/sh\n";
        assert!(resolve_with("evil", bad, GROUP).unwrap_err().contains("bad uid for evil"));
    }
}
