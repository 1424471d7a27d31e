//! The database schema, its versioned migrations, and how every connection is set up.
//!
//! Migrations only ever append: a released migration is never edited, so a file written
//! by any earlier version upgrades in place. A file from a *newer* version is refused
//! before anything touches it.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};

use super::config::Synchronous;
use crate::{StoreError, StoreResult};

/// Version 1: every table of the first release.
///
/// Index reasons (each index costs every insert, so each must earn its place):
/// - `devices_by_user`: `devices(user)` lists a user's devices at every login.
/// - `list_entries_by_entry`: `is_blocked(owner, other)` runs for every message relayed;
///   without it the lookup scans the owner's whole block list.
/// - `messages_by_received_at`: retention by age deletes the oldest messages; without
///   it every prune scans the whole message table.
/// - `message_recipients_by_message`: the `ON DELETE CASCADE` from `messages` and
///   retention's "is anyone still waiting for this message?" probe look rows up by
///   message; the primary key is ordered by user, so they would scan the table. It
///   carries `delivered` so the probe is answered from the index alone.
/// - `transfers_by_transfer_id`: `max_transfer_id` at startup, in O(log n) however long
///   the transfer log grows.
///
/// Primary keys double as indexes: `message_recipients (user, message_id)` is exactly
/// the range `pending` scans; `deliveries (message_id, device_id)` answers both
/// "has this device got it?" and the cascade from `messages`; `group_members
/// (group_id, user)` returns members already ordered by identifier.
const V1: &str = r#"
CREATE TABLE users (
    id         TEXT PRIMARY KEY NOT NULL,
    key_sha256 BLOB CHECK (key_sha256 IS NULL OR length(key_sha256) = 32),
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- AUTOINCREMENT: identifiers are never reused, even after the highest row is gone.
CREATE TABLE devices (
    id         INTEGER PRIMARY KEY AUTOINCREMENT CHECK (id BETWEEN 1 AND 2147483647),
    user       TEXT NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    -- The highest message id ever assigned when the device was issued: older messages
    -- reach it only while no device of its user has received them.
    watermark  INTEGER NOT NULL
);
CREATE INDEX devices_by_user ON devices (user);

CREATE TABLE user_lists (
    owner      TEXT NOT NULL REFERENCES users (id),
    kind       INTEGER NOT NULL CHECK (kind IN (0, 1)),
    changed_at INTEGER NOT NULL,
    PRIMARY KEY (owner, kind)
) WITHOUT ROWID;

CREATE TABLE list_entries (
    owner    TEXT NOT NULL,
    kind     INTEGER NOT NULL,
    position INTEGER NOT NULL,
    entry    TEXT NOT NULL,
    PRIMARY KEY (owner, kind, position),
    FOREIGN KEY (owner, kind) REFERENCES user_lists (owner, kind) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX list_entries_by_entry ON list_entries (owner, kind, entry);

CREATE TABLE chat_groups (
    id         INTEGER PRIMARY KEY AUTOINCREMENT CHECK (id BETWEEN 1 AND 2147483647),
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Members are not tied to `users`: an administrator may add someone who has never
-- logged in, and that user's group messages wait for the first login.
CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    user     TEXT NOT NULL,
    PRIMARY KEY (group_id, user)
) WITHOUT ROWID;

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    sender        TEXT NOT NULL,
    origin_device INTEGER NOT NULL,
    group_id      INTEGER,
    sent_at       INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    is_text       INTEGER NOT NULL CHECK (is_text IN (0, 1)),
    data          BLOB NOT NULL
);
CREATE INDEX messages_by_received_at ON messages (received_at);

-- One row per (recipient user, message). `delivered` = some device of that user has it.
CREATE TABLE message_recipients (
    user       TEXT NOT NULL,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    delivered  INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1)),
    PRIMARY KEY (user, message_id)
) WITHOUT ROWID;
CREATE INDEX message_recipients_by_message ON message_recipients (message_id, delivered);

-- One row per (message, device) that received it.
CREATE TABLE deliveries (
    message_id   INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    device_id    INTEGER NOT NULL REFERENCES devices (id),
    delivered_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, device_id)
) WITHOUT ROWID;

-- How many `message_recipients` rows of each user are still waiting. Kept by triggers
-- so no code path can forget it; the pending cap and `stats` read it in O(1).
CREATE TABLE pending_counts (
    user    TEXT PRIMARY KEY NOT NULL,
    pending INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER pending_counts_on_insert AFTER INSERT ON message_recipients
WHEN NEW.delivered = 0
BEGIN
    INSERT INTO pending_counts (user, pending) VALUES (NEW.user, 1)
        ON CONFLICT (user) DO UPDATE SET pending = pending + 1;
END;

CREATE TRIGGER pending_counts_on_delivered AFTER UPDATE OF delivered ON message_recipients
WHEN OLD.delivered = 0 AND NEW.delivered <> 0
BEGIN
    UPDATE pending_counts SET pending = pending - 1 WHERE user = NEW.user;
END;

CREATE TRIGGER pending_counts_on_delete AFTER DELETE ON message_recipients
WHEN OLD.delivered = 0
BEGIN
    UPDATE pending_counts SET pending = pending - 1 WHERE user = OLD.user;
END;

-- list: 0 blacklist, 1 whitelist; kind: 0 user, 1 ip.
CREATE TABLE policy (
    list  INTEGER NOT NULL CHECK (list IN (0, 1)),
    kind  INTEGER NOT NULL CHECK (kind IN (0, 1)),
    value TEXT NOT NULL,
    PRIMARY KEY (list, kind, value)
) WITHOUT ROWID;

-- `seq` is the log order; `transfer_id` is the server's identifier.
CREATE TABLE transfers (
    seq           INTEGER PRIMARY KEY,
    transfer_id   INTEGER NOT NULL,
    sender        TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    size          INTEGER NOT NULL,
    name          TEXT NOT NULL,
    bytes_relayed INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER NOT NULL,
    abort_reason  INTEGER
);
CREATE INDEX transfers_by_transfer_id ON transfers (transfer_id);
"#;

/// Version 2: `pending_counts` is kept by the two statements that add and deliver
/// waiting rows (`messages::store` and `messages::mark_delivered`) instead of row
/// triggers.
///
/// Why: a trigger makes its statement a multi-row write, so SQLite opens a statement
/// journal and copies every page the statement touches into it, and runs the trigger's
/// sub-program on top; for the one-row insert and update of the hot path that was about
/// a fifth of the writer's SQLite time per message (measured: 7.0 -> 5.6 us). The two
/// sites change the counter only when their statement changed a row, so the counts are
/// what the triggers kept. The delete trigger stays: rows also go by `ON DELETE CASCADE`,
/// which no code path sees.
const V2: &str = r#"
DROP TRIGGER pending_counts_on_insert;
DROP TRIGGER pending_counts_on_delivered;
"#;

/// Version 3: delivery by sequence number.
///
/// A message's id is its sequence number: assigned in the commit, only ever growing.
/// Each device keeps one cursor, "has everything through N" (`devices.cursor`), instead
/// of a `deliveries` row per message it received; a direct message is one `inbox` row
/// per recipient user; a group message is stored once (`messages.group_id`) and reaches
/// every member through `group_members`, from the member's `since` on (the highest id
/// when the member joined), instead of a `message_recipients` row per member.
/// `message_tags` remembers each tagged message (516) so that a resend is stored once.
///
/// The upgrade keeps everything a device had not received: its cursor is set just
/// below the oldest message it still lacked (so at worst a device gets again a few it
/// had, never fewer), and `pending_counts` is recounted as inbox rows above the user's
/// highest cursor.
///
/// Index reasons:
/// - `inbox` primary key `(user, message_id)`: exactly the range a login's backlog reads.
/// - `inbox_by_message`: the `ON DELETE CASCADE` from `messages` (retention).
/// - `messages_by_group`: a member's backlog of one group, `id > since`, in order.
/// - `group_members_by_user`: the groups of the user logging in.
const V3: &str = r#"
CREATE TABLE inbox (
    user       TEXT NOT NULL,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (user, message_id)
) WITHOUT ROWID;
CREATE INDEX inbox_by_message ON inbox (message_id);
INSERT INTO inbox (user, message_id)
    SELECT r.user, r.message_id FROM message_recipients AS r
    JOIN messages AS m ON m.id = r.message_id
    WHERE m.group_id IS NULL;

ALTER TABLE devices ADD COLUMN cursor INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET cursor = COALESCE(
    (SELECT min(r.message_id) - 1 FROM message_recipients AS r
     JOIN messages AS m ON m.id = r.message_id
     WHERE r.user = devices.user
       AND (r.delivered = 0 OR r.message_id > devices.watermark)
       AND m.origin_device <> devices.id
       AND NOT EXISTS (SELECT 1 FROM deliveries AS d
                       WHERE d.message_id = r.message_id AND d.device_id = devices.id)),
    (SELECT seq FROM sqlite_sequence WHERE name = 'messages'),
    0);
ALTER TABLE devices DROP COLUMN watermark;

ALTER TABLE group_members ADD COLUMN since INTEGER NOT NULL DEFAULT 0;
CREATE INDEX group_members_by_user ON group_members (user, group_id);
CREATE INDEX messages_by_group ON messages (group_id, id) WHERE group_id IS NOT NULL;

CREATE TABLE message_tags (
    device_id  INTEGER NOT NULL,
    client_id  INTEGER NOT NULL,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (device_id, client_id)
) WITHOUT ROWID;
CREATE INDEX message_tags_by_message ON message_tags (message_id);

DROP TABLE deliveries;
DROP TABLE message_recipients;
DELETE FROM pending_counts;
INSERT INTO pending_counts (user, pending)
    SELECT i.user, count(*) FROM inbox AS i
    WHERE i.message_id > COALESCE((SELECT max(cursor) FROM devices WHERE user = i.user), 0)
    GROUP BY i.user;
"#;

/// Version 4: the per-sender quota of an inbox.
///
/// `pending_from` counts, for a user with many messages waiting, how many came from each
/// sender. It is kept only while the user is `tracked` (from the moment the user's
/// waiting messages reach the quota until they fall below half of it), so a user whose
/// inbox is nearly empty, the usual case, costs the message path nothing.
const V4: &str = r#"
ALTER TABLE pending_counts ADD COLUMN tracked INTEGER NOT NULL DEFAULT 0;
CREATE TABLE pending_from (
    user    TEXT NOT NULL,
    sender  TEXT NOT NULL,
    pending INTEGER NOT NULL,
    PRIMARY KEY (user, sender)
) WITHOUT ROWID;
"#;

/// Version 5: invitation tokens (`registration = "token"`), kept as their SHA-256 only,
/// so a copy of the database holds no token that works.
const V5: &str = r#"
CREATE TABLE invites (
    hash       BLOB PRIMARY KEY NOT NULL,
    uses_left  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Version 6: a client message id outlives its message. Retention deletes a message
/// every recipient holds at once; with its id deleted along (the old `ON DELETE
/// CASCADE`), a sender that never got the acknowledgement (the server was killed
/// before it wrote it) and sends again after the restart had its message stored a
/// second time. Ids are now kept for [`TAG_MAX_AGE`] from when they were stored, with
/// or without their message.
const V6: &str = r#"
CREATE TABLE message_tags_v6 (
    device_id  INTEGER NOT NULL,
    client_id  INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, client_id)
) WITHOUT ROWID;
INSERT INTO message_tags_v6 (device_id, client_id, message_id, created_at)
    SELECT t.device_id, t.client_id, t.message_id, COALESCE(m.received_at, 0)
    FROM message_tags AS t LEFT JOIN messages AS m ON m.id = t.message_id;
DROP TABLE message_tags;
ALTER TABLE message_tags_v6 RENAME TO message_tags;
CREATE INDEX message_tags_by_age ON message_tags (created_at);
"#;

/// Version 7: client-side groups. A group made by a user (GroupCreate, 518) records its
/// owner, who alone changes it; groups made before, all by the administrator, keep no
/// owner and stay the administrator's.
const V7: &str = r#"
ALTER TABLE chat_groups ADD COLUMN owner TEXT;
"#;

/// How long a client message id (516) is remembered, from when its message was stored:
/// a resend of the same id within it is stored once, even after its message was
/// delivered and deleted.
pub(crate) const TAG_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Every migration, oldest first. Append only.
const MIGRATIONS: &[M<'static>] = &[
    M::up(V1),
    M::up(V2),
    M::up(V3),
    M::up(V4),
    M::up(V5),
    M::up(V6),
    M::up(V7),
];

/// The schema version this program writes (SQLite's `user_version` after migrating).
pub(crate) const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Log pages after which the writer checkpoints itself (16 MiB of 4 KiB pages).
///
/// Without it, a server under constant load never restarts its log: it grew by about
/// 125 MB a second at 10 000 messages a second, and every frame appended to a growing
/// file cost the kernel a page to clear (12 % of the server's CPU), see
/// `docs/benchmarks.md`.
pub(crate) const WRITER_CHECKPOINT_PAGES: i64 = 4096;

/// The size, in bytes, the log file is cut back to when it restarts.
pub(crate) const LOG_SIZE_LIMIT: i64 = 64 << 20;

/// Opens the read-write connection, refuses a newer schema, and migrates to the latest.
pub(crate) fn open_writer(
    path: &Path,
    synchronous: Synchronous,
    busy_timeout: Duration,
    cache_kib: i64,
) -> StoreResult<Connection> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    // Checked before any other change to the file, so a newer program's data is never
    // touched by an older one.
    let found = refuse_newer_schema(&conn)?;
    if (1..SCHEMA_VERSION).contains(&found) {
        backup_before_migrating(&conn, path, found)?;
    }

    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Migration(format!(
            "the database refused write-ahead logging (journal mode is {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma_value())?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Multi-row statements keep a statement journal, and a replayed batch a savepoint
    // per request; their undo journals would otherwise be temporary files written on
    // every page they touch.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // The writer keeps the hot pages (recent messages, every user's index leaves) in
    // memory, within its share of the store's budget (negative: KiB).
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    // The checkpointer thread copies the log into the database beside the writer (see
    // `checkpoint`), but under a steady stream of commits it never catches up: by the
    // time a round ends the writer has appended more, and SQLite restarts the log only
    // when all of it has been copied. So once the log passes `WRITER_CHECKPOINT_PAGES`
    // the writer runs a checkpoint itself after a commit: it copies only the frames
    // the checkpointer has not reached yet, and the next commit starts the log again
    // from its beginning.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
    // A log that grew past this (a long reader held it back) is cut back to it when it
    // restarts, so its file does not keep its largest size for ever.
    conn.pragma_update(None, "journal_size_limit", LOG_SIZE_LIMIT)?;
    // Every write statement of the store is prepared once and cached.
    conn.set_prepared_statement_cache_capacity(128);

    Migrations::from_slice(MIGRATIONS)
        .to_latest(&mut conn)
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(conn)
}

/// Opens a read-only connection to a database the writer has already set up.
pub(crate) fn open_reader(
    path: &Path,
    busy_timeout: Duration,
    cache_kib: i64,
) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Readers of a WAL database rarely wait, but can during recovery or a checkpoint.
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Copies a database about to be migrated from version `found` to
/// `<file>.before-v<SCHEMA_VERSION>` (a consistent copy, `VACUUM INTO`), so an upgrade
/// that goes wrong, or a program rolled back, finds the data as it was.
fn backup_before_migrating(conn: &Connection, path: &Path, found: usize) -> StoreResult<()> {
    let mut copy = path.with_extension(format!("sqlite3.before-v{SCHEMA_VERSION}"));
    if copy.exists() {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        copy = path.with_extension(format!("sqlite3.before-v{SCHEMA_VERSION}-{stamp}"));
    }
    conn.execute("VACUUM INTO ?1", [copy.to_string_lossy().as_ref()])
        .map_err(|e| {
            StoreError::Migration(format!(
                "cannot back the database up before migrating it to {}: {e}",
                copy.display()
            ))
        })?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            StoreError::Migration(format!("cannot make {} private: {e}", copy.display()))
        })?;
    }
    tracing::warn!(
        from = found, to = SCHEMA_VERSION, backup = %copy.display(),
        "migrating the database; a copy of it as it was is kept"
    );
    Ok(())
}

/// The file's `user_version`; `NewerSchema` when it is above [`SCHEMA_VERSION`].
fn refuse_newer_schema(conn: &Connection) -> StoreResult<usize> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let found = usize::try_from(found).map_err(|_| {
        StoreError::Migration(format!(
            "the database has a negative schema version {found}"
        ))
    })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From every earlier schema version: opening the file migrates it to the latest,
    /// keeps its data, and first keeps a copy of it as it was, at its old version.
    #[test]
    fn every_earlier_version_migrates_after_a_backup_of_it_as_it_was() {
        for version in 1..SCHEMA_VERSION {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("vcom.sqlite3");
            {
                let mut conn = Connection::open(&path).unwrap();
                Migrations::from_slice(MIGRATIONS)
                    .to_version(&mut conn, version)
                    .unwrap();
                conn.execute("INSERT INTO users (id, created_at) VALUES ('alice', 1)", [])
                    .unwrap();
            }
            let conn = open_writer(&path, Synchronous::Full, Duration::from_secs(5), 1024)
                .unwrap_or_else(|e| panic!("from version {version}: {e}"));
            let version_of = |c: &Connection| -> i64 {
                c.query_row("PRAGMA user_version", [], |r| r.get(0))
                    .unwrap()
            };
            assert_eq!(version_of(&conn), SCHEMA_VERSION as i64);
            let users: i64 = conn
                .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
                .unwrap();
            assert_eq!(users, 1, "from version {version}");
            let copy = path.with_extension(format!("sqlite3.before-v{SCHEMA_VERSION}"));
            let backup = Connection::open(&copy).unwrap();
            assert_eq!(version_of(&backup), version as i64, "the copy is as it was");
        }
    }

    /// Groups made before version 7 were all the administrator's, and stay so.
    #[test]
    fn the_upgrade_to_version_7_keeps_earlier_groups_the_administrators() {
        let mut conn = Connection::open_in_memory().unwrap();
        let migrations = Migrations::from_slice(MIGRATIONS);
        migrations.to_version(&mut conn, 6).unwrap();
        conn.execute_batch(
            "INSERT INTO chat_groups (name, created_at) VALUES ('staff', 1);
             INSERT INTO group_members (group_id, user, since) VALUES (1, 'alice', 0);",
        )
        .unwrap();
        migrations.to_latest(&mut conn).unwrap();
        let group = super::super::groups::get(&conn, vcom_protocol::GroupId(1))
            .unwrap()
            .unwrap();
        assert_eq!(group.name, "staff");
        assert_eq!(group.owner, None);
        assert_eq!(group.members.len(), 1);
    }

    /// A database already at the latest version is opened without a copy.
    #[test]
    fn a_current_database_is_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vcom.sqlite3");
        drop(open_writer(&path, Synchronous::Full, Duration::from_secs(5), 1024).unwrap());
        drop(open_writer(&path, Synchronous::Full, Duration::from_secs(5), 1024).unwrap());
        let copies = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("before-v")
            })
            .count();
        assert_eq!(copies, 0);
    }

    #[test]
    fn migrations_are_valid() {
        Migrations::from_slice(MIGRATIONS).validate().unwrap();
    }

    /// The upgrade to delivery by sequence number keeps every message a device had not
    /// received: its cursor stops just below the oldest one it lacked, direct messages
    /// move into inboxes, and the waiting counts are recounted.
    #[test]
    fn the_upgrade_to_version_3_keeps_what_each_device_still_lacks() {
        use vcom_protocol::{DeviceId, UserId};

        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        let migrations = Migrations::from_slice(MIGRATIONS);
        migrations.to_version(&mut conn, 2).unwrap();
        // bob's phone (1) has messages 1 and 3 but not 2; his laptop (2) has none;
        // carol's device (3) has everything. Message 4 is a group message.
        conn.execute_batch(
            "INSERT INTO users (id, created_at) VALUES ('bob', 1), ('carol', 1);
             INSERT INTO devices (user, created_at, last_seen, watermark)
                 VALUES ('bob', 1, 1, 0), ('bob', 1, 1, 0), ('carol', 1, 1, 0);
             INSERT INTO messages (sender, origin_device, group_id, sent_at, received_at, is_text, data)
                 VALUES ('alice', 9, NULL, 1, 1, 1, x'01'), ('alice', 9, NULL, 1, 1, 1, x'02'),
                        ('alice', 9, NULL, 1, 1, 1, x'03'), ('alice', 9, 5, 1, 1, 1, x'04');
             INSERT INTO message_recipients (user, message_id, delivered)
                 VALUES ('bob', 1, 1), ('bob', 2, 0), ('bob', 3, 1), ('carol', 3, 1),
                        ('bob', 4, 0);
             INSERT INTO deliveries (message_id, device_id, delivered_at)
                 VALUES (1, 1, 1), (3, 1, 1), (3, 3, 1);",
        )
        .unwrap();
        migrations.to_latest(&mut conn).unwrap();

        let cursors: Vec<i64> = conn
            .prepare("SELECT cursor FROM devices ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(cursors, [1, 0, 4], "each device stops below what it lacks");
        let inbox: Vec<(String, i64)> = conn
            .prepare("SELECT user, message_id FROM inbox ORDER BY user, message_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<(String, i64)> = vec![
            ("bob".into(), 1),
            ("bob".into(), 2),
            ("bob".into(), 3),
            ("carol".into(), 3),
        ];
        assert_eq!(inbox, expected, "direct messages only");
        let waiting: i64 = conn
            .query_row(
                "SELECT pending FROM pending_counts WHERE user = 'bob'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            waiting, 2,
            "messages 2 and 3 are above bob's highest cursor"
        );
        let bob = UserId::new("bob").unwrap();
        let phone: Vec<i64> =
            super::super::messages::pending(&conn, &bob, DeviceId(1), None, 10, usize::MAX)
                .unwrap()
                .iter()
                .map(|m| m.id.0)
                .collect();
        assert_eq!(
            phone,
            [2, 3],
            "the phone gets 2 again, and 3 a second time at worst"
        );
    }
}
