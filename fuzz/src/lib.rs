//! The fuzz targets' bodies, shared by `cargo fuzz` (fuzz_targets/) and by the
//! project's `cargo test`, which replays every corpus file through them.
pub mod targets;
