//! The snapshot catalog: every snapshot vssd made and has not deleted, in SQLite (bundled) under
//! the state directory.
//!
//! **Architecture Invariant:** a row is written before the provider commits (state
//! `VSS_SS_PREPARING`), updated right after (locator known, `VSS_SS_COMMITTED`), and marked
//! `VSS_SS_CREATED` when the set is complete. A crash at any point leaves a row a restart can
//! act on: [`Catalog::recoverable`] lists what the startup reconciliation must delete.
//! The state directory must never be on a filesystem vssd freezes.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use vss_model::{Id, SnapshotState, VssError, attr};

/// The catalog's format version, kept in `meta`.
const SCHEMA_VERSION: i64 = 1;

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// Snapshot id.
    pub snapshot_id: Id,
    /// Its set.
    pub snapshot_set_id: Id,
    /// Volumes in the set at creation.
    pub snapshots_count: i64,
    /// Original volume.
    pub original_volume: String,
    /// Where it is readable.
    pub snapshot_path: String,
    /// Provider-private locator.
    pub locator: String,
    /// Provider.
    pub provider_id: Id,
    /// `VSS_VOLUME_SNAPSHOT_ATTRIBUTES`.
    pub attributes: u32,
    /// Context it was made in.
    pub context: u32,
    /// RFC 3339 creation time.
    pub created: String,
    /// Where it is in its life.
    pub state: SnapshotState,
}

impl SnapshotRecord {
    /// Whether it is deleted when its session ends.
    pub fn auto_release(&self) -> bool {
        self.attributes & attr::NO_AUTO_RELEASE == 0
    }
}

/// The catalog database.
#[derive(Debug)]
pub struct Catalog {
    db: Connection,
}

fn db_err(e: rusqlite::Error) -> VssError {
    VssError::unexpected(format!("snapshot catalog: {e}"))
}

impl Catalog {
    /// Opens (creating if needed) `state_dir/catalog.sqlite`.
    pub fn open(state_dir: &Path) -> Result<Catalog, VssError> {
        std::fs::create_dir_all(state_dir).map_err(|e| {
            VssError::unexpected(format!(
                "cannot create state directory {}: {e}",
                state_dir.display()
            ))
        })?;
        let db = Connection::open(state_dir.join("catalog.sqlite")).map_err(db_err)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS snapshots (
                snapshot_id TEXT PRIMARY KEY,
                snapshot_set_id TEXT NOT NULL,
                snapshots_count INTEGER NOT NULL,
                original_volume TEXT NOT NULL,
                snapshot_path TEXT NOT NULL,
                locator TEXT NOT NULL,
                provider_id TEXT NOT NULL,
                attributes INTEGER NOT NULL,
                context INTEGER NOT NULL,
                created TEXT NOT NULL,
                state TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS snapshots_set ON snapshots(snapshot_set_id);",
        )
        .map_err(db_err)?;
        let version: Option<String> = db
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        match version {
            None => {
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    params![SCHEMA_VERSION.to_string()],
                )
                .map_err(db_err)?;
            }
            Some(v) if v == SCHEMA_VERSION.to_string() => {}
            Some(v) => {
                return Err(VssError::unexpected(format!(
                    "the snapshot catalog has schema version {v}, this vssd knows {SCHEMA_VERSION}; \
                     use a vssd at least as new as the one that wrote it"
                )));
            }
        }
        Ok(Catalog { db })
    }

    /// Records a snapshot about to be committed.
    pub fn insert(&self, r: &SnapshotRecord) -> Result<(), VssError> {
        self.db
            .execute(
                "INSERT INTO snapshots (snapshot_id, snapshot_set_id, snapshots_count, original_volume,
                   snapshot_path, locator, provider_id, attributes, context, created, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.snapshot_id.to_string(),
                    r.snapshot_set_id.to_string(),
                    r.snapshots_count,
                    r.original_volume,
                    r.snapshot_path,
                    r.locator,
                    r.provider_id.to_string(),
                    r.attributes,
                    r.context,
                    r.created,
                    r.state.name(),
                ],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Records what the provider committed.
    pub fn mark_committed(
        &self,
        id: Id,
        snapshot_path: &str,
        locator: &str,
    ) -> Result<(), VssError> {
        self.db
            .execute(
                "UPDATE snapshots SET snapshot_path = ?2, locator = ?3, state = ?4 WHERE snapshot_id = ?1",
                params![id.to_string(), snapshot_path, locator, SnapshotState::Committed.name()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Marks every snapshot of a set as created (the set is complete).
    pub fn mark_set_created(&self, set: Id) -> Result<(), VssError> {
        self.db
            .execute(
                "UPDATE snapshots SET state = ?2 WHERE snapshot_set_id = ?1",
                params![set.to_string(), SnapshotState::Created.name()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Forgets a snapshot (after the provider deleted it).
    pub fn remove(&self, id: Id) -> Result<(), VssError> {
        self.db
            .execute(
                "DELETE FROM snapshots WHERE snapshot_id = ?1",
                params![id.to_string()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// One snapshot.
    pub fn get(&self, id: Id) -> Result<Option<SnapshotRecord>, VssError> {
        Ok(self
            .select("WHERE snapshot_id = ?1", &[&id.to_string()])?
            .pop())
    }

    /// Every snapshot, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotRecord>, VssError> {
        self.select("", &[])
    }

    /// The snapshots of one set.
    pub fn set(&self, set: Id) -> Result<Vec<SnapshotRecord>, VssError> {
        self.select("WHERE snapshot_set_id = ?1", &[&set.to_string()])
    }

    /// What a starting vssd must clean up: snapshots that were never completed, and
    /// auto-release snapshots (their sessions died with the previous vssd).
    pub fn recoverable(&self) -> Result<Vec<SnapshotRecord>, VssError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| r.state != SnapshotState::Created || r.auto_release())
            .collect())
    }

    fn select(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<SnapshotRecord>, VssError> {
        let sql = format!(
            "SELECT snapshot_id, snapshot_set_id, snapshots_count, original_volume, snapshot_path,
                    locator, provider_id, attributes, context, created, state
             FROM snapshots {filter} ORDER BY created, rowid"
        );
        let mut stmt = self.db.prepare(&sql).map_err(db_err)?;
        let rows = stmt
            .query_map(args, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, u32>(7)?,
                    r.get::<_, u32>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, String>(10)?,
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, set, count, vol, path, loc, prov, attrs, ctx, created, state) =
                row.map_err(db_err)?;
            let parse = |s: &str| {
                Id::parse_str(s)
                    .map_err(|_| VssError::unexpected(format!("snapshot catalog: bad id '{s}'")))
            };
            out.push(SnapshotRecord {
                snapshot_id: parse(&id)?,
                snapshot_set_id: parse(&set)?,
                snapshots_count: count,
                original_volume: vol,
                snapshot_path: path,
                locator: loc,
                provider_id: parse(&prov)?,
                attributes: attrs,
                context: ctx,
                created,
                state: SnapshotState::from_name(&state).unwrap_or(SnapshotState::Unknown),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(set: Id, attrs: u32, state: SnapshotState) -> SnapshotRecord {
        SnapshotRecord {
            snapshot_id: Id::new_v4(),
            snapshot_set_id: set,
            snapshots_count: 1,
            original_volume: "/mnt/a".into(),
            snapshot_path: String::new(),
            locator: String::new(),
            provider_id: Id::nil(),
            attributes: attrs,
            context: attrs,
            created: crate::timefmt::now_rfc3339(),
            state,
        }
    }

    #[test]
    fn life_cycle_and_recovery_list() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        let set = Id::new_v4();
        let a = rec(set, 0, SnapshotState::Preparing);
        c.insert(&a).unwrap();
        c.mark_committed(a.snapshot_id, "/snap/a", "/snap/a")
            .unwrap();
        let got = c.get(a.snapshot_id).unwrap().unwrap();
        assert_eq!(got.state, SnapshotState::Committed);
        assert_eq!(got.snapshot_path, "/snap/a");
        c.mark_set_created(set).unwrap();
        let persistent = rec(
            Id::new_v4(),
            attr::PERSISTENT | attr::NO_AUTO_RELEASE,
            SnapshotState::Created,
        );
        c.insert(&persistent).unwrap();
        // Reopen: it persisted.
        drop(c);
        let c = Catalog::open(dir.path()).unwrap();
        assert_eq!(c.list().unwrap().len(), 2);
        let rec_ids: Vec<_> = c
            .recoverable()
            .unwrap()
            .iter()
            .map(|r| r.snapshot_id)
            .collect();
        assert_eq!(
            rec_ids,
            vec![a.snapshot_id],
            "auto-release snapshot is recoverable, persistent one is kept"
        );
        c.remove(a.snapshot_id).unwrap();
        assert!(c.get(a.snapshot_id).unwrap().is_none());
        assert_eq!(c.set(persistent.snapshot_set_id).unwrap().len(), 1);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        drop(Catalog::open(dir.path()).unwrap());
        let db = Connection::open(dir.path().join("catalog.sqlite")).unwrap();
        db.execute(
            "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
        drop(db);
        assert!(Catalog::open(dir.path()).is_err());
    }
}
