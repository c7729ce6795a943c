//! How the store writes overlay's own state into layer and upper dirs: whiteouts are
//! 0/0 character devices, an opaque directory carries an overlay xattr. One sealed
//! encoding per store; root stores use the `trusted.` namespace (rootless stores,
//! mounting with `userxattr`, will be the second variant).

/// The on-disk encoding of overlay state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `trusted.overlay.opaque=y`: overlay mounted by root.
    Trusted,
}

impl Encoding {
    /// As the store records it.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Trusted => "trusted",
        }
    }

    /// The encoding a store records as `name`; `None` for one this release does not know.
    pub fn parse(name: &str) -> Option<Encoding> {
        match name {
            "trusted" => Some(Encoding::Trusted),
            _ => None,
        }
    }

    /// The xattr that marks a directory opaque (its value `y`).
    pub const fn opaque_xattr(self) -> &'static [u8] {
        match self {
            Encoding::Trusted => b"trusted.overlay.opaque",
        }
    }
}

/// Whether `name` is one of overlay's private xattrs, in either namespace: never
/// taken from a layer's tar (a layer must not forge overlay state) and never part
/// of what a container's upper dir adds.
pub fn is_overlay_private(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}
