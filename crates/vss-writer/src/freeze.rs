//! The freeze bookkeeping of one writer, as a pure state machine (no I/O, no clock, no tasks).
//!
//! The runtime keeps one [`FreezeTable`] per writer, shared by all connections, keyed by
//! snapshot set, and asks it what to do at each step; it then calls the hooks and starts the
//! timers. The rules (vss-model.md §5.2, §5.4, §5.5):
//!
//! * after a successful Freeze for set S, either Thaw or Abort follows: the runtime starts the
//!   freeze timer, and if it fires before Thaw the writer is aborted and S is remembered as
//!   timed out, so a late Thaw fails with `VSS_E_WRITERERROR_TIMEOUT`;
//! * if the connection that delivered Freeze closes before Thaw or Abort (the coordinator died),
//!   the writer is aborted at once;
//! * the abort hook runs at most once per set: an Abort event for a set that the runtime already
//!   aborted is only acknowledged. The one exception: when an Abort arrives (on another
//!   connection) while the freeze hook of that set is still running, the abort hook runs at
//!   once, and if the freeze hook then succeeds after all, abort runs a second time to undo the
//!   late freeze ([`FreezeEnd::UndoLateFreeze`]) — leaving the application frozen would be worse;
//! * a Freeze for a set that was already aborted or timed out is refused without calling the
//!   hook.
//!
//! Sets that are no longer frozen are remembered (to answer late events) until BackupShutdown,
//! or until more than [`MAX_REMEMBERED_SETS`] sets are known.

use std::collections::{HashMap, VecDeque};

use vss_model::{ErrorCode, VssError};

/// Identifies a connection within one runtime.
pub type ConnId = u64;

/// How many snapshot sets the table remembers at most (frozen ones are never forgotten).
pub const MAX_REMEMBERED_SETS: usize = 256;

/// Where one snapshot set stands, for this writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetState {
    /// The freeze hook is running, called for a Freeze on connection `conn`.
    Freezing {
        /// The connection that delivered Freeze.
        conn: ConnId,
    },
    /// Frozen; the freeze timer of `generation` runs.
    Frozen {
        /// The connection that delivered Freeze.
        conn: ConnId,
        /// Tells this freeze's timer from an earlier one's.
        generation: u64,
    },
    /// Thaw arrived in time.
    Thawed,
    /// Aborted (Abort event, coordinator gone, or shutdown).
    Aborted,
    /// The freeze timer fired before Thaw; the writer was aborted.
    TimedOut,
}

impl SetState {
    /// Frozen or being frozen.
    pub fn is_active(self) -> bool {
        matches!(self, SetState::Freezing { .. } | SetState::Frozen { .. })
    }
}

/// What to do with a Freeze event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreezeStart {
    /// Call the freeze hook.
    Proceed,
    /// Fail the event with this error without calling the hook.
    Refuse(VssError),
}

/// What to do once the freeze hook returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeEnd {
    /// Frozen: start the freeze timer tagged `generation`.
    StartTimer {
        /// Pass to [`FreezeTable::timer_fired`].
        generation: u64,
    },
    /// The set was aborted while the hook ran, and the hook succeeded: call abort again.
    UndoLateFreeze,
    /// Nothing more to do.
    Nothing,
}

/// What to do with a Thaw event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThawDecision {
    /// Call the thaw hook.
    Proceed,
    /// Fail the event with this error without calling the hook.
    Refuse(VssError),
}

/// What to do with an Abort event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortDecision {
    /// Call the abort hook.
    CallHook,
    /// The set was already aborted: acknowledge only.
    AlreadyAborted,
}

/// The freeze state of every snapshot set one writer has seen.
#[derive(Debug, Default)]
pub struct FreezeTable {
    sets: HashMap<String, SetState>,
    order: VecDeque<String>,
    next_generation: u64,
}

/// The table key of a snapshot set id: the canonical UUID form when it is one (so `{ABC...}`
/// and `abc...` are the same set), the string itself otherwise.
pub fn set_key(snapshot_set_id: &str) -> String {
    match vss_protocol::parse_id("snapshotSetId", snapshot_set_id) {
        Ok(id) => id.hyphenated().to_string(),
        Err(_) => snapshot_set_id.to_owned(),
    }
}

impl FreezeTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of `set`, if known.
    pub fn state(&self, set: &str) -> Option<SetState> {
        self.sets.get(set).copied()
    }

    /// A Freeze for `set` arrived on `conn`.
    pub fn begin_freeze(&mut self, set: &str, conn: ConnId) -> FreezeStart {
        match self.state(set) {
            Some(SetState::Aborted) => FreezeStart::Refuse(VssError::new(
                ErrorCode::WriterErrorNonRetryable,
                format!("snapshot set {set} was already aborted; start a new snapshot set"),
            )),
            Some(SetState::TimedOut) => FreezeStart::Refuse(VssError::new(
                ErrorCode::WriterErrorTimeout,
                format!(
                    "snapshot set {set} already timed out between Freeze and Thaw; start a new snapshot set"
                ),
            )),
            Some(SetState::Freezing { .. } | SetState::Frozen { .. }) => {
                FreezeStart::Refuse(VssError::new(
                    ErrorCode::WriterErrorNonRetryable,
                    format!("snapshot set {set} is already frozen; Freeze was sent twice"),
                ))
            }
            Some(SetState::Thawed) | None => {
                self.insert(set, SetState::Freezing { conn });
                FreezeStart::Proceed
            }
        }
    }

    /// The freeze hook for `set`, called for a Freeze on `conn`, returned (`succeeded` or not).
    pub fn end_freeze(&mut self, set: &str, conn: ConnId, succeeded: bool) -> FreezeEnd {
        match self.state(set) {
            Some(SetState::Freezing { conn: c }) if c == conn => {
                if succeeded {
                    self.next_generation += 1;
                    let generation = self.next_generation;
                    self.insert(set, SetState::Frozen { conn, generation });
                    FreezeEnd::StartTimer { generation }
                } else {
                    // The coordinator sends Abort next; nothing is frozen.
                    self.remove(set);
                    FreezeEnd::Nothing
                }
            }
            Some(SetState::Aborted) if succeeded => FreezeEnd::UndoLateFreeze,
            _ => FreezeEnd::Nothing,
        }
    }

    /// A Thaw for `set` arrived.
    pub fn thaw(&mut self, set: &str) -> ThawDecision {
        match self.state(set) {
            Some(SetState::TimedOut) => ThawDecision::Refuse(VssError::new(
                ErrorCode::WriterErrorTimeout,
                format!(
                    "Thaw for snapshot set {set} came after the writer's freeze timeout; the writer was \
                     aborted and the snapshot may be inconsistent"
                ),
            )),
            Some(SetState::Aborted) => ThawDecision::Refuse(VssError::new(
                ErrorCode::WriterErrorNonRetryable,
                format!(
                    "snapshot set {set} was aborted before Thaw; the snapshot may be inconsistent"
                ),
            )),
            Some(SetState::Frozen { .. } | SetState::Freezing { .. }) => {
                self.insert(set, SetState::Thawed);
                ThawDecision::Proceed
            }
            Some(SetState::Thawed) | None => ThawDecision::Proceed,
        }
    }

    /// An Abort event for `set` arrived.
    pub fn abort_event(&mut self, set: &str) -> AbortDecision {
        match self.state(set) {
            Some(SetState::Aborted | SetState::TimedOut) => AbortDecision::AlreadyAborted,
            _ => {
                self.insert(set, SetState::Aborted);
                AbortDecision::CallHook
            }
        }
    }

    /// The freeze timer `generation` of `set` fired. True: the writer is still frozen, so it is
    /// now timed out and the runtime must call abort.
    pub fn timer_fired(&mut self, set: &str, generation: u64) -> bool {
        match self.state(set) {
            Some(SetState::Frozen { generation: g, .. }) if g == generation => {
                self.insert(set, SetState::TimedOut);
                true
            }
            _ => false,
        }
    }

    /// Connection `conn` closed: the sets it froze and that are still frozen, now aborted. The
    /// runtime calls abort once for each.
    pub fn connection_closed(&mut self, conn: ConnId) -> Vec<String> {
        let sets: Vec<String> = self
            .sets
            .iter()
            .filter(|(_, s)| matches!(s, SetState::Frozen { conn: c, .. } if *c == conn))
            .map(|(k, _)| k.clone())
            .collect();
        for s in &sets {
            self.insert(s, SetState::Aborted);
        }
        sets
    }

    /// The runtime is shutting down: every set still frozen, now aborted.
    pub fn shutdown(&mut self) -> Vec<String> {
        let sets: Vec<String> = self
            .sets
            .iter()
            .filter(|(_, s)| matches!(s, SetState::Frozen { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        for s in &sets {
            self.insert(s, SetState::Aborted);
        }
        sets
    }

    /// BackupShutdown for `set`: forget it unless it is still frozen.
    pub fn forget(&mut self, set: &str) {
        if !self.state(set).is_some_and(SetState::is_active) {
            self.remove(set);
        }
    }

    /// How many sets are remembered.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Whether no set is remembered.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    fn insert(&mut self, set: &str, state: SetState) {
        if self.sets.insert(set.to_owned(), state).is_none() {
            self.order.push_back(set.to_owned());
            self.prune();
        }
    }

    fn remove(&mut self, set: &str) {
        if self.sets.remove(set).is_some() {
            self.order.retain(|k| k != set);
        }
    }

    fn prune(&mut self) {
        while self.sets.len() > MAX_REMEMBERED_SETS {
            let Some(pos) = self.order.iter().position(|k| !self.sets[k].is_active()) else {
                break;
            };
            if let Some(k) = self.order.remove(pos) {
                self.sets.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

    fn frozen(t: &mut FreezeTable, set: &str, conn: ConnId) -> u64 {
        assert_eq!(t.begin_freeze(set, conn), FreezeStart::Proceed);
        match t.end_freeze(set, conn, true) {
            FreezeEnd::StartTimer { generation } => generation,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn freeze_then_thaw_in_time() {
        let mut t = FreezeTable::new();
        let g = frozen(&mut t, S, 1);
        assert_eq!(
            t.state(S),
            Some(SetState::Frozen {
                conn: 1,
                generation: g
            })
        );
        assert_eq!(t.thaw(S), ThawDecision::Proceed);
        assert!(!t.timer_fired(S, g), "the timer after Thaw does nothing");
        assert!(
            t.connection_closed(1).is_empty(),
            "closing after Thaw aborts nothing"
        );
        assert_eq!(
            t.abort_event(S),
            AbortDecision::CallHook,
            "an Abort after Thaw still reaches the writer"
        );
        assert_eq!(t.abort_event(S), AbortDecision::AlreadyAborted);
    }

    #[test]
    fn timer_then_late_thaw_fails_with_timeout() {
        let mut t = FreezeTable::new();
        let g = frozen(&mut t, S, 1);
        assert!(t.timer_fired(S, g));
        assert!(!t.timer_fired(S, g), "fires once");
        match t.thaw(S) {
            ThawDecision::Refuse(e) => assert_eq!(e.code, ErrorCode::WriterErrorTimeout),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            t.abort_event(S),
            AbortDecision::AlreadyAborted,
            "abort at most once"
        );
        assert!(t.connection_closed(1).is_empty());
    }

    #[test]
    fn stale_timer_generation_is_ignored() {
        let mut t = FreezeTable::new();
        let g1 = frozen(&mut t, S, 1);
        assert_eq!(t.thaw(S), ThawDecision::Proceed);
        let g2 = frozen(&mut t, S, 1);
        assert_ne!(g1, g2);
        assert!(!t.timer_fired(S, g1));
        assert!(t.timer_fired(S, g2));
    }

    #[test]
    fn connection_close_aborts_only_its_own_frozen_sets() {
        let mut t = FreezeTable::new();
        frozen(&mut t, "a", 1);
        frozen(&mut t, "b", 2);
        assert_eq!(t.connection_closed(1), vec!["a".to_owned()]);
        assert_eq!(t.state("a"), Some(SetState::Aborted));
        assert!(matches!(
            t.state("b"),
            Some(SetState::Frozen { conn: 2, .. })
        ));
        assert_eq!(t.abort_event("a"), AbortDecision::AlreadyAborted);
        assert!(
            matches!(t.thaw("a"), ThawDecision::Refuse(e) if e.code == ErrorCode::WriterErrorNonRetryable)
        );
        assert_eq!(t.shutdown(), vec!["b".to_owned()]);
        assert!(t.shutdown().is_empty());
    }

    #[test]
    fn abort_event_on_another_connection_while_frozen() {
        let mut t = FreezeTable::new();
        let g = frozen(&mut t, S, 1);
        assert_eq!(t.abort_event(S), AbortDecision::CallHook);
        assert!(!t.timer_fired(S, g));
        assert!(t.connection_closed(1).is_empty(), "already aborted");
    }

    #[test]
    fn failed_freeze_leaves_nothing_frozen() {
        let mut t = FreezeTable::new();
        assert_eq!(t.begin_freeze(S, 1), FreezeStart::Proceed);
        assert_eq!(t.end_freeze(S, 1, false), FreezeEnd::Nothing);
        assert_eq!(t.state(S), None);
        assert!(t.connection_closed(1).is_empty());
        assert_eq!(t.abort_event(S), AbortDecision::CallHook);
    }

    #[test]
    fn abort_while_freezing_undoes_a_late_freeze() {
        let mut t = FreezeTable::new();
        assert_eq!(t.begin_freeze(S, 1), FreezeStart::Proceed);
        assert_eq!(t.abort_event(S), AbortDecision::CallHook);
        assert_eq!(t.end_freeze(S, 1, true), FreezeEnd::UndoLateFreeze);
        assert_eq!(t.state(S), Some(SetState::Aborted));

        let mut t = FreezeTable::new();
        assert_eq!(t.begin_freeze(S, 1), FreezeStart::Proceed);
        assert_eq!(t.abort_event(S), AbortDecision::CallHook);
        assert_eq!(t.end_freeze(S, 1, false), FreezeEnd::Nothing);
    }

    #[test]
    fn freeze_is_refused_for_aborted_timed_out_or_frozen_sets() {
        let mut t = FreezeTable::new();
        let g = frozen(&mut t, S, 1);
        assert!(matches!(t.begin_freeze(S, 2), FreezeStart::Refuse(_)));
        assert!(t.timer_fired(S, g));
        assert!(
            matches!(t.begin_freeze(S, 2), FreezeStart::Refuse(e) if e.code == ErrorCode::WriterErrorTimeout)
        );
        assert_eq!(t.abort_event("x"), AbortDecision::CallHook);
        assert!(matches!(t.begin_freeze("x", 2), FreezeStart::Refuse(_)));
    }

    #[test]
    fn thaw_without_freeze_proceeds() {
        let mut t = FreezeTable::new();
        assert_eq!(t.thaw(S), ThawDecision::Proceed);
        assert!(t.is_empty());
    }

    #[test]
    fn forget_and_prune() {
        let mut t = FreezeTable::new();
        frozen(&mut t, "frozen", 1);
        t.forget("frozen");
        assert!(
            t.state("frozen").is_some(),
            "a frozen set is never forgotten"
        );
        for i in 0..(MAX_REMEMBERED_SETS + 10) {
            let k = format!("s{i}");
            frozen(&mut t, &k, 1);
            t.thaw(&k);
        }
        assert_eq!(t.len(), MAX_REMEMBERED_SETS);
        assert!(t.state("frozen").is_some());
        assert!(t.state("s0").is_none(), "oldest finished sets go first");
        t.forget("s300");
        t.forget(&format!("s{}", MAX_REMEMBERED_SETS + 9));
        assert_eq!(t.len(), MAX_REMEMBERED_SETS - 1);
    }

    #[test]
    fn set_keys_are_canonical_uuids() {
        assert_eq!(set_key("{6BA7B810-9DAD-11D1-80B4-00C04FD430C8}"), S);
        assert_eq!(set_key(S), S);
        assert_eq!(set_key("not-a-uuid"), "not-a-uuid");
    }
}
