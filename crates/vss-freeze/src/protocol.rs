//! The conversation between the freezing process (the *owner*) and its guard, over the guard's
//! stdin and stdout pipes, and what the guard's exit status means.
//!
//! Why a conversation and not just "done":
//!
//! * **`armed`** (guard → owner) comes before the first `FIFREEZE`: the guard has opened every
//!   mount point, holds a pidfd on the owner and has its signals under control, so there is no
//!   instant at which a filesystem is frozen and nobody would thaw it.
//! * **`forget N`** (owner → guard) is sent the moment `FIFREEZE` of mount point `N` fails with
//!   `EBUSY`: someone else froze it, and we must never thaw a freeze that is not ours. (If the
//!   owner is killed in the microseconds between that `EBUSY` and this line, the guard thaws the
//!   other party's freeze: of the two possible mistakes, that is the one that leaves nothing
//!   frozen.)
//! * **`frozen`** (owner → guard, answered by `ok`) ends the freezing: the guard answers only
//!   while it has not begun to thaw, and it reads its input in order, so an `ok` proves that
//!   every `FIFREEZE` the owner made is covered by the guard. Without it, a window shorter than
//!   the freezing itself (dirty data makes one `FIFREEZE` take over a second) could let the guard
//!   thaw at its deadline *between* two `FIFREEZE`s and exit, leaving the later ones unguarded.
//! * **`thawing`** (owner → guard, answered by `ok`) starts the owner's own thaw: after `ok` the
//!   guard's deadline is pushed back by one window, so the owner's `FITHAW`s and a deadline
//!   thaw never race, and [`ThawReport::guard_thawed`](crate::ThawReport::guard_thawed) is
//!   exact. If the owner dies while thawing, the guard still thaws (again, `EINVAL` is fine).
//! * **`done`** (owner → guard): the owner thawed everything itself; the guard exits without
//!   touching anything.
//! * End of file on stdin is only a hint, never a reason to thaw or to exit: another child of the
//!   owner may have inherited the pipe's write end (so EOF comes late), and an owner that
//!   `exec`s closes it while still alive. Owner death is seen through the pidfd alone.

use std::process::ExitStatus;

/// The guard's first line on stdout.
pub(crate) const ARMED: &str = "armed";
/// The guard's answer to [`FROZEN`] and [`THAWING`].
pub(crate) const OK: &str = "ok";
/// Owner → guard: the owner thawed everything; exit without thawing.
pub(crate) const DONE: &str = "done";
/// Owner → guard: `forget N`, mount point N (0-based, argument order) is not ours to thaw.
pub(crate) const FORGET: &str = "forget";
/// Owner → guard: all `FIFREEZE`s are made; answer `ok` if you have not begun to thaw.
pub(crate) const FROZEN: &str = "frozen";
/// Owner → guard: the owner is thawing now; answer `ok` and hold off the deadline.
pub(crate) const THAWING: &str = "thawing";

/// Why the guard exited: its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardExit {
    /// 0: the owner said `done` (it thawed itself); the guard thawed nothing.
    Done,
    /// 1: bad arguments or setup failed before arming; nothing was thawed.
    Setup,
    /// 2: the commit window ended; the guard thawed every mount point.
    Deadline,
    /// 3: the owner died; the guard thawed every mount point (or, if the owner was already dead
    /// before arming, nothing: nothing can have been frozen then).
    OwnerDied,
    /// 4: SIGTERM, SIGINT or SIGHUP; the guard thawed every mount point.
    Signal,
    /// 5: the guard tried to thaw (deadline, owner death or signal) and some `FITHAW` failed
    /// with something other than "not frozen"; details on its stderr.
    ThawFailed,
}

impl GuardExit {
    /// The exit status.
    pub const fn code(self) -> i32 {
        match self {
            GuardExit::Done => 0,
            GuardExit::Setup => 1,
            GuardExit::Deadline => 2,
            GuardExit::OwnerDied => 3,
            GuardExit::Signal => 4,
            GuardExit::ThawFailed => 5,
        }
    }

    /// The reason for an exit status.
    pub const fn from_code(code: i32) -> Option<GuardExit> {
        Some(match code {
            0 => GuardExit::Done,
            1 => GuardExit::Setup,
            2 => GuardExit::Deadline,
            3 => GuardExit::OwnerDied,
            4 => GuardExit::Signal,
            5 => GuardExit::ThawFailed,
            _ => return None,
        })
    }

    /// The reason for a guard's exit status; `None` if it was killed by a signal (it thawed
    /// nothing then) or exited with an unknown status.
    pub fn from_status(status: ExitStatus) -> Option<GuardExit> {
        status.code().and_then(GuardExit::from_code)
    }

    /// Whether the guard thawed the set (successfully) before exiting.
    pub const fn thawed(self) -> bool {
        matches!(
            self,
            GuardExit::Deadline | GuardExit::OwnerDied | GuardExit::Signal
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_round_trip() {
        for e in [
            GuardExit::Done,
            GuardExit::Setup,
            GuardExit::Deadline,
            GuardExit::OwnerDied,
            GuardExit::Signal,
            GuardExit::ThawFailed,
        ] {
            assert_eq!(GuardExit::from_code(e.code()), Some(e));
        }
        assert_eq!(GuardExit::from_code(101), None);
        assert!(GuardExit::Deadline.thawed());
        assert!(!GuardExit::Done.thawed());
        assert!(!GuardExit::ThawFailed.thawed());
    }
}
