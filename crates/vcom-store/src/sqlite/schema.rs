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

/// Every migration, oldest first. Append only.
const MIGRATIONS: &[M<'static>] = &[M::up(V1), M::up(V2)];

/// The schema version this program writes (SQLite's `user_version` after migrating).
pub(crate) const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Pages of write-ahead log after which the writer copies it into the database.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 4_000;

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
    refuse_newer_schema(&conn)?;

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
    // Checkpoint every ~16 MiB of log instead of 4 MiB: a page that many batches touch
    // (a busy user's index leaf) is then copied into the database once, not each time.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
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

/// `NewerSchema` when the file's `user_version` is above [`SCHEMA_VERSION`].
fn refuse_newer_schema(conn: &Connection) -> StoreResult<()> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        Migrations::from_slice(MIGRATIONS).validate().unwrap();
    }

    /// Waiting rows counted by version 1's triggers go on being counted correctly by
    /// version 2's statements after an upgrade in place.
    #[test]
    fn pending_counts_carry_over_the_upgrade_to_version_2() {
        use bytes::Bytes;
        use vcom_protocol::{DeviceId, MessageKind, Timestamp, UserId};

        use crate::{MessageId, NewMessage};

        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        let migrations = Migrations::from_slice(MIGRATIONS);
        migrations.to_version(&mut conn, 1).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, created_at) VALUES ('bob', 1);
             INSERT INTO devices (user, created_at, last_seen, watermark) VALUES ('bob', 1, 1, 0);
             INSERT INTO messages (sender, origin_device, sent_at, received_at, is_text, data)
                 VALUES ('alice', 9, 1, 1, 1, x'00');
             INSERT INTO message_recipients (user, message_id) VALUES ('bob', 1);",
        )
        .unwrap();
        migrations.to_latest(&mut conn).unwrap();

        let message = NewMessage {
            sender: UserId::new("alice").unwrap(),
            origin_device: DeviceId(9),
            group: None,
            recipients: vec![UserId::new("bob").unwrap(), UserId::new("carol").unwrap()],
            sent_at: Timestamp(1),
            received_at: Timestamp(1),
            kind: MessageKind::Text,
            data: Bytes::from_static(b"x"),
        };
        super::super::messages::store(&conn, &message, None).unwrap();
        super::super::messages::mark_delivered(&conn, DeviceId(1), &[MessageId(1)], Timestamp(2))
            .unwrap();
        let counts: Vec<(String, i64)> = conn
            .prepare("SELECT user, pending FROM pending_counts ORDER BY user")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(counts, [("bob".into(), 1), ("carol".into(), 1)]);
    }
}
