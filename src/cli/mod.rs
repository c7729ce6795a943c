//! The verbs of the command line, one file per group: each parses its flags and
//! composes the store, the registry client, the builder and the runtime.

pub mod archive;
pub mod budget;
pub mod build;
pub mod containers;
pub mod control;
pub mod images;
pub mod import;
pub mod login;
pub mod maintenance;
pub mod pull;
pub mod push;
pub mod run;
