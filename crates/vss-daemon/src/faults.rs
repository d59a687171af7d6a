//! Fault injection for the crash tests: `VSSD_FAULT` makes vssd die (SIGKILL, no cleanup) or a
//! provider fail at a named point, so tests can check what a real crash or failure there leaves
//! behind and what a restarted vssd does about it. Unset in production: reading one environment
//! variable once is all it costs, and providers are only wrapped when a provider point is named.
//!
//! `VSSD_FAULT` is a comma-separated list of `[kill:|fail:]POINT` (no prefix means `kill`).
//!
//! Points where vssd can be killed:
//! - `while-frozen`: filesystems frozen, before the first commit;
//! - `after-commit`: every volume committed and thawed, before the catalog records it;
//! - `after-EVENT` (EVENT a writer event name such as `Freeze` or `BackupShutdown`): the event's
//!   replies from every writer it went to have been received, before vssd acts on them;
//! - `provider-PHASE` (PHASE one of [`PROVIDER_PHASES`]): right after the provider's call for
//!   that phase returned, before vssd acts on its result.
//!
//! `fail:provider-PHASE` makes the provider's call for that phase fail with
//! VSS_E_UNEXPECTED_PROVIDER_ERROR without doing anything (for `abort` and `delete`: a provider
//! that could not clean up, leaving the snapshot behind).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use vss_model::{ErrorCode, VssError, WriterEvent};
use vss_provider::{CommittedSnapshot, Exposure, Provider, ProviderInfo, SnapshotRequest, Volume};

/// The provider phases a fault can name, as in `provider-<phase>`.
pub const PROVIDER_PHASES: [&str; 7] = [
    "begin-prepare",
    "end-prepare",
    "pre-commit",
    "commit",
    "post-commit",
    "abort",
    "delete",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Fail,
}

fn faults() -> &'static [(Action, String)] {
    static FAULTS: OnceLock<Vec<(Action, String)>> = OnceLock::new();
    FAULTS.get_or_init(|| {
        std::env::var("VSSD_FAULT")
            .map(|v| parse(&v))
            .unwrap_or_default()
    })
}

fn parse(spec: &str) -> Vec<(Action, String)> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once(':') {
            Some(("kill", p)) => (Action::Kill, p.to_owned()),
            Some(("fail", p)) => (Action::Fail, p.to_owned()),
            _ => (Action::Kill, s.to_owned()),
        })
        .collect()
}

fn named(action: Action, point: &str) -> bool {
    faults().iter().any(|(a, p)| *a == action && p == point)
}

/// Dies here if `VSSD_FAULT` names `point` (to kill).
pub fn point(point: &str) {
    if named(Action::Kill, point) {
        // SIGKILL ourselves: no destructors, no flushing, like a real crash.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}

/// Dies here if `VSSD_FAULT` names `after-<event>`.
pub fn after_event(event: WriterEvent) {
    if !faults().is_empty() {
        point(&format!("after-{}", event.name()));
    }
}

/// Wraps `provider` so that its phases obey `VSSD_FAULT`, when it names any provider point.
pub fn wrap(provider: Arc<dyn Provider>) -> Arc<dyn Provider> {
    if faults().iter().any(|(_, p)| p.starts_with("provider-")) {
        Arc::new(Faulty(provider))
    } else {
        provider
    }
}

/// A provider whose phases fail or kill vssd as `VSSD_FAULT` says; otherwise the inner one.
#[derive(Debug)]
struct Faulty(Arc<dyn Provider>);

impl Faulty {
    /// Runs `phase`: fails instead when asked to, dies after it when asked to.
    fn phase<T>(
        &self,
        phase: &str,
        f: impl FnOnce() -> Result<T, VssError>,
    ) -> Result<T, VssError> {
        let name = format!("provider-{phase}");
        if named(Action::Fail, &name) {
            return Err(VssError::new(
                ErrorCode::UnexpectedProviderError,
                format!("fault injected at {name} (VSSD_FAULT)"),
            ));
        }
        let r = f();
        point(&name);
        r
    }
}

impl Provider for Faulty {
    fn info(&self) -> ProviderInfo {
        self.0.info()
    }
    fn is_volume_supported(&self, volume: &Volume) -> bool {
        self.0.is_volume_supported(volume)
    }
    fn underlying_volume(&self, volume: &Volume) -> Option<std::path::PathBuf> {
        self.0.underlying_volume(volume)
    }
    fn begin_prepare(&self, request: &SnapshotRequest) -> Result<(), VssError> {
        self.phase("begin-prepare", || self.0.begin_prepare(request))
    }
    fn end_prepare(&self, request: &SnapshotRequest) -> Result<(), VssError> {
        self.phase("end-prepare", || self.0.end_prepare(request))
    }
    fn pre_commit(&self, request: &SnapshotRequest) -> Result<(), VssError> {
        self.phase("pre-commit", || self.0.pre_commit(request))
    }
    fn commit(&self, request: &SnapshotRequest) -> Result<CommittedSnapshot, VssError> {
        self.phase("commit", || self.0.commit(request))
    }
    fn post_commit(
        &self,
        request: &SnapshotRequest,
        snapshot: &CommittedSnapshot,
    ) -> Result<(), VssError> {
        self.phase("post-commit", || self.0.post_commit(request, snapshot))
    }
    fn abort(
        &self,
        request: &SnapshotRequest,
        committed: Option<&CommittedSnapshot>,
    ) -> Result<(), VssError> {
        self.phase("abort", || self.0.abort(request, committed))
    }
    fn delete(&self, snapshot: &CommittedSnapshot) -> Result<(), VssError> {
        self.phase("delete", || self.0.delete(snapshot))
    }
    fn exists(&self, snapshot: &CommittedSnapshot) -> Result<bool, VssError> {
        self.0.exists(snapshot)
    }
    fn query(&self, volume: &Volume) -> Result<Vec<String>, VssError> {
        self.0.query(volume)
    }
    fn expose(&self, snapshot: &CommittedSnapshot, at: &Path) -> Result<Exposure, VssError> {
        self.0.expose(snapshot, at)
    }
    fn unexpose(&self, snapshot: &CommittedSnapshot, exposure: &Exposure) -> Result<(), VssError> {
        self.0.unexpose(snapshot, exposure)
    }
    fn break_snapshot(&self, snapshot: &CommittedSnapshot) -> Result<(), VssError> {
        self.0.break_snapshot(snapshot)
    }
    fn revert(
        &self,
        snapshot: &CommittedSnapshot,
        volume: &Path,
        force_dismount: bool,
    ) -> Result<(), VssError> {
        self.0.revert(snapshot, volume, force_dismount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_actions_and_defaults_to_kill() {
        assert_eq!(
            parse("while-frozen, fail:provider-commit,kill:after-Freeze,,"),
            vec![
                (Action::Kill, "while-frozen".to_owned()),
                (Action::Fail, "provider-commit".to_owned()),
                (Action::Kill, "after-Freeze".to_owned()),
            ]
        );
        assert!(parse("").is_empty());
    }
}
