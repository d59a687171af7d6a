//! Fault injection points for the crash tests: `VSSD_FAULT=<point>` makes vssd kill itself
//! (SIGKILL, no cleanup) when it reaches that point, so tests can check what a real crash there
//! leaves behind and what a restarted vssd does about it. Unset in production; reading one
//! environment variable is all it costs.
//!
//! Points: `while-frozen` (filesystems frozen, before the first commit), `after-commit` (all
//! committed and thawed, before the catalog records it).

/// Dies here if `VSSD_FAULT` names `point`.
pub fn point(point: &str) {
    if std::env::var("VSSD_FAULT").is_ok_and(|v| v == point) {
        // SIGKILL ourselves: no destructors, no flushing, like a real crash.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}
