//! The Dockerfile frontend: logical lines and directives (`dockerfile`), typed
//! instructions (`instruction`), word expansion (`words`) and ignore patterns
//! (`pattern`). Pure text in, typed values out: nothing here touches the store.

pub mod dockerfile;
pub mod instruction;
pub mod path;
pub mod pattern;
pub mod words;
