//! Restoring a cluster from a backup this writer made: what PreRestore checks and what
//! PostRestore puts in place, on the files alone (the hooks in `writer.rs` add the live server).
//!
//! The `cluster` component's backup metadata (JSON written in PostSnapshot, kept in the BCD)
//! says how the backup captured the cluster and where its directories were. The requester
//! says where the files go: alternate location mappings (a directory of the backup restored to
//! another directory), in the restore events' `alternateLocations` (`vss restore` records them
//! before PreRestore). Without a mapping a directory is restored where it was.
//!
//! - PreRestore ([`pre_restore_check`]): refuses when a running server uses a directory the
//!   restore would overwrite (its `postmaster.pid` names a live process, or the writer's own
//!   server reports it), so files are never copied under a live server.
//! - PostRestore ([`post_restore`]), once the requester reports every file restored
//!   (`VSS_RS_ALL`; anything else leaves the files alone): removes the stale `postmaster.pid`;
//!   *atomic* backups need nothing more (the server runs crash recovery); *archive* backups get
//!   `backup_label` and `tablespace_map` from the metadata, `recovery.signal`, and in
//!   `postgresql.auto.conf` the `restore_command` (configured for the writer), `recovery_target
//!   = 'immediate'` and `recovery_target_action = 'promote'`, so the server recovers to the
//!   backup's consistent point and no further; `pg_wal` is emptied (its files came from the
//!   snapshot, the WAL comes from the archive). A cluster restored to another place must not
//!   touch the original's files: symbolic links to the WAL directory and tablespaces follow
//!   the mappings (a link to an unmapped original directory is an error), and the copy gets
//!   `archive_mode = off` so that it never archives into the original's archive.
//!
//! Nothing here starts the server: the administrator does, after looking at what was done.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The comment PostRestore puts before the settings it adds to `postgresql.auto.conf`.
const NOTE: &str = "# vss-writer-postgres PostRestore:";

/// The backup metadata of the `cluster` component (see `post_snapshot` in `writer.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupMeta {
    /// `atomic` or `archive`.
    pub mode: String,
    /// The data directory at backup time.
    pub data_directory: PathBuf,
    /// The WAL directory at backup time (`<data>/pg_wal` or where its link pointed).
    pub wal_directory: PathBuf,
    /// Tablespace locations outside the data directory.
    #[serde(default)]
    pub tablespaces: Vec<PathBuf>,
    /// Archive mode: the backup's label.
    #[serde(default)]
    pub label: Option<String>,
    /// Archive mode: pg_backup_stop's label file, written as `backup_label`.
    #[serde(default)]
    pub label_file: Option<String>,
    /// Archive mode: pg_backup_stop's tablespace map (`tablespace_map`, when not empty).
    #[serde(default)]
    pub tablespace_map: Option<String>,
}

impl BackupMeta {
    /// Parses a component's backup metadata.
    pub fn parse(json: Option<&str>) -> Result<BackupMeta, String> {
        let json = json.ok_or(
            "the backup components document holds no backup metadata for component 'cluster': \
             the backup was not made through this writer (its PostSnapshot records how the \
             cluster was captured), so the writer cannot prepare the restore",
        )?;
        let meta: BackupMeta = serde_json::from_str(json).map_err(|e| {
            format!("the backup metadata of component 'cluster' is not this writer's: {e}")
        })?;
        match meta.mode.as_str() {
            "atomic" => Ok(meta),
            "archive" if meta.label_file.as_deref().is_some_and(|l| !l.is_empty()) => Ok(meta),
            "archive" => Err(
                "the backup metadata says archive mode but holds no label file: the backup did not \
                 finish (pg_backup_stop did not run), so it cannot be restored"
                    .to_owned(),
            ),
            other => Err(format!("unknown backup mode '{other}' in the backup metadata")),
        }
    }

    /// Whether the backup used pg_backup_start/pg_backup_stop.
    pub fn archive(&self) -> bool {
        self.mode == "archive"
    }
}

/// A directory of the backup restored to another directory (an alternate location mapping).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// The directory at backup time.
    pub path: PathBuf,
    /// Whatever lies below `path` too.
    #[serde(default)]
    pub recursive: bool,
    /// Where it was restored.
    pub destination: PathBuf,
}

/// Where the restore puts each directory of the backup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mappings(pub Vec<Location>);

impl Mappings {
    /// The mappings recorded for a component (the event's `alternateLocations`), without
    /// duplicates.
    pub fn new(recorded: Vec<Location>) -> Mappings {
        let mut v: Vec<Location> = Vec::new();
        for l in recorded {
            if !v.contains(&l) {
                v.push(l);
            }
        }
        Mappings(v)
    }

    /// Where `p` of the backup was restored: the destination of the mapping with the longest
    /// path that is `p` or (recursive) above it, else `p` itself.
    pub fn map(&self, p: &Path) -> PathBuf {
        self.0
            .iter()
            .filter_map(|l| {
                let rest = p.strip_prefix(&l.path).ok()?;
                (rest.as_os_str().is_empty() || l.recursive)
                    .then(|| (l.path.components().count(), l.destination.join(rest)))
            })
            .max_by_key(|(n, _)| *n)
            .map_or_else(|| p.to_owned(), |(_, d)| trim(&d))
    }

    /// Whether a mapping moves `p`.
    pub fn moves(&self, p: &Path) -> bool {
        self.map(p) != p
    }
}

/// `p` without a trailing `/.` or `/` (`Path::join("")` adds a separator).
fn trim(p: &Path) -> PathBuf {
    p.components().collect()
}

/// `p` canonicalized when it exists (paths from a mapping may not be canonical).
fn norm(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| trim(p))
}

/// The process a `postmaster.pid` in `data` names, if it runs and the file is that data
/// directory's own (a copy restored from a snapshot names the original directory on its second
/// line, and maybe a live process: the original server).
pub fn live_postmaster(data: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    let dir = lines.next()?.trim();
    if norm(Path::new(dir)) != norm(data) {
        return None;
    }
    let p = rustix::process::Pid::from_raw(pid)?;
    match rustix::process::test_kill_process(p) {
        Ok(()) | Err(rustix::io::Errno::PERM) => Some(pid),
        Err(_) => None,
    }
}

/// Whether `a` and `b` are the same directory or one contains the other.
fn overlap(a: &Path, b: &Path) -> bool {
    let (a, b) = (norm(a), norm(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// The directories of the backup, with where the restore puts them: the data directory, the
/// WAL directory when it lies outside the data directory (atomic mode only: an archive-mode
/// restore takes its WAL from the archive, never from the backup), the tablespaces.
fn targets(meta: &BackupMeta, maps: &Mappings) -> Vec<(PathBuf, PathBuf)> {
    let mut v = vec![meta.data_directory.clone()];
    if !meta.archive() && !meta.wal_directory.starts_with(&meta.data_directory) {
        v.push(meta.wal_directory.clone());
    }
    v.extend(meta.tablespaces.iter().cloned());
    v.into_iter()
        .map(|d| {
            let t = maps.map(&d);
            (d, t)
        })
        .collect()
}

/// PreRestore: an error (to fail the event with) when a running server uses a directory this
/// restore would overwrite. `live` are the directories of the writer's own server when it
/// answers. Returns where the data directory goes.
pub fn pre_restore_check(
    meta: &BackupMeta,
    maps: &Mappings,
    live: Option<&[PathBuf]>,
) -> Result<PathBuf, String> {
    let data_target = maps.map(&meta.data_directory);
    if let Some(pid) = live_postmaster(&data_target) {
        return Err(format!(
            "a PostgreSQL server (pid {pid}) is running on {}, which this restore would overwrite: \
             stop it first, or restore to another place (vss restore --mapping {}=NEWDIR)",
            data_target.display(),
            meta.data_directory.display()
        ));
    }
    for (orig, target) in targets(meta, maps) {
        for d in live.unwrap_or_default() {
            if overlap(&target, d) {
                return Err(format!(
                    "the PostgreSQL server is running and uses {}, which this restore would \
                     overwrite ({} of the backup goes to {}): stop it first, or restore to \
                     another place (vss restore --mapping {}=NEWDIR)",
                    d.display(),
                    orig.display(),
                    target.display(),
                    orig.display()
                ));
            }
        }
    }
    Ok(data_target)
}

/// Whether `a` and `b` name the same directory (canonical when they exist).
pub fn same_dir(a: &Path, b: &Path) -> bool {
    norm(a) == norm(b)
}

/// What PostRestore is to do, decided before anything is changed.
#[derive(Debug, Default)]
struct Plan {
    /// Links to point elsewhere: (link, new target).
    relink: Vec<(PathBuf, PathBuf)>,
    /// `pg_wal` is a link to the original's WAL directory: make it an empty directory.
    fresh_wal: bool,
    /// Directory whose files to remove (the snapshot's WAL, in archive mode).
    clear_wal: Option<PathBuf>,
    /// `tablespace_map` to write (archive mode, not empty).
    tablespace_map: Option<String>,
    /// Lines to append to `postgresql.auto.conf`.
    settings: Vec<String>,
}

/// PostRestore for a component whose files were all restored: puts in place what recovery
/// needs (see the module documentation). `restore_command` is the writer's configured one.
/// Returns what was done, for the log.
pub fn post_restore(
    meta: &BackupMeta,
    maps: &Mappings,
    restore_command: Option<&str>,
) -> Result<Vec<String>, String> {
    let data = maps.map(&meta.data_directory);
    if !data.join("PG_VERSION").is_file() {
        return Err(format!(
            "no PostgreSQL data directory at {} (PG_VERSION is missing): the restore command did \
             not put the data directory there; if it restored it elsewhere, say where with an \
             alternate location mapping (vss restore --mapping {}=DIR)",
            data.display(),
            meta.data_directory.display()
        ));
    }
    if let Some(pid) = live_postmaster(&data) {
        return Err(format!(
            "a PostgreSQL server (pid {pid}) is running on {}: stop it, restore again",
            data.display()
        ));
    }
    let relocated = norm(&data) != norm(&meta.data_directory);
    let mut plan = Plan::default();

    // The WAL directory.
    let pg_wal = data.join("pg_wal");
    let wal_is_link = std::fs::symlink_metadata(&pg_wal).is_ok_and(|m| m.file_type().is_symlink());
    if wal_is_link && relocated {
        if maps.moves(&meta.wal_directory) {
            plan.relink
                .push((pg_wal.clone(), maps.map(&meta.wal_directory)));
        } else if meta.archive() {
            // The WAL comes from the archive; the copy must not write into the original's.
            plan.fresh_wal = true;
        } else {
            return Err(format!(
                "pg_wal in {} links to {}, the original cluster's WAL directory, which this restore \
                 did not move: restore that directory too and map it (--mapping {}=DIR), or the \
                 restored server would write into the original's WAL",
                data.display(),
                meta.wal_directory.display(),
                meta.wal_directory.display()
            ));
        }
    }
    if meta.archive() && !plan.fresh_wal {
        // The WAL files of a file-system backup are not to be replayed (PostgreSQL's backup
        // documentation): recovery reads the archive. That is pg_wal when it is the snapshot's
        // directory, or the restored copy a link now points to; a link left in place points to
        // the cluster's own WAL directory, which is not the snapshot's and stays untouched.
        plan.clear_wal = match (wal_is_link, plan.relink.first()) {
            (false, _) => Some(pg_wal.clone()),
            (true, Some((_, copy))) => Some(copy.clone()),
            (true, None) => None,
        };
    }

    // Tablespaces: archive mode recreates the links from tablespace_map, atomic mode keeps the
    // snapshot's links.
    let unmapped = |p: &Path| {
        format!(
            "tablespace {} would be shared with the original cluster: restore it to another \
             place too and map it (--mapping {}=DIR)",
            p.display(),
            p.display()
        )
    };
    if meta.archive() {
        let map = meta.tablespace_map.as_deref().unwrap_or_default();
        let mut lines = Vec::new();
        for line in map.lines().filter(|l| !l.is_empty()) {
            let (oid, path) = line
                .split_once(' ')
                .ok_or_else(|| format!("tablespace_map line '{line}' is not 'OID PATH'"))?;
            let p = Path::new(path);
            if relocated && !maps.moves(p) {
                return Err(unmapped(p));
            }
            lines.push(format!("{oid} {}", maps.map(p).display()));
        }
        if !lines.is_empty() {
            plan.tablespace_map = Some(lines.join("\n") + "\n");
        }
    } else if relocated && let Ok(rd) = std::fs::read_dir(data.join("pg_tblspc")) {
        for e in rd.flatten() {
            let link = e.path();
            let Ok(t) = std::fs::read_link(&link) else {
                continue;
            };
            if !maps.moves(&t) {
                return Err(unmapped(&t));
            }
            plan.relink.push((link, maps.map(&t)));
        }
    }

    // Recovery settings.
    let note = format!(
        "{NOTE} restored from backup {}",
        meta.label.as_deref().unwrap_or(&meta.mode)
    );
    if meta.archive() {
        match restore_command {
            Some(c) => plan
                .settings
                .push(format!("restore_command = '{}'", c.replace('\'', "''"))),
            None if configured(&data, "restore_command") => {}
            None => {
                return Err(format!(
                    "the backup was made in archive mode, so recovery needs the WAL archive, and \
                     no restore_command is known: set restore_command for this instance in the \
                     writer's configuration ([[postgres]] restore_command = \"cp /archive/%f %p\", \
                     or --restore-command), or in {}/postgresql.auto.conf, and restore again",
                    data.display()
                ));
            }
        }
        plan.settings.push("recovery_target = 'immediate'".into());
        plan.settings
            .push("recovery_target_action = 'promote'".into());
    }
    if relocated {
        // A copy must not archive into the original's archive (a new timeline's history file
        // there would mislead the original's next recovery).
        plan.settings.push("archive_mode = off".into());
    }
    if !plan.settings.is_empty() {
        plan.settings.insert(0, note);
    }
    apply(meta, &data, plan)
}

/// Whether a setting is set (uncommented) in the data directory's configuration files.
fn configured(data: &Path, name: &str) -> bool {
    ["postgresql.conf", "postgresql.auto.conf"].iter().any(|f| {
        std::fs::read_to_string(data.join(f)).is_ok_and(|t| {
            t.lines().any(|l| {
                let l = l.trim_start();
                l.strip_prefix(name)
                    .is_some_and(|r| r.trim_start().starts_with('='))
            })
        })
    })
}

/// The settings PostRestore writes after its [`NOTE`].
const KEYS: [&str; 4] = [
    "restore_command",
    "recovery_target",
    "recovery_target_action",
    "archive_mode",
];

/// `postgresql.auto.conf` without the block an earlier PostRestore added (its [`NOTE`] and the
/// settings right after it), so that a restore run again replaces it instead of adding to it.
fn without_earlier_block(text: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for l in text.lines() {
        if l.starts_with(NOTE) {
            in_block = true;
            continue;
        }
        let key = l.split('=').next().unwrap_or_default().trim();
        if in_block && KEYS.contains(&key) {
            continue;
        }
        in_block = false;
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Carries out `plan` in `data`, giving every new file the data directory's owner.
fn apply(meta: &BackupMeta, data: &Path, plan: Plan) -> Result<Vec<String>, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    let io = |what: String| move |e: std::io::Error| format!("{what}: {e}");
    let owner = std::fs::metadata(data).map_err(io(data.display().to_string()))?;
    let own = |p: &Path| -> Result<(), String> {
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::lchown(p, Some(owner.uid()), Some(owner.gid()))
                .map_err(io(format!("chown {}", p.display())))?;
        }
        Ok(())
    };
    let write = |name: &str, text: &str| -> Result<(), String> {
        let p = data.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)
            .map_err(io(format!("cannot write {}", p.display())))?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(format!("cannot write {}", p.display())))?;
        own(&p)
    };
    let mut done = Vec::new();

    let pid = data.join("postmaster.pid");
    if pid.exists() {
        std::fs::remove_file(&pid).map_err(io(format!("cannot remove {}", pid.display())))?;
        done.push(format!("removed the snapshot's {}", pid.display()));
    }
    let pg_wal = data.join("pg_wal");
    if plan.fresh_wal {
        std::fs::remove_file(&pg_wal).map_err(io(format!("cannot remove {}", pg_wal.display())))?;
        for d in [pg_wal.clone(), pg_wal.join("archive_status")] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&d)
                .map_err(io(format!("cannot create {}", d.display())))?;
            own(&d)?;
        }
        done.push(format!(
            "replaced the link {} (to the original's WAL directory) with an empty directory",
            pg_wal.display()
        ));
    }
    for (link, target) in &plan.relink {
        std::fs::remove_file(link).map_err(io(format!("cannot remove {}", link.display())))?;
        std::os::unix::fs::symlink(target, link)
            .map_err(io(format!("cannot link {}", link.display())))?;
        own(link)?;
        done.push(format!("{} -> {}", link.display(), target.display()));
    }
    if let Some(dir) = &plan.clear_wal {
        let mut n = 0;
        for d in [dir.clone(), dir.join("archive_status")] {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    std::fs::remove_file(e.path())
                        .map_err(io(format!("cannot remove {}", e.path().display())))?;
                    n += 1;
                }
            }
        }
        done.push(format!(
            "removed {n} file(s) of the snapshot's WAL from {} (recovery reads the archive)",
            dir.display()
        ));
    }
    if meta.archive() {
        write(
            "backup_label",
            meta.label_file.as_deref().unwrap_or_default(),
        )?;
        done.push("wrote backup_label".into());
        if let Some(m) = &plan.tablespace_map {
            write("tablespace_map", m)?;
            done.push("wrote tablespace_map".into());
        }
        write("recovery.signal", "")?;
        done.push("created recovery.signal".into());
    }
    if !plan.settings.is_empty() {
        let p = data.join("postgresql.auto.conf");
        let mut text = without_earlier_block(&std::fs::read_to_string(&p).unwrap_or_default());
        for s in &plan.settings {
            text.push_str(s);
            text.push('\n');
        }
        write("postgresql.auto.conf", &text)?;
        done.push(format!(
            "set in postgresql.auto.conf: {}",
            plan.settings[1..].join(", ")
        ));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(path: &str, dest: &str) -> Location {
        Location {
            path: path.into(),
            recursive: true,
            destination: dest.into(),
        }
    }

    #[test]
    fn mappings_take_the_longest_match() {
        let m = Mappings(vec![
            loc("/srv/pg", "/new"),
            loc("/srv/pg/ts", "/elsewhere"),
        ]);
        assert_eq!(m.map(Path::new("/srv/pg/data")), Path::new("/new/data"));
        assert_eq!(m.map(Path::new("/srv/pg")), Path::new("/new"));
        assert_eq!(m.map(Path::new("/srv/pg/ts/a")), Path::new("/elsewhere/a"));
        assert_eq!(m.map(Path::new("/srv/pgx")), Path::new("/srv/pgx"));
        assert!(!m.moves(Path::new("/other")));
        let flat = Mappings(vec![Location {
            recursive: false,
            ..loc("/a", "/b")
        }]);
        assert_eq!(flat.map(Path::new("/a")), Path::new("/b"));
        assert_eq!(flat.map(Path::new("/a/c")), Path::new("/a/c"));
    }

    #[test]
    fn recorded_mappings_are_kept_once() {
        let m = Mappings::new(vec![loc("/a", "/b"), loc("/c", "/d"), loc("/a", "/b")]);
        assert_eq!(m.0, vec![loc("/a", "/b"), loc("/c", "/d")]);
    }

    fn meta(mode: &str, data: &Path) -> BackupMeta {
        BackupMeta {
            mode: mode.into(),
            data_directory: data.to_owned(),
            wal_directory: data.join("pg_wal"),
            tablespaces: vec![],
            label: Some("vss-x".into()),
            label_file: Some("START WAL LOCATION: 0/2000028\n".into()),
            tablespace_map: Some(String::new()),
        }
    }

    /// A fake data directory: PG_VERSION, a postmaster.pid naming `pid_dir`, pg_wal with a
    /// segment, postgresql.auto.conf.
    fn datadir(root: &Path, name: &str, pid_dir: &Path) -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir_all(d.join("pg_wal/archive_status")).unwrap();
        std::fs::write(d.join("PG_VERSION"), "15\n").unwrap();
        std::fs::write(
            d.join("postmaster.pid"),
            format!("{}\n{}\n", std::process::id(), pid_dir.display()),
        )
        .unwrap();
        std::fs::write(d.join("pg_wal/000000010000000000000002"), "wal").unwrap();
        std::fs::write(
            d.join("pg_wal/archive_status/000000010000000000000002.ready"),
            "",
        )
        .unwrap();
        std::fs::write(d.join("postgresql.auto.conf"), "# auto\n").unwrap();
        d
    }

    #[test]
    fn an_earlier_block_is_replaced() {
        let text = format!(
            "# auto\nwork_mem = '4MB'\n{NOTE} x\nrestore_command = 'cp /old/%f %p'\n\
             recovery_target = 'immediate'\nshared_buffers = '1GB'\nrestore_command = 'mine'\n"
        );
        assert_eq!(
            without_earlier_block(&text),
            "# auto\nwork_mem = '4MB'\nshared_buffers = '1GB'\nrestore_command = 'mine'\n",
            "the block goes; the administrator's own lines stay"
        );
    }

    #[test]
    fn metadata_must_be_this_writers() {
        assert!(
            BackupMeta::parse(None)
                .unwrap_err()
                .contains("no backup metadata")
        );
        assert!(BackupMeta::parse(Some("meta-cluster")).is_err());
        let unfinished =
            r#"{"mode":"archive","dataDirectory":"/d","walDirectory":"/d/pg_wal","labelFile":""}"#;
        assert!(
            BackupMeta::parse(Some(unfinished))
                .unwrap_err()
                .contains("label file")
        );
        let atomic = r#"{"mode":"atomic","volume":"/v","dataDirectory":"/d","walDirectory":"/d/pg_wal","tablespaces":[]}"#;
        assert!(!BackupMeta::parse(Some(atomic)).unwrap().archive());
    }

    #[test]
    fn a_live_server_on_the_target_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let orig = t.path().join("orig");
        // Our own pid stands for the live server; the file names this directory.
        let d = datadir(t.path(), "orig", &orig);
        let m = meta("archive", &d);
        let e = pre_restore_check(&m, &Mappings::default(), None).unwrap_err();
        assert!(e.contains("is running on"), "{e}");
        // The writer's own server uses the directory: refused too.
        std::fs::remove_file(d.join("postmaster.pid")).unwrap();
        let live = [d.clone()];
        let e = pre_restore_check(&m, &Mappings::default(), Some(&live)).unwrap_err();
        assert!(e.contains("--mapping"), "{e}");
        // Elsewhere: fine.
        let maps = Mappings(vec![loc(d.to_str().unwrap(), "/nonexistent-vss/new")]);
        assert_eq!(
            pre_restore_check(&m, &maps, Some(&live)),
            Ok(PathBuf::from("/nonexistent-vss/new"))
        );
        // In place with the server stopped: fine.
        assert_eq!(
            pre_restore_check(&m, &Mappings::default(), None),
            Ok(d.clone())
        );
        // Archive mode never restores the WAL directory: a live one elsewhere is no conflict.
        let mut m2 = m.clone();
        m2.wal_directory = t.path().join("live-wal");
        let live = [t.path().join("live-data"), t.path().join("live-wal")];
        assert!(pre_restore_check(&m2, &maps, Some(&live)).is_ok());
        m2.mode = "atomic".into();
        let e = pre_restore_check(&m2, &maps, Some(&live)).unwrap_err();
        assert!(e.contains("live-wal"), "atomic mode restores it: {e}");
        // A copy whose postmaster.pid names another directory is not a live server.
        let copy = datadir(t.path(), "copy", &orig);
        assert_eq!(live_postmaster(&copy), None);
        assert_eq!(live_postmaster(&d), None);
    }

    #[test]
    fn archive_restore_elsewhere_puts_recovery_in_place() {
        let t = tempfile::tempdir().unwrap();
        let orig = t.path().join("orig");
        let wal = t.path().join("walvol");
        std::fs::create_dir_all(&wal).unwrap();
        let new = datadir(t.path(), "new", &orig);
        // The snapshot's pg_wal was a link to the WAL volume.
        std::fs::remove_dir_all(new.join("pg_wal")).unwrap();
        std::os::unix::fs::symlink(&wal, new.join("pg_wal")).unwrap();
        let mut m = meta("archive", &orig);
        m.wal_directory = wal.clone();
        let maps = Mappings(vec![loc(orig.to_str().unwrap(), new.to_str().unwrap())]);
        // No restore_command anywhere: refused before anything changes.
        let e = post_restore(&m, &maps, None).unwrap_err();
        assert!(e.contains("restore_command"), "{e}");
        assert!(new.join("postmaster.pid").exists(), "nothing changed");

        let done = post_restore(&m, &maps, Some("cp '/a'/%f %p")).unwrap();
        assert!(!new.join("postmaster.pid").exists(), "{done:?}");
        assert_eq!(
            std::fs::read_to_string(new.join("backup_label")).unwrap(),
            "START WAL LOCATION: 0/2000028\n"
        );
        assert!(
            !new.join("tablespace_map").exists(),
            "empty map not written"
        );
        assert!(new.join("recovery.signal").exists());
        let pg_wal = std::fs::symlink_metadata(new.join("pg_wal")).unwrap();
        assert!(
            pg_wal.is_dir(),
            "an empty directory, not the original's WAL"
        );
        assert!(new.join("pg_wal/archive_status").is_dir());
        let auto = std::fs::read_to_string(new.join("postgresql.auto.conf")).unwrap();
        assert!(
            auto.starts_with("# auto\n# vss-writer-postgres PostRestore"),
            "{auto}"
        );
        for want in [
            "restore_command = 'cp ''/a''/%f %p'",
            "recovery_target = 'immediate'",
            "recovery_target_action = 'promote'",
            "archive_mode = off",
        ] {
            assert!(auto.lines().any(|l| l == want), "{want} not in {auto}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(new.join("backup_label"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn archive_restore_in_place_clears_the_snapshots_wal() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("data");
        let d = datadir(t.path(), "data", &d);
        // Stale: its process is gone.
        std::fs::write(
            d.join("postmaster.pid"),
            format!("999999999\n{}\n", d.display()),
        )
        .unwrap();
        std::fs::write(
            d.join("postgresql.conf"),
            "restore_command = 'cp /x/%f %p'\n",
        )
        .unwrap();
        let mut m = meta("archive", &d);
        m.tablespace_map = Some("16384 /srv/ts\n".into());
        let done = post_restore(&m, &Mappings::default(), None).unwrap();
        assert!(
            !d.join("pg_wal/000000010000000000000002").exists(),
            "{done:?}"
        );
        assert!(
            !d.join("pg_wal/archive_status/000000010000000000000002.ready")
                .exists()
        );
        assert_eq!(
            std::fs::read_to_string(d.join("tablespace_map")).unwrap(),
            "16384 /srv/ts\n"
        );
        let auto = std::fs::read_to_string(d.join("postgresql.auto.conf")).unwrap();
        assert!(
            !auto.contains("restore_command"),
            "the configured one is kept: {auto}"
        );
        assert!(
            !auto.contains("archive_mode"),
            "in place: archiving as configured: {auto}"
        );

        // In place, pg_wal a link to the cluster's WAL directory: not the snapshot's, kept.
        let wal = t.path().join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::write(wal.join("000000010000000000000009"), "live").unwrap();
        std::fs::remove_dir_all(d.join("pg_wal")).unwrap();
        std::os::unix::fs::symlink(&wal, d.join("pg_wal")).unwrap();
        m.wal_directory = wal.clone();
        post_restore(&m, &Mappings::default(), None).unwrap();
        assert!(wal.join("000000010000000000000009").exists());
        let again = std::fs::read_to_string(d.join("postgresql.auto.conf")).unwrap();
        assert_eq!(again, auto, "a second PostRestore adds nothing twice");
        assert_eq!(std::fs::read_link(d.join("pg_wal")).unwrap(), wal);
    }

    #[test]
    fn a_copy_must_not_share_the_originals_directories() {
        let t = tempfile::tempdir().unwrap();
        let orig = t.path().join("orig");
        let ts = t.path().join("ts");
        std::fs::create_dir_all(&ts).unwrap();
        let new = datadir(t.path(), "new", &orig);
        std::fs::create_dir_all(new.join("pg_tblspc")).unwrap();
        std::os::unix::fs::symlink(&ts, new.join("pg_tblspc/16384")).unwrap();
        let m = meta("atomic", &orig);
        let maps = Mappings(vec![loc(orig.to_str().unwrap(), new.to_str().unwrap())]);
        let e = post_restore(&m, &maps, None).unwrap_err();
        assert!(e.contains("would be shared"), "{e}");
        // Mapped too: the link follows.
        let ts_new = t.path().join("ts-new");
        let mut maps = maps;
        maps.0
            .push(loc(ts.to_str().unwrap(), ts_new.to_str().unwrap()));
        let done = post_restore(&m, &maps, None).unwrap();
        assert_eq!(
            std::fs::read_link(new.join("pg_tblspc/16384")).unwrap(),
            ts_new,
            "{done:?}"
        );
        assert!(!new.join("backup_label").exists(), "atomic: crash recovery");
        assert!(
            new.join("pg_wal/000000010000000000000002").exists(),
            "atomic: the snapshot's WAL is the recovery"
        );
        let auto = std::fs::read_to_string(new.join("postgresql.auto.conf")).unwrap();
        assert!(auto.lines().any(|l| l == "archive_mode = off"), "{auto}");
        // Atomic, the WAL on a link to an unmapped original directory: refused.
        let wal = t.path().join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        let new2 = datadir(t.path(), "new2", &orig);
        std::fs::remove_dir_all(new2.join("pg_wal")).unwrap();
        std::os::unix::fs::symlink(&wal, new2.join("pg_wal")).unwrap();
        let mut m = meta("atomic", &orig);
        m.wal_directory = wal.clone();
        let maps = Mappings(vec![loc(orig.to_str().unwrap(), new2.to_str().unwrap())]);
        let e = post_restore(&m, &maps, None).unwrap_err();
        assert!(e.contains("original cluster's WAL"), "{e}");
        // Nothing restored there at all.
        let maps = Mappings(vec![loc(orig.to_str().unwrap(), "/nonexistent-vss/x")]);
        assert!(
            post_restore(&m, &maps, None)
                .unwrap_err()
                .contains("PG_VERSION")
        );
    }
}
