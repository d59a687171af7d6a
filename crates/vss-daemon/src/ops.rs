//! Asynchronous operations, like `IVssAsync` (vss-model.md §2.5).
//!
//! An operation is created by the requester call that starts it, runs in its own task, and ends
//! once with a status. QueryStatus, Wait and Cancel look it up by id; they may come from any
//! connection of the same uid (varlink answers one connection's calls in order, so a requester
//! that wants to wait and call at once uses a second connection).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use vss_model::{AsyncStatus, Id, VssError, session::OpKind};

/// What Cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Cancelled now (`S_OK`).
    Cancelled,
    /// The operation had already ended, or is past the point where it can be cancelled
    /// (DoSnapshotSet after its commit began): its current status.
    Already(AsyncStatus),
}

/// One operation.
#[derive(Debug)]
pub struct Operation {
    /// Its id.
    pub id: Id,
    /// Which call started it.
    pub kind: OpKind,
    /// The uid of the requester that started it.
    pub owner_uid: u32,
    state: Mutex<OpState>,
    status_tx: watch::Sender<AsyncStatus>,
}

#[derive(Debug)]
struct OpState {
    /// Cancel was requested and accepted.
    cancelled: bool,
    /// Cancel is still possible.
    cancellable: bool,
}

impl Operation {
    /// The current status.
    pub fn status(&self) -> AsyncStatus {
        self.status_tx.borrow().clone()
    }

    /// Whether Cancel was accepted; the task checks this at its safe points.
    pub fn is_cancelled(&self) -> bool {
        self.state.lock().expect("op state").cancelled
    }

    /// From now on Cancel is refused (DoSnapshotSet calls this right before committing).
    /// Returns false if a cancel came first, in which case the task must stop.
    pub fn enter_point_of_no_return(&self) -> bool {
        let mut s = self.state.lock().expect("op state");
        if s.cancelled {
            return false;
        }
        s.cancellable = false;
        true
    }

    /// Requests cancellation.
    pub fn cancel(&self) -> CancelOutcome {
        let mut s = self.state.lock().expect("op state");
        let status = self.status();
        if status.is_done() || !s.cancellable {
            return CancelOutcome::Already(status);
        }
        s.cancelled = true;
        // The requester sees CANCELLED at once; the task winds down on its own.
        self.status_tx.send_replace(AsyncStatus::Cancelled);
        CancelOutcome::Cancelled
    }

    /// Ends the operation. A cancelled operation stays cancelled.
    pub fn complete(&self, result: Result<(), VssError>) -> AsyncStatus {
        let _s = self.state.lock().expect("op state");
        let current = self.status();
        if current.is_done() {
            return current;
        }
        let status = match result {
            Ok(()) => AsyncStatus::Finished,
            Err(e) => AsyncStatus::Failed(e),
        };
        self.status_tx.send_replace(status.clone());
        status
    }

    /// Resolves once Cancel was accepted (never, if it is not). Work in progress races against
    /// it, so that a cancelled operation frees its session at once.
    pub async fn cancelled(&self) {
        let mut rx = self.status_tx.subscribe();
        let _ = rx.wait_for(|s| *s == AsyncStatus::Cancelled).await;
    }

    /// Waits until the operation ends or `timeout` passes; returns the status then.
    pub async fn wait(&self, timeout: Option<Duration>) -> AsyncStatus {
        let mut rx = self.status_tx.subscribe();
        let done = async {
            // `wait_for` returns at once if the current value already matches.
            let _ = rx.wait_for(|s| s.is_done()).await;
        };
        match timeout {
            Some(t) => {
                let _ = tokio::time::timeout(t, done).await;
            }
            None => done.await,
        }
        self.status()
    }
}

/// All live operations, by id.
#[derive(Debug, Default)]
pub struct Operations {
    map: Mutex<HashMap<Id, Arc<Operation>>>,
}

/// The most operations kept at once (each session has at most five).
pub const MAX_OPERATIONS: usize = 10_000;

impl Operations {
    /// Registers a new pending operation.
    pub fn create(&self, kind: OpKind, owner_uid: u32) -> Result<Arc<Operation>, VssError> {
        let (status_tx, _) = watch::channel(AsyncStatus::Pending);
        let op = Arc::new(Operation {
            id: Id::new_v4(),
            kind,
            owner_uid,
            state: Mutex::new(OpState {
                cancelled: false,
                cancellable: true,
            }),
            status_tx,
        });
        let mut map = self.map.lock().expect("ops");
        if map.len() >= MAX_OPERATIONS {
            return Err(VssError::new(
                vss_model::ErrorCode::OutOfMemory,
                "too many operations are open; close finished sessions",
            ));
        }
        map.insert(op.id, op.clone());
        Ok(op)
    }

    /// Looks an operation up for `uid` (its owner, or root). Unknown or foreign:
    /// `VSS_E_OBJECT_NOT_FOUND`.
    pub fn get(&self, id: &str, uid: u32) -> Result<Arc<Operation>, VssError> {
        let parsed = vss_protocol::parse_id("operation", id)?;
        let map = self.map.lock().expect("ops");
        match map.get(&parsed) {
            Some(op) if op.owner_uid == uid || uid == 0 => Ok(op.clone()),
            _ => Err(VssError::not_found(format!(
                "no operation {id} (operations live as long as the session that started them)"
            ))),
        }
    }

    /// Forgets operations (their session ended).
    pub fn remove(&self, ids: &[Id]) {
        let mut map = self.map.lock().expect("ops");
        for id in ids {
            map.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_query_cancel() {
        let ops = Operations::default();
        let op = ops.create(OpKind::BackupComplete, 1000).unwrap();
        assert_eq!(op.status(), AsyncStatus::Pending);
        // Wait with a timeout on a pending operation answers PENDING.
        assert_eq!(
            op.wait(Some(Duration::from_millis(10))).await,
            AsyncStatus::Pending
        );
        // Another uid cannot see it; root can.
        let id = op.id.to_string();
        assert!(ops.get(&id, 1001).is_err());
        assert!(ops.get(&id, 0).is_ok());
        assert!(ops.get("not-a-uuid", 1000).is_err());
        assert_eq!(op.cancel(), CancelOutcome::Cancelled);
        assert_eq!(op.status(), AsyncStatus::Cancelled);
        // Completing later does not change a cancelled operation.
        op.complete(Ok(()));
        assert_eq!(op.wait(None).await, AsyncStatus::Cancelled);
        assert_eq!(op.cancel(), CancelOutcome::Already(AsyncStatus::Cancelled));
        ops.remove(&[op.id]);
        assert!(ops.get(&id, 1000).is_err());
    }

    #[tokio::test]
    async fn point_of_no_return_refuses_cancel() {
        let ops = Operations::default();
        let op = ops.create(OpKind::DoSnapshotSet, 0).unwrap();
        assert!(op.enter_point_of_no_return());
        assert_eq!(op.cancel(), CancelOutcome::Already(AsyncStatus::Pending));
        let waiter = {
            let op = op.clone();
            tokio::spawn(async move { op.wait(None).await })
        };
        op.complete(Err(VssError::bad_state("x")));
        assert!(matches!(waiter.await.unwrap(), AsyncStatus::Failed(_)));
    }
}
