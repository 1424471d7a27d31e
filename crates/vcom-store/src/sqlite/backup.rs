//! Online backups and offline restores of the database file.
//!
//! A backup is `VACUUM INTO` on a reader connection: one read transaction copies a
//! consistent snapshot of the whole database into a new file while the writer goes on
//! committing (in WAL mode readers and the writer never wait for each other). SQLite's
//! page-by-page backup API would restart its copy after every commit of another
//! connection, and so never finish under a steady stream of messages. The copy is
//! written beside the target under a temporary name, checked (`PRAGMA quick_check`),
//! made private (0600) and only then renamed into place: a backup file that exists is
//! whole.
//!
//! A restore replaces the database of a stopped server with a backup: the backup is
//! checked first (a vCom database this program can read, `quick_check` clean), and the
//! database it replaces is kept beside it, renamed, never deleted.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::{StoreError, StoreResult};

/// What a backup or restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The file written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The schema version it holds.
    pub schema_version: usize,
    /// How many users it holds.
    pub users: u64,
    /// Where the replaced database was moved (restores only; `None` when there was
    /// none).
    pub previous: Option<PathBuf>,
}

fn io(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Backup(format!("{what} {}: {e}", path.display()))
}

/// Writes a consistent copy of the database at `from` to `to`, which must not exist.
///
/// Its own connection: `VACUUM INTO` writes the copy through the connection, so a
/// read-only reader cannot run it, and on the writer it would hold up every commit.
pub(crate) fn backup(
    from: &Path,
    busy_timeout: std::time::Duration,
    to: &Path,
) -> StoreResult<BackupReport> {
    let conn = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    if to.exists() {
        return Err(StoreError::Backup(format!(
            "{} exists: a backup never overwrites a file",
            to.display()
        )));
    }
    let staging = staging_path(to);
    let _ = std::fs::remove_file(&staging);
    let copied = conn
        .execute("VACUUM INTO ?1", [staging.to_string_lossy().as_ref()])
        .map_err(StoreError::from)
        .and_then(|_| check(&staging))
        .and_then(|report| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io(&staging, "cannot make private", e))?;
            // `rename` would replace a file created meanwhile; `hard_link` refuses.
            std::fs::hard_link(&staging, to).map_err(|e| io(to, "cannot create", e))?;
            Ok(report)
        });
    let _ = std::fs::remove_file(&staging);
    let mut report = copied?;
    report.path = to.to_owned();
    Ok(report)
}

/// Replaces the database at `db` (of a stopped server) with the backup `from`, after
/// checking it; the replaced database and its journals are moved beside it.
pub fn restore(from: &Path, db: &Path) -> StoreResult<BackupReport> {
    let mut report = check(from)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let previous = db.with_extension(format!("sqlite3.before-restore-{stamp}"));
    let had_one = db.exists();
    if had_one {
        std::fs::rename(db, &previous).map_err(|e| io(db, "cannot move aside", e))?;
    }
    for journal in ["sqlite3-wal", "sqlite3-shm"] {
        let file = db.with_extension(journal);
        if file.exists() {
            let aside = previous.with_extension(format!("{}-{journal}", stamp));
            std::fs::rename(&file, &aside).map_err(|e| io(&file, "cannot move aside", e))?;
        }
    }
    let staging = staging_path(db);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staging)
            .map_err(|e| io(&staging, "cannot create", e))?;
        let mut input = std::fs::File::open(from).map_err(|e| io(from, "cannot read", e))?;
        std::io::copy(&mut input, &mut out).map_err(|e| io(&staging, "cannot write", e))?;
        out.sync_all()
            .map_err(|e| io(&staging, "cannot write", e))?;
    }
    std::fs::rename(&staging, db).map_err(|e| io(db, "cannot create", e))?;
    report.path = db.to_owned();
    report.previous = had_one.then_some(previous);
    Ok(report)
}

/// Checks that `path` is a whole vCom database this program can open.
pub fn check(path: &Path) -> StoreResult<BackupReport> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Backup(format!("cannot open {}: {e}", path.display())))?;
    let verdict: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| StoreError::Backup(format!("{} is not a database: {e}", path.display())))?;
    if verdict != "ok" {
        return Err(StoreError::Backup(format!(
            "{} is damaged: {verdict}",
            path.display()
        )));
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let schema_version = usize::try_from(version).unwrap_or(0);
    if schema_version == 0 {
        return Err(StoreError::Backup(format!(
            "{} is not a vCom database (no schema version)",
            path.display()
        )));
    }
    if schema_version > super::schema::SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: schema_version,
            supported: super::schema::SCHEMA_VERSION,
        });
    }
    let users: i64 = conn
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .map_err(|e| {
            StoreError::Backup(format!("{} is not a vCom database: {e}", path.display()))
        })?;
    let bytes = std::fs::metadata(path)
        .map_err(|e| io(path, "cannot read", e))?
        .len();
    Ok(BackupReport {
        path: path.to_owned(),
        bytes,
        schema_version,
        users: u64::try_from(users).unwrap_or(0),
        previous: None,
    })
}

/// A name beside `path` for a file being written.
fn staging_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}
