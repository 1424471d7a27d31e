//! The PostgreSQL schema and its versioned migrations.
//!
//! `schema_version` holds one row per migration applied. Migrations only ever append;
//! a database written by a newer version is refused before anything touches it. Several
//! nodes may start at once: the migration runs in one transaction under an advisory
//! lock, so exactly one of them applies each version.

use deadpool_postgres::Client;

use crate::{StoreError, StoreResult};

/// Version 1: the whole schema of SQLite's version 6, in PostgreSQL's types.
///
/// Differences from the SQLite file, each for a reason:
/// - Every number is `BIGINT` (the Rust side reads `i64`, as with SQLite); device and
///   group identifiers are identity columns capped at `i32::MAX`, and a sequence never
///   hands a value out twice, so identifiers are never reused.
/// - `message_counter`, one row: the highest message identifier assigned. A message
///   transaction locks it (`FOR UPDATE`) until it commits, so identifiers are assigned
///   in commit order across every node sharing the database: a device's cursor
///   ("everything through N") never passes a message that commits later with a lower
///   identifier. A PostgreSQL sequence would not do: its values are taken outside the
///   transaction, so a later commit could carry a lower number.
/// - The column SQLite calls `user` is `user_id` (`user` is reserved here).
/// - Group names and transfer file names are `BYTEA` (their UTF-8): they come as the
///   administrator or a client typed them, and PostgreSQL's text refuses a NUL that
///   SQLite keeps.
/// - Text is `COLLATE "C"`: ordered by its bytes, as SQLite orders it, whatever the
///   database's locale (users and group members are listed by identifier).
///
/// Index reasons are SQLite's (see `sqlite::schema`): `devices_by_user` (a login lists
/// the user's devices), `list_entries_by_entry` (`is_blocked`), `messages_by_received_at`
/// (retention by age), `messages_by_group` (a member's backlog of a group),
/// `inbox_by_message` (the cascade from `messages`), `group_members_by_user` (the groups
/// of a user logging in), `message_tags_by_age` (retention of client ids) and
/// `transfers_by_transfer_id` (`max_transfer_id`).
const V1: &str = r#"
CREATE TABLE users (
    id         TEXT COLLATE "C" PRIMARY KEY,
    key_sha256 BYTEA CHECK (key_sha256 IS NULL OR length(key_sha256) = 32),
    created_at BIGINT NOT NULL
);

CREATE TABLE devices (
    id         BIGINT GENERATED ALWAYS AS IDENTITY (MAXVALUE 2147483647) PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    cursor     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_by_user ON devices (user_id);

CREATE TABLE user_lists (
    owner      TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    kind       BIGINT NOT NULL CHECK (kind IN (0, 1)),
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (owner, kind)
);

CREATE TABLE list_entries (
    owner    TEXT COLLATE "C" NOT NULL,
    kind     BIGINT NOT NULL,
    position BIGINT NOT NULL,
    entry    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (owner, kind, position),
    FOREIGN KEY (owner, kind) REFERENCES user_lists (owner, kind) ON DELETE CASCADE
);
CREATE INDEX list_entries_by_entry ON list_entries (owner, kind, entry);

CREATE TABLE chat_groups (
    id         BIGINT GENERATED ALWAYS AS IDENTITY (MAXVALUE 2147483647) PRIMARY KEY,
    name       BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- Members are not tied to `users`: an administrator may add someone who has never
-- logged in. `since`: the highest message id when the member joined.
CREATE TABLE group_members (
    group_id BIGINT NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    user_id  TEXT COLLATE "C" NOT NULL,
    since    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id, group_id);

CREATE TABLE message_counter (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    last     BIGINT NOT NULL
);
INSERT INTO message_counter (last) VALUES (0);

CREATE TABLE messages (
    id            BIGINT PRIMARY KEY,
    sender        TEXT COLLATE "C" NOT NULL,
    origin_device BIGINT NOT NULL,
    group_id      BIGINT,
    sent_at       BIGINT NOT NULL,
    received_at   BIGINT NOT NULL,
    is_text       BOOLEAN NOT NULL,
    data          BYTEA NOT NULL
);
CREATE INDEX messages_by_received_at ON messages (received_at);
CREATE INDEX messages_by_group ON messages (group_id, id) WHERE group_id IS NOT NULL;

CREATE TABLE inbox (
    user_id    TEXT COLLATE "C" NOT NULL,
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, message_id)
);
CREATE INDEX inbox_by_message ON inbox (message_id);

-- Kept by the statements that add and deliver waiting messages (see `messages`).
CREATE TABLE pending_counts (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    pending BIGINT NOT NULL,
    tracked BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE pending_from (
    user_id TEXT COLLATE "C" NOT NULL,
    sender  TEXT COLLATE "C" NOT NULL,
    pending BIGINT NOT NULL,
    PRIMARY KEY (user_id, sender)
);

CREATE TABLE message_tags (
    device_id  BIGINT NOT NULL,
    client_id  BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, client_id)
);
CREATE INDEX message_tags_by_age ON message_tags (created_at);

CREATE TABLE invites (
    hash       BYTEA PRIMARY KEY,
    uses_left  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- list: 0 blacklist, 1 whitelist; kind: 0 user, 1 ip.
CREATE TABLE policy (
    list  BIGINT NOT NULL CHECK (list IN (0, 1)),
    kind  BIGINT NOT NULL CHECK (kind IN (0, 1)),
    value TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (list, kind, value)
);

-- `seq` is the log order; `transfer_id` is the server's identifier.
CREATE TABLE transfers (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id   BIGINT NOT NULL,
    sender        TEXT COLLATE "C" NOT NULL,
    recipient     TEXT COLLATE "C" NOT NULL,
    size          BIGINT NOT NULL,
    name          BYTEA NOT NULL,
    bytes_relayed BIGINT NOT NULL,
    started_at    BIGINT NOT NULL,
    ended_at      BIGINT NOT NULL,
    abort_reason  INTEGER
);
CREATE INDEX transfers_by_transfer_id ON transfers (transfer_id);
"#;

/// Version 2: client-side groups. A group made by a user (GroupCreate, 518) records its
/// owner, who alone changes it; the administrator's groups have none.
const V2: &str = r#"
ALTER TABLE chat_groups ADD COLUMN owner TEXT COLLATE "C";
"#;

/// Every migration, oldest first. Append only.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema version this program writes.
pub(crate) const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The advisory lock key migrations hold (an arbitrary constant, "vcom" in ASCII).
const MIGRATION_LOCK: i64 = 0x7663_6f6d;

/// Refuses a newer schema, then applies every migration not yet applied, in one
/// transaction.
pub(crate) async fn migrate(client: &mut Client) -> StoreResult<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i64 = tx
        .query_one("SELECT COALESCE(max(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
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
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found) {
        let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Migration(format!("version {version}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        if found > 0 {
            tracing::warn!(from = found, to = version, "migrated the PostgreSQL schema");
        }
    }
    tx.commit().await?;
    Ok(())
}
