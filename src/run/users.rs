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

/// Resolves `spec` (`UID`, `NAME`, `UID:GID`, `NAME:GROUP`) with the files the
/// container's layers (top first, its upper dir included) show.
pub fn resolve(spec: &str, layers: &[std::path::PathBuf]) -> Result<User, String> {
    let read = |p: &str| {
        layers_store::upper::read_visible_file(layers, p, MAX_DB)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    resolve_with(spec, &read("etc/passwd"), &read("etc/group"))
}

/// As `resolve`, with the files' contents given.
pub fn resolve_with(spec: &str, passwd: &str, group: &str) -> Result<User, String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entries: Vec<Vec<&str>> =
        passwd.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 7).collect();
    let by_name = entries.iter().find(|f| f[0] == u);
    let by_uid = u.parse::<u32>().ok();
    let entry = by_name.or_else(|| by_uid.and_then(|n| entries.iter().find(|f| f[2].parse() == Ok(n))));
    let (uid, mut gid, home, name) = match (entry, by_uid) {
        (Some(f), _) => (
            f[2].parse::<u32>().map_err(|_| format!("bad uid for {u} in /etc/passwd"))?,
            f[3].parse::<u32>().map_err(|_| format!("bad gid for {u} in /etc/passwd"))?,
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
            Some(f) => f[2].parse().map_err(|_| format!("bad gid for group {g} in /etc/group"))?,
            None => g
                .parse()
                .map_err(|_| format!("unable to find group {g}: no matching entries in the image's /etc/group"))?,
        };
    }
    // Supplementary groups: those listing the user by name (none given a group explicitly, as docker).
    let mut groups = vec![gid];
    if let (Some(name), None) = (name, g) {
        for f in &groups_db {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
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
}
