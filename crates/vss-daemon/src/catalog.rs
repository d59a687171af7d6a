//! The snapshot catalog: every snapshot vssd made and has not deleted, in SQLite (bundled) under
//! the state directory.
//!
//! **Architecture Invariant (crash rules):** a row is written before the provider commits (state
//! `VSS_SS_PREPARING`), updated after the commit with the provider's locator
//! (`VSS_SS_COMMITTED`), and marked `VSS_SS_CREATED` with the set's consistency record when the
//! set is complete; each step is one transaction. None of these writes happens while a
//! filesystem of the set is frozen (they come before the first FIFREEZE and after the last
//! FITHAW). A crash at any point leaves rows a restart acts on: [`Catalog::recoverable`] lists
//! what the startup reconciliation must delete (never completed, or auto-release). The state
//! directory must never be on a filesystem vssd freezes (vssd refuses such volumes).
//!
//! Schema version 2 added atomicity, exposure and the consistency record; a version-1 catalog is
//! migrated in place.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use vss_model::{ErrorCode, Id, SnapshotState, VssError, attr};

/// The catalog's format version, kept in `meta`.
const SCHEMA_VERSION: i64 = 2;

/// How consistent a snapshot is, and why (the consistency record).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consistency {
    /// `application-consistent` (every participating writer froze and thawed),
    /// `filesystem-consistent` (the filesystems were frozen, but not every writer took part),
    /// `crash-consistent` (neither).
    pub level: String,
    /// Writers that froze and thawed successfully.
    pub writers_frozen: Vec<String>,
    /// Writers that took part but failed (with their failure).
    pub writers_failed: Vec<String>,
    /// Writers of the session that did not take part in the freeze.
    pub writers_skipped: Vec<String>,
    /// Microseconds between the end of the first and the end of the last commit of the set.
    pub commit_skew_us: u64,
    /// Whether the set's filesystems were frozen (FIFREEZE) for the commit.
    pub filesystem_frozen: bool,
}

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
    /// Where it is readable (or its image/device).
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
    /// The provider's atomicity (`per-subvolume`, `per-file`, `across-set`).
    pub atomicity: String,
    /// Where it is exposed, if it is.
    pub exposed_name: Option<String>,
    /// Provider detail needed to unexpose (e.g. a loop device).
    pub exposure_detail: Option<String>,
    /// The consistency record (set when the set completes).
    pub consistency: Option<Consistency>,
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
    // A full state directory is the administrator's to fix, and says so; anything else about
    // the catalog is unexpected.
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return VssError::new(
            ErrorCode::InsufficientStorage,
            format!(
                "snapshot catalog: the state directory's filesystem is full ({e}); free space \
                 there (vssd --state-dir, default /var/lib/vss) and retry"
            ),
        );
    }
    VssError::unexpected(format!("snapshot catalog: {e}"))
}

const COLUMNS: &str =
    "snapshot_id, snapshot_set_id, snapshots_count, original_volume, snapshot_path,
    locator, provider_id, attributes, context, created, state, atomicity, exposed_name,
    exposure_detail, consistency";

impl Catalog {
    /// Opens (creating or migrating if needed) `state_dir/catalog.sqlite`.
    pub fn open(state_dir: &Path) -> Result<Catalog, VssError> {
        std::fs::create_dir_all(state_dir).map_err(|e| {
            VssError::unexpected(format!(
                "cannot create state directory {}: {e}",
                state_dir.display()
            ))
        })?;
        let mut db = Connection::open(state_dir.join("catalog.sqlite")).map_err(db_err)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
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
        let tx = db.transaction().map_err(db_err)?;
        match version.as_deref() {
            None => {
                tx.execute_batch(
                    "CREATE TABLE snapshots (
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
                        state TEXT NOT NULL,
                        atomicity TEXT NOT NULL DEFAULT '',
                        exposed_name TEXT,
                        exposure_detail TEXT,
                        consistency TEXT
                     );
                     CREATE INDEX snapshots_set ON snapshots(snapshot_set_id);
                     CREATE INDEX snapshots_volume ON snapshots(original_volume);",
                )
                .map_err(db_err)?;
            }
            Some("1") => {
                // Version 1 had no atomicity, exposure or consistency record.
                tx.execute_batch(
                    "ALTER TABLE snapshots ADD COLUMN atomicity TEXT NOT NULL DEFAULT '';
                     ALTER TABLE snapshots ADD COLUMN exposed_name TEXT;
                     ALTER TABLE snapshots ADD COLUMN exposure_detail TEXT;
                     ALTER TABLE snapshots ADD COLUMN consistency TEXT;
                     CREATE INDEX IF NOT EXISTS snapshots_volume ON snapshots(original_volume);",
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
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
            params![SCHEMA_VERSION.to_string()],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(Catalog { db })
    }

    /// Records the snapshots of a set about to be committed, in one transaction.
    pub fn insert_all(&mut self, records: &[SnapshotRecord]) -> Result<(), VssError> {
        let tx = self.db.transaction().map_err(db_err)?;
        for r in records {
            tx.execute(
                &format!("INSERT INTO snapshots ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
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
                    r.atomicity,
                    r.exposed_name,
                    r.exposure_detail,
                    r.consistency.as_ref().map(|c| serde_json::to_string(c).unwrap_or_default()),
                ],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Records one snapshot about to be committed.
    pub fn insert(&mut self, r: &SnapshotRecord) -> Result<(), VssError> {
        self.insert_all(std::slice::from_ref(r))
    }

    /// Records what the providers committed: `(id, path, locator)` per snapshot, in one
    /// transaction.
    pub fn mark_committed(&mut self, committed: &[(Id, String, String)]) -> Result<(), VssError> {
        let tx = self.db.transaction().map_err(db_err)?;
        for (id, path, locator) in committed {
            tx.execute(
                "UPDATE snapshots SET snapshot_path = ?2, locator = ?3, state = ?4 WHERE snapshot_id = ?1",
                params![id.to_string(), path, locator, SnapshotState::Committed.name()],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Marks every snapshot of a set as created, with its consistency record.
    pub fn mark_set_created(&mut self, set: Id, consistency: &Consistency) -> Result<(), VssError> {
        let json =
            serde_json::to_string(consistency).map_err(|e| VssError::unexpected(e.to_string()))?;
        self.db
            .execute(
                "UPDATE snapshots SET state = ?2, consistency = ?3 WHERE snapshot_set_id = ?1",
                params![set.to_string(), SnapshotState::Created.name(), json],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Records (or clears, with `None`) where a snapshot is exposed.
    pub fn set_exposure(
        &mut self,
        id: Id,
        exposure: Option<(&str, Option<&str>)>,
    ) -> Result<(), VssError> {
        let (name, detail) = exposure.map_or((None, None), |(n, d)| (Some(n), d));
        self.db
            .execute(
                "UPDATE snapshots SET exposed_name = ?2, exposure_detail = ?3 WHERE snapshot_id = ?1",
                params![id.to_string(), name, detail],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Forgets a snapshot (after the provider deleted it).
    pub fn remove(&mut self, id: Id) -> Result<(), VssError> {
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

    /// The snapshots of one original volume, oldest first.
    pub fn of_volume(&self, volume: &str) -> Result<Vec<SnapshotRecord>, VssError> {
        self.select("WHERE original_volume = ?1", &[&volume])
    }

    /// How many snapshots an original volume has (any state).
    pub fn count_of_volume(&self, volume: &str) -> Result<usize, VssError> {
        self.db
            .query_row(
                "SELECT COUNT(*) FROM snapshots WHERE original_volume = ?1",
                params![volume],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(db_err)
    }

    /// The snapshot exposed at `path`, if any.
    pub fn exposed_at(&self, path: &str) -> Result<Option<SnapshotRecord>, VssError> {
        Ok(self.select("WHERE exposed_name = ?1", &[&path])?.pop())
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
        let sql = format!("SELECT {COLUMNS} FROM snapshots {filter} ORDER BY created, rowid");
        let mut stmt = self.db.prepare(&sql).map_err(db_err)?;
        let rows = stmt
            .query_map(args, |r| {
                Ok((
                    (
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, u32>(7)?,
                    ),
                    (
                        r.get::<_, u32>(8)?,
                        r.get::<_, String>(9)?,
                        r.get::<_, String>(10)?,
                        r.get::<_, String>(11)?,
                        r.get::<_, Option<String>>(12)?,
                        r.get::<_, Option<String>>(13)?,
                        r.get::<_, Option<String>>(14)?,
                    ),
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (
                (id, set, count, vol, path, loc, prov, attrs),
                (ctx, created, state, atomicity, exposed, detail, cons),
            ) = row.map_err(db_err)?;
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
                atomicity,
                exposed_name: exposed,
                exposure_detail: detail,
                consistency: cons.and_then(|c| serde_json::from_str(&c).ok()),
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
            atomicity: "per-subvolume".into(),
            exposed_name: None,
            exposure_detail: None,
            consistency: None,
        }
    }

    #[test]
    fn life_cycle_and_recovery_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(dir.path()).unwrap();
        let set = Id::new_v4();
        let a = rec(set, 0, SnapshotState::Preparing);
        c.insert(&a).unwrap();
        c.mark_committed(&[(a.snapshot_id, "/snap/a".into(), "/snap/a".into())])
            .unwrap();
        let got = c.get(a.snapshot_id).unwrap().unwrap();
        assert_eq!(got.state, SnapshotState::Committed);
        assert_eq!(got.snapshot_path, "/snap/a");
        let cons = Consistency {
            level: "application-consistent".into(),
            writers_frozen: vec!["w".into()],
            commit_skew_us: 12,
            ..Default::default()
        };
        c.mark_set_created(set, &cons).unwrap();
        assert_eq!(
            c.get(a.snapshot_id).unwrap().unwrap().consistency,
            Some(cons)
        );
        let persistent = rec(
            Id::new_v4(),
            attr::PERSISTENT | attr::NO_AUTO_RELEASE,
            SnapshotState::Created,
        );
        c.insert(&persistent).unwrap();
        c.set_exposure(persistent.snapshot_id, Some(("/mnt/x", Some("/dev/loop9"))))
            .unwrap();
        assert_eq!(
            c.exposed_at("/mnt/x").unwrap().unwrap().snapshot_id,
            persistent.snapshot_id
        );
        // Reopen: it persisted.
        drop(c);
        let mut c = Catalog::open(dir.path()).unwrap();
        assert_eq!(c.list().unwrap().len(), 2);
        assert_eq!(c.count_of_volume("/mnt/a").unwrap(), 2);
        assert_eq!(
            c.of_volume("/mnt/a").unwrap()[0].snapshot_id,
            a.snapshot_id,
            "oldest first"
        );
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
        c.set_exposure(persistent.snapshot_id, None).unwrap();
        assert!(c.exposed_at("/mnt/x").unwrap().is_none());
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

    #[test]
    fn migrates_a_version_1_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join("catalog.sqlite")).unwrap();
        db.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema_version', '1');
             CREATE TABLE snapshots (snapshot_id TEXT PRIMARY KEY, snapshot_set_id TEXT NOT NULL,
                snapshots_count INTEGER NOT NULL, original_volume TEXT NOT NULL,
                snapshot_path TEXT NOT NULL, locator TEXT NOT NULL, provider_id TEXT NOT NULL,
                attributes INTEGER NOT NULL, context INTEGER NOT NULL, created TEXT NOT NULL,
                state TEXT NOT NULL);
             INSERT INTO snapshots VALUES ('6ba7b810-9dad-11d1-80b4-00c04fd430c8',
                '6ba7b811-9dad-11d1-80b4-00c04fd430c8', 1, '/mnt/a', '/s', '/s',
                '00000000-0000-0000-0000-000000000000', 9, 9, '2026-01-01T00:00:00Z', 'VSS_SS_CREATED');",
        )
        .unwrap();
        drop(db);
        let c = Catalog::open(dir.path()).unwrap();
        let all = c.list().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].original_volume, "/mnt/a");
        assert_eq!(all[0].exposed_name, None);
        assert_eq!(all[0].atomicity, "");
        drop(c);
        Catalog::open(dir.path()).unwrap();
    }
}
