//! What a step of starting a container returns: `Ok`, or the error in words (the
//! child has no error types to spare between fork and exec).

/// One setup call's result: the one line the parent prints on failure.
pub type Step<T = ()> = Result<T, String>;

/// Formats an errno as `what: error`.
pub fn errno(what: impl std::fmt::Display) -> impl FnOnce(rustix::io::Errno) -> String {
    move |e| format!("{what}: {e}")
}
