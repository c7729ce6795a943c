//! How the store writes overlay's own state into layer and upper dirs: whiteouts are
//! 0/0 character devices, an opaque directory carries an overlay xattr. One sealed
//! encoding per store, recorded in it: root stores use the `trusted.` namespace;
//! rootless stores, written from a user namespace where `trusted.` xattrs cannot be
//! set, use `user.` and mount overlay with `userxattr`. Which one a process can
//! write is a fact of the process (its user namespace), so it is asked of the kernel.

/// The on-disk encoding of overlay state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `trusted.overlay.opaque=y`: overlay mounted by root.
    Trusted,
    /// `user.overlay.opaque=y`: overlay mounted with `userxattr` in a user namespace.
    User,
}

impl Encoding {
    /// As the store records it.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Trusted => "trusted",
            Encoding::User => "user",
        }
    }

    /// The encoding this process can write: `user` inside a user namespace (rootless),
    /// `trusted` in the initial one.
    pub fn of_process() -> Encoding {
        if in_initial_user_namespace() {
            Encoding::Trusted
        } else {
            Encoding::User
        }
    }

    /// Who writes such a store, in words for an error message.
    pub fn writer(self) -> &'static str {
        match self {
            Encoding::Trusted => "root (trusted.* overlay xattrs)",
            Encoding::User => "a rootless user, in a user namespace (user.* overlay xattrs)",
        }
    }

    /// Whether overlay must be mounted with `userxattr` to read this encoding.
    pub fn mount_userxattr(self) -> bool {
        self == Encoding::User
    }

    /// The encoding a store records as `name`; `None` for one this release does not know.
    pub fn parse(name: &str) -> Option<Encoding> {
        match name {
            "trusted" => Some(Encoding::Trusted),
            "user" => Some(Encoding::User),
            _ => None,
        }
    }

    /// The xattr that marks a directory opaque (its value `y`).
    pub const fn opaque_xattr(self) -> &'static [u8] {
        match self {
            Encoding::Trusted => b"trusted.overlay.opaque",
            Encoding::User => b"user.overlay.opaque",
        }
    }
}

/// Whether this process is in the initial user namespace (its uid map is the
/// identity over every ID), where root has real privilege. Asked once per process:
/// a process that joins a user namespace asks [`read_in_initial_user_namespace`]
/// before it joins, and this only after.
pub fn in_initial_user_namespace() -> bool {
    static INITIAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INITIAL.get_or_init(read_in_initial_user_namespace)
}

/// [`in_initial_user_namespace`], read now (not remembered).
#[allow(clippy::disallowed_methods)] // a file of /proc, no root beneath
pub fn read_in_initial_user_namespace() -> bool {
    // An unreadable map (no /proc) is taken as the initial namespace, as before.
    std::fs::read_to_string("/proc/self/uid_map").map_or(true, |m| is_identity_map(&m))
}

/// Whether a `uid_map`'s text maps every ID to itself (the initial namespace's map).
fn is_identity_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map.lines().map(|l| l.split_whitespace().collect()).collect();
    matches!(lines.as_slice(), [one] if one.as_slice() == ["0", "0", "4294967295"])
}

/// Whether `name` is one of overlay's private xattrs, in either namespace: never
/// taken from a layer's tar (a layer must not forge overlay state) and never part
/// of what a container's upper dir adds.
pub fn is_overlay_private(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_full_identity_map_is_the_initial_namespace() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("         0       1000          1\n"));
        assert!(!is_identity_map("0 1000 1\n1 100000 65536\n"));
        assert!(!is_identity_map(""));
    }

    #[test]
    fn each_encoding_round_trips_by_name_and_keeps_its_own_xattr() {
        for e in [Encoding::Trusted, Encoding::User] {
            assert_eq!(Encoding::parse(e.name()), Some(e));
            assert!(is_overlay_private(e.opaque_xattr()));
        }
        assert_eq!(Encoding::parse("fuse"), None);
    }
}
