//! The [`Writer`] that runs hook scripts on the coordinator's events.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing::{error, info, warn};
use vss_writer::{
    ApplicationLevel, ComponentType, ErrorCode, EventParams, RestoreMethod, SourceType, UsageType,
    Uuid, VssError, WmdComponent, Writer, WriterMetadata, WriterRestore, full_path,
};

use crate::config::Instance;
use crate::scripts::{Outcome, list_scripts, run_script};

/// The writer's display name.
pub const WRITER_NAME: &str = "vss-writer-script";

/// The writer class id: uuid v5 (DNS namespace) of "vss-writer-script".
pub fn writer_id() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_DNS, WRITER_NAME.as_bytes())
}

/// The one component: an empty FILE_GROUP the requester selects to include the writer.
pub const COMPONENT: &str = "scripts";

/// Which directory a script comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// qemu-guest-agent `fsfreeze-hook.d`: only `freeze` and `thaw`.
    Fsfreeze,
    /// vss hook directory: every event name.
    Vss,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Fsfreeze => "fsfreeze",
            Kind::Vss => "vss",
        }
    }
}

#[derive(Debug, Clone)]
struct Hook {
    kind: Kind,
    path: PathBuf,
}

/// What Freeze did, for Thaw or Abort to undo.
#[derive(Debug)]
struct FrozenState {
    /// The environment of the Freeze (for an Abort without parameters).
    env: Vec<(String, String)>,
    /// The hooks whose `freeze` succeeded, in the order they ran.
    done: Vec<Hook>,
}

/// A script writer instance.
#[derive(Debug)]
pub struct ScriptWriter {
    inst: Instance,
    instance_id: Uuid,
    /// Serializes events: scripts of one instance never run concurrently.
    run_lock: Mutex<()>,
    frozen: Mutex<Option<FrozenState>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `VSS_*` environment of an event.
fn event_env(event: &str, ev: &EventParams) -> Vec<(String, String)> {
    let volumes: Vec<&str> = ev.volumes.iter().map(|v| v.volume.as_str()).collect();
    let mut env = vec![
        ("VSS_EVENT".to_owned(), event.to_owned()),
        ("VSS_SNAPSHOT_SET_ID".to_owned(), ev.snapshot_set_id.clone()),
        (
            "VSS_BACKUP_TYPE".to_owned(),
            ev.backup_type.name().to_owned(),
        ),
        ("VSS_VOLUMES".to_owned(), volumes.join("\n")),
    ];
    let paths: Vec<&str> = ev
        .volumes
        .iter()
        .filter_map(|v| v.snapshot_path.as_deref())
        .collect();
    if !paths.is_empty() && paths.len() == ev.volumes.len() {
        env.push(("VSS_SNAPSHOT_PATHS".to_owned(), paths.join("\n")));
    }
    if event == "pre-restore" || event == "post-restore" {
        env.extend(restore_env(ev));
    }
    env
}

/// The restore part of a PreRestore or PostRestore environment (see the crate documentation):
/// the selected components, and what the requester said about the `scripts` component (the
/// writer's only one; the first selected component if it were ever another).
fn restore_env(ev: &EventParams) -> Vec<(String, String)> {
    let components = ev.components.as_deref().unwrap_or_default();
    let names: Vec<String> = components
        .iter()
        .map(|c| full_path(&c.logical_path, &c.name))
        .collect();
    let mut env = vec![("VSS_COMPONENTS".to_owned(), names.join("\n"))];
    let Some(c) = components
        .iter()
        .find(|c| c.logical_path.is_empty() && c.name == COMPONENT)
        .or(components.first())
    else {
        return env;
    };
    let mut set = |k: &str, v: String| env.push((k.to_owned(), v));
    if let Some(options) = &c.restore_options {
        set("VSS_RESTORE_OPTIONS", options.clone());
    }
    if let Some(target) = c.restore_target {
        set("VSS_RESTORE_TARGET", target.name().to_owned());
    }
    if let Some(more) = c.additional_restores {
        set(
            "VSS_ADDITIONAL_RESTORES",
            if more { "1" } else { "0" }.to_owned(),
        );
    }
    if let Some(status) = c.file_restore_status {
        set("VSS_RESTORE_STATUS", status.name().to_owned());
    }
    let locations = c.alternate_locations.as_deref().unwrap_or_default();
    set("VSS_RESTORE_DESTINATIONS", locations.len().to_string());
    for (i, a) in locations.iter().enumerate() {
        let n = i + 1;
        set(&format!("VSS_RESTORE_SOURCE_{n}"), a.path.clone());
        set(&format!("VSS_RESTORE_FILESPEC_{n}"), a.filespec.clone());
        let recursive = if a.recursive { "yes" } else { "no" };
        set(&format!("VSS_RESTORE_RECURSIVE_{n}"), recursive.to_owned());
        set(
            &format!("VSS_RESTORE_DESTINATION_{n}"),
            a.destination.clone(),
        );
    }
    env
}

fn with_event(env: &[(String, String)], event: &str) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| {
            if k == "VSS_EVENT" {
                (k.clone(), event.to_owned())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

impl ScriptWriter {
    /// A writer for `inst`.
    pub fn new(inst: Instance) -> ScriptWriter {
        let instance_id = Uuid::new_v5(&writer_id(), inst.name.as_bytes());
        ScriptWriter {
            inst,
            instance_id,
            run_lock: Mutex::new(()),
            frozen: Mutex::new(None),
        }
    }

    fn list(&self, dir: Option<&Path>, kind: Kind) -> Result<Vec<Hook>, VssError> {
        let Some(dir) = dir else {
            return Ok(Vec::new());
        };
        let scripts = list_scripts(dir).map_err(|e| {
            VssError::new(
                ErrorCode::WriterErrorNonRetryable,
                format!("cannot list hook directory {}: {e}", dir.display()),
            )
        })?;
        Ok(scripts
            .into_iter()
            .map(|path| Hook { kind, path })
            .collect())
    }

    /// The hooks for `event`, in forward order: the fsfreeze-hook.d scripts first (only for
    /// freeze and thaw), then the vss hook scripts.
    fn hooks(&self, event: &str) -> Result<Vec<Hook>, VssError> {
        let mut hooks = Vec::new();
        if event == "freeze" || event == "thaw" {
            hooks = self.list(self.inst.fsfreeze_hook_dir.as_deref(), Kind::Fsfreeze)?;
        }
        hooks.extend(self.list(self.inst.vss_hook_dir.as_deref(), Kind::Vss)?);
        Ok(hooks)
    }

    /// Runs `hook` with `arg`; a failure is the event's writer error.
    fn run(&self, hook: &Hook, arg: &str, env: &[(String, String)]) -> Result<(), VssError> {
        let file = hook
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = format!("{arg}-{}-{file}", hook.kind.label());
        let dir = &self.inst.output_dir;
        let out = dir.join(format!("{base}.out"));
        let err = dir.join(format!("{base}.err"));
        let timeout = Duration::from_millis(self.inst.timeout_ms);
        let shown = hook.path.display();
        info!(script = %shown, arg, "running hook script");
        let started = std::time::Instant::now();
        let outcome = match std::fs::create_dir_all(dir) {
            Ok(()) => run_script(&hook.path, arg, env, &out, &err, timeout),
            Err(e) => Outcome::SpawnError(std::io::Error::new(
                e.kind(),
                format!("cannot create output directory {}: {e}", dir.display()),
            )),
        };
        let result = match outcome {
            Outcome::Success => Ok(()),
            Outcome::Failed { status, stderr } => Err(VssError::new(
                ErrorCode::WriterErrorNonRetryable,
                format!("hook script {shown} {arg} failed ({status}); stderr: {stderr}"),
            )),
            Outcome::TimedOut { stderr } => Err(VssError::new(
                ErrorCode::WriterErrorTimeout,
                format!(
                    "hook script {shown} {arg} did not exit within {} ms; its process group \
                     was killed; stderr: {stderr}",
                    self.inst.timeout_ms
                ),
            )),
            Outcome::SpawnError(e) => Err(VssError::new(
                ErrorCode::WriterErrorNonRetryable,
                format!("cannot run hook script {shown} {arg}: {e}"),
            )),
        };
        match &result {
            Ok(()) => {
                info!(script = %shown, arg, elapsed = ?started.elapsed(), "hook script succeeded")
            }
            Err(e) => warn!(script = %shown, arg, error = %e.message, "hook script failed"),
        }
        result
    }

    /// Runs every hook of `event` in forward order, stopping at the first failure.
    fn run_forward(&self, event: &str, env: &[(String, String)]) -> Result<(), VssError> {
        for hook in self.hooks(event)? {
            self.run(&hook, event, env)?;
        }
        Ok(())
    }

    /// Runs `hooks` in reverse order, each with the argument `arg_of` gives it (None: skip),
    /// all of them even after a failure; returns the first failure.
    fn run_reverse(
        &self,
        hooks: &[Hook],
        arg_of: impl Fn(Kind) -> Option<&'static str>,
        env: &[(String, String)],
    ) -> Result<(), VssError> {
        let mut first = None;
        for hook in hooks.iter().rev() {
            let Some(arg) = arg_of(hook.kind) else {
                continue;
            };
            if let Err(e) = self.run(hook, arg, &with_event(env, arg)) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Handles an event that only vss hook scripts see.
    fn vss_event(&self, event: &str, ev: &EventParams) -> Result<(), VssError> {
        let _g = lock(&self.run_lock);
        self.run_forward(event, &event_env(event, ev))
    }
}

impl Writer for ScriptWriter {
    fn metadata(&self) -> WriterMetadata {
        WriterMetadata {
            writer_id: writer_id(),
            instance_id: self.instance_id,
            writer_name: WRITER_NAME.to_owned(),
            instance_name: self.inst.name.clone(),
            usage_type: UsageType::Other,
            source_type: SourceType::Other,
            application_level: ApplicationLevel::FrontEnd,
            freeze_timeout_ms: self.inst.freeze_timeout_ms,
            restore_method: RestoreMethod::RestoreIfCanReplace,
            // Only vss hook scripts get pre-restore and post-restore: without a vss hook
            // directory there is nothing to run, and the writer says so.
            writer_restore: if self.inst.vss_hook_dir.is_some() {
                WriterRestore::Always
            } else {
                WriterRestore::Never
            },
            restore_service: None,
            backup_schema: 0,
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            exclude_files: vec![],
            components: vec![WmdComponent {
                component_type: ComponentType::FileGroup,
                logical_path: String::new(),
                name: COMPONENT.to_owned(),
                caption: format!("Hook scripts of {}", self.inst.name),
                selectable: true,
                selectable_for_restore: self.inst.vss_hook_dir.is_some(),
                notify_on_backup_complete: true,
                restore_metadata: false,
                component_flags: 0,
                files: vec![],
                log_files: vec![],
                dependencies: vec![],
            }],
        }
    }

    fn freeze_timeout_ms(&self) -> u64 {
        self.inst.freeze_timeout_ms
    }

    fn prepare_for_backup(
        &self,
        ev: &EventParams,
    ) -> Result<Vec<vss_writer::ComponentUpdate>, VssError> {
        self.vss_event("prepare-backup", ev)?;
        Ok(Vec::new())
    }

    fn prepare_for_snapshot(&self, ev: &EventParams) -> Result<(), VssError> {
        self.vss_event("prepare-snapshot", ev)
    }

    fn freeze(&self, ev: &EventParams) -> Result<(), VssError> {
        let _g = lock(&self.run_lock);
        let env = event_env("freeze", ev);
        let hooks = self.hooks("freeze")?;
        let mut done: Vec<Hook> = Vec::new();
        for hook in hooks {
            if let Err(e) = self.run(&hook, "freeze", &env) {
                if !done.is_empty() {
                    warn!(
                        count = done.len(),
                        "a freeze script failed: thawing the scripts that froze"
                    );
                }
                if let Err(t) = self.run_reverse(&done, |_| Some("thaw"), &env) {
                    error!(error = %t.message, "unwinding the freeze failed");
                }
                return Err(e);
            }
            done.push(hook);
        }
        *lock(&self.frozen) = Some(FrozenState { env, done });
        Ok(())
    }

    fn thaw(&self, ev: &EventParams) -> Result<(), VssError> {
        let _g = lock(&self.run_lock);
        let env = event_env("thaw", ev);
        let hooks = match lock(&self.frozen).take() {
            Some(state) => state.done,
            None => self.hooks("thaw")?,
        };
        self.run_reverse(&hooks, |_| Some("thaw"), &env)
    }

    fn post_snapshot(
        &self,
        ev: &EventParams,
    ) -> Result<Vec<vss_writer::ComponentUpdate>, VssError> {
        self.vss_event("post-snapshot", ev)?;
        Ok(Vec::new())
    }

    fn abort(&self, ev: Option<&EventParams>) {
        let _g = lock(&self.run_lock);
        let frozen = lock(&self.frozen).take();
        let env = match (ev, &frozen) {
            (Some(ev), _) => event_env("abort", ev),
            (None, Some(state)) => with_event(&state.env, "abort"),
            (None, None) => vec![("VSS_EVENT".to_owned(), "abort".to_owned())],
        };
        // vss hook scripts get `abort` (all of them, reverse order), then the fsfreeze-hook.d
        // scripts that froze get `thaw` (reverse order).
        let mut hooks = frozen
            .map(|s| s.done)
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.kind == Kind::Fsfreeze)
            .collect::<Vec<_>>();
        match self.list(self.inst.vss_hook_dir.as_deref(), Kind::Vss) {
            Ok(v) => hooks.extend(v),
            Err(e) => error!(error = %e.message, "abort: cannot list the vss hook scripts"),
        }
        let arg_of = |k: Kind| match k {
            Kind::Fsfreeze => Some("thaw"),
            Kind::Vss => Some("abort"),
        };
        if let Err(e) = self.run_reverse(&hooks, arg_of, &env) {
            error!(error = %e.message, "abort: a hook script failed");
        }
    }

    fn backup_complete(&self, ev: &EventParams) -> Result<(), VssError> {
        self.vss_event("backup-complete", ev)
    }

    fn backup_shutdown(&self, snapshot_set_id: Uuid) {
        let _g = lock(&self.run_lock);
        let env = vec![
            ("VSS_EVENT".to_owned(), "backup-shutdown".to_owned()),
            (
                "VSS_SNAPSHOT_SET_ID".to_owned(),
                snapshot_set_id.to_string(),
            ),
        ];
        match self.list(self.inst.vss_hook_dir.as_deref(), Kind::Vss) {
            Ok(hooks) => {
                for hook in hooks {
                    // Cannot fail: run them all, the failure is only logged.
                    let _ = self.run(&hook, "backup-shutdown", &env);
                }
            }
            Err(e) => error!(error = %e.message, "backup-shutdown: cannot list the hook scripts"),
        }
    }

    fn pre_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        let _g = lock(&self.run_lock);
        let env = event_env("pre-restore", ev);
        let mut done: Vec<Hook> = Vec::new();
        for hook in self.list(self.inst.vss_hook_dir.as_deref(), Kind::Vss)? {
            if let Err(e) = self.run(&hook, "pre-restore", &env) {
                // A writer that failed PreRestore gets no PostRestore: the scripts that already
                // prepared (stopped a service, say) are given post-restore now, so that nothing
                // stays stopped. Nothing was restored yet, so VSS_RESTORE_STATUS is not set.
                if !done.is_empty() {
                    warn!(
                        count = done.len(),
                        "a pre-restore script failed: running post-restore for the scripts \
                         that already ran pre-restore"
                    );
                }
                if let Err(t) = self.run_reverse(&done, |_| Some("post-restore"), &env) {
                    error!(error = %t.message, "unwinding pre-restore failed");
                }
                return Err(e);
            }
            done.push(hook);
        }
        Ok(())
    }

    fn post_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        let _g = lock(&self.run_lock);
        let env = event_env("post-restore", ev);
        // Reverse name order, every script even after a failure (each must get the chance to
        // restart what its pre-restore stopped), like thaw; the first failure is reported.
        let hooks = self.list(self.inst.vss_hook_dir.as_deref(), Kind::Vss)?;
        self.run_reverse(&hooks, |_| Some("post-restore"), &env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(vss: bool) -> Instance {
        Instance {
            name: "t".into(),
            fsfreeze_hook_dir: Some(PathBuf::from("/etc/qemu/fsfreeze-hook.d")),
            vss_hook_dir: vss.then(|| PathBuf::from("/etc/vss/hooks.d")),
            timeout_ms: 1000,
            freeze_timeout_ms: 1000,
            output_dir: PathBuf::from("/run/t"),
        }
    }

    #[test]
    fn restore_events_are_asked_for_only_with_a_vss_hook_directory() {
        let md = ScriptWriter::new(instance(true)).metadata();
        assert_eq!(md.writer_restore, WriterRestore::Always);
        assert!(md.components[0].selectable_for_restore);
        let md = ScriptWriter::new(instance(false)).metadata();
        assert_eq!(md.writer_restore, WriterRestore::Never);
        assert!(!md.components[0].selectable_for_restore);
    }
}
