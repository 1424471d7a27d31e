//! The local message history: every message the client receives is written here before
//! the application sees it (the README's contract), and every message this device sends
//! is written here once it has been queued for the server, so a conversation reads the
//! same after a restart as it did live.
//!
//! SQLite calls block, so one dedicated thread owns the connection and runs jobs sent to
//! it over a bounded channel; async callers await the answer and the runtime never
//! blocks. The handle is cheap to clone; the thread ends when the last handle is dropped.
//!
//! # Schema versions
//! The database's `user_version` says which [`MIGRATIONS`] have run; opening a file runs
//! the missing ones in one transaction, so a history written by an older `vcom` is
//! upgraded in place and never rebuilt.
//! - 1: `messages`, the received messages.
//! - 2: `outgoing` (0 received, 1 sent) and `peer` (the other user of a direct message:
//!   its sender when received, its recipient when sent; `NULL` for group messages).
//!   Rows from version 1 become received messages whose peer is their sender.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use vcom_protocol::{GroupId, MessageKind, Timestamp, UserId};

use crate::ClientError;

/// How many jobs may wait for the history thread before callers wait in turn.
const QUEUE: usize = 64;

/// The schema, one step per version: step `n` (counting from 1) takes a database at
/// `user_version` `n - 1` to `n`. Steps are only ever appended: a released step may
/// already have run in a user's profile.
const MIGRATIONS: &[&str] = &[
    // 1: the received messages. `IF NOT EXISTS` because the first releases created this
    // table without checking the version.
    "CREATE TABLE IF NOT EXISTS messages (
         id          INTEGER PRIMARY KEY AUTOINCREMENT,
         sender      TEXT    NOT NULL,
         group_id    INTEGER,
         sent_at     INTEGER NOT NULL,
         received_at INTEGER NOT NULL,
         is_text     INTEGER NOT NULL,
         data        BLOB    NOT NULL,
         read        INTEGER NOT NULL
     );
     CREATE INDEX IF NOT EXISTS messages_by_sender ON messages (sender, id);
     CREATE INDEX IF NOT EXISTS messages_by_group ON messages (group_id, id);",
    // 2: both directions. Every earlier row was received, so `outgoing` defaults to 0
    // and a direct row's peer is its sender. A conversation is looked up by its peer,
    // whichever way the message went, so that index replaces the one by sender.
    "ALTER TABLE messages ADD COLUMN outgoing INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE messages ADD COLUMN peer TEXT;
     UPDATE messages SET peer = sender WHERE group_id IS NULL;
     DROP INDEX IF EXISTS messages_by_sender;
     CREATE INDEX messages_by_peer ON messages (peer, id);",
    // 3: the server's sequence number of a received message, when the server tells it
    // (`vcom/1+ext`). A message the server sends again because its receipt was lost (the
    // client died first) matches its row and is kept once. The sender and timestamp are
    // part of the key, so that a server whose numbering started over never hides a
    // different message.
    "ALTER TABLE messages ADD COLUMN seq INTEGER;
     CREATE UNIQUE INDEX messages_by_seq ON messages (seq, sender, sent_at)
         WHERE seq IS NOT NULL;",
];

/// The schema version this code writes: the number of [`MIGRATIONS`].
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Which way a message went, seen from this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received from the server (including this user's messages sent from another
    /// device and relayed here).
    Incoming,
    /// Sent by this device.
    Outgoing,
}

/// A message as stored in the history, received or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Row number: increases in the order this device received or sent messages.
    pub id: i64,
    /// Whether this device received or sent it.
    pub direction: Direction,
    /// Who sent it: this user for an outgoing message.
    pub sender: UserId,
    /// The other user of a direct conversation: the sender of an incoming message, the
    /// recipient of an outgoing one. `None` for a group message.
    pub peer: Option<UserId>,
    /// The group it was sent to, or `None` for a direct message.
    pub group: Option<GroupId>,
    /// The timestamp the sender gave.
    pub sent_at: Timestamp,
    /// When this device received it, or handed it to the connection for an outgoing
    /// message (local clock).
    pub received_at: Timestamp,
    /// Text or image.
    pub kind: MessageKind,
    /// The message body, byte-exact.
    pub data: Bytes,
    /// Whether another device of this user had received it before; always true for an
    /// outgoing message, which its author has seen.
    pub read: bool,
}

/// Which messages a history query returns, in the order they were recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryQuery {
    /// Every message, both directions.
    All,
    /// The direct conversation with this user: messages from them and to them.
    With(UserId),
    /// The messages of this group, both directions.
    Group(GroupId),
}

/// A received message to record; [`History::record`] stamps the receive time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Who sent it.
    pub sender: UserId,
    /// The group, for a group message.
    pub group: Option<GroupId>,
    /// The sender's timestamp.
    pub sent_at: Timestamp,
    /// Text or image.
    pub kind: MessageKind,
    /// The body.
    pub data: Bytes,
    /// The `read` flag as delivered.
    pub read: bool,
}

/// Where a sent message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A direct message to this user.
    User(UserId),
    /// A message to this group.
    Group(GroupId),
}

/// A message this device sent, to record; [`History::record_sent`] stamps the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEntry {
    /// This user.
    pub sender: UserId,
    /// The user or group it went to.
    pub to: Recipient,
    /// The timestamp put in the packet.
    pub sent_at: Timestamp,
    /// Text or image.
    pub kind: MessageKind,
    /// The body.
    pub data: Bytes,
}

/// A handle to the history database; see the module documentation.
#[derive(Debug, Clone)]
pub struct History {
    jobs: mpsc::Sender<Job>,
}

impl History {
    /// Opens (creating it with mode 0600 if needed) the history database at `path`,
    /// upgrading a file written by an older version in place.
    ///
    /// Fails with [`ClientError::HistoryTooNew`] for a file written by a newer version,
    /// rather than guessing at a schema this code does not know.
    pub async fn open(path: impl Into<PathBuf>) -> Result<History, ClientError> {
        let path = path.into();
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("vcom-history".into())
            .spawn(move || {
                let mut conn = match open_db(&path) {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Some(job) = rx.blocking_recv() {
                    job(&mut conn);
                }
            })?;
        ready_rx.await.map_err(|_| ClientError::Closed)??;
        Ok(History { jobs })
    }

    /// Runs `f` on the history thread and returns its result.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs.send(job).await.map_err(|_| ClientError::Closed)?;
        Ok(rx.await.map_err(|_| ClientError::Closed)??)
    }

    /// Stores a received message durably and returns its row number.
    pub async fn record(&self, entry: NewEntry) -> Result<i64, ClientError> {
        Ok(self.record_numbered(entry, None).await?.0)
    }

    /// Stores a received message with the server's sequence number, once: a message
    /// with the same number, sender and timestamp already recorded is not stored again.
    /// Returns the row number and whether the message is new.
    pub async fn record_numbered(
        &self,
        entry: NewEntry,
        seq: Option<i64>,
    ) -> Result<(i64, bool), ClientError> {
        let peer = match entry.group {
            None => Some(entry.sender.clone()),
            Some(_) => None,
        };
        self.insert(Row {
            outgoing: false,
            sender: entry.sender,
            peer,
            group: entry.group,
            sent_at: entry.sent_at,
            kind: entry.kind,
            data: entry.data,
            read: entry.read,
            seq,
        })
        .await
    }

    /// Stores a message this device sent durably and returns its row number.
    pub async fn record_sent(&self, entry: SentEntry) -> Result<i64, ClientError> {
        let (peer, group) = match entry.to {
            Recipient::User(user) => (Some(user), None),
            Recipient::Group(group) => (None, Some(group)),
        };
        self.insert(Row {
            outgoing: true,
            sender: entry.sender,
            peer,
            group,
            sent_at: entry.sent_at,
            kind: entry.kind,
            data: entry.data,
            read: true,
            seq: None,
        })
        .await
        .map(|(id, _)| id)
    }

    /// Inserts a row in one job; a numbered row already recorded (same sequence number,
    /// sender and timestamp) is not inserted again, and its row number comes back with
    /// `false`.
    async fn insert(&self, row: Row) -> Result<(i64, bool), ClientError> {
        let recorded_at = crate::now();
        self.run(move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO messages
                         (outgoing, sender, peer, group_id, sent_at, received_at, is_text, data,
                          read, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(params![
                    row.outgoing,
                    row.sender.as_str(),
                    row.peer.as_ref().map(UserId::as_str),
                    row.group.map(GroupId::get),
                    row.sent_at.0,
                    recorded_at.0,
                    row.kind.is_text(),
                    row.data.as_ref(),
                    row.read,
                    row.seq,
                ])?;
            if inserted == 1 {
                return Ok((conn.last_insert_rowid(), true));
            }
            let known = conn
                .prepare_cached(
                    "SELECT id FROM messages WHERE seq = ?1 AND sender = ?2 AND sent_at = ?3",
                )?
                .query_row(params![row.seq, row.sender.as_str(), row.sent_at.0], |r| {
                    r.get(0)
                })?;
            Ok((known, false))
        })
        .await
    }

    /// The messages matching `query`, both directions, in the order this device
    /// received or sent them: the order the conversation happened as this device saw
    /// it, which the senders' clocks cannot be trusted to give.
    pub async fn query(&self, query: HistoryQuery) -> Result<Vec<HistoryEntry>, ClientError> {
        self.run(move |conn| {
            const COLUMNS: &str = "SELECT id, outgoing, sender, peer, group_id, sent_at, \
                                   received_at, is_text, data, read FROM messages";
            let (sql, arg): (String, Option<rusqlite::types::Value>) = match query {
                HistoryQuery::All => (format!("{COLUMNS} ORDER BY id"), None),
                HistoryQuery::With(user) => (
                    format!("{COLUMNS} WHERE group_id IS NULL AND peer = ?1 ORDER BY id"),
                    Some(user.into_string().into()),
                ),
                HistoryQuery::Group(group) => (
                    format!("{COLUMNS} WHERE group_id = ?1 ORDER BY id"),
                    Some(group.get().into()),
                ),
            };
            let mut stmt = conn.prepare(&sql)?;
            let rows = match arg {
                Some(arg) => stmt.query_map([arg], row_to_entry)?,
                None => stmt.query_map([], row_to_entry)?,
            };
            rows.collect()
        })
        .await
    }

    /// How many messages the history holds, both directions.
    pub async fn count(&self) -> Result<u64, ClientError> {
        self.run(|conn| {
            let n: Option<i64> = conn
                .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
                .optional()?;
            Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
        })
        .await
    }
}

/// One row to insert, either direction.
struct Row {
    outgoing: bool,
    sender: UserId,
    peer: Option<UserId>,
    group: Option<GroupId>,
    sent_at: Timestamp,
    kind: MessageKind,
    data: Bytes,
    read: bool,
    seq: Option<i64>,
}

fn user_column(row: &rusqlite::Row<'_>, index: usize) -> Result<UserId, rusqlite::Error> {
    let text: String = row.get(index)?;
    UserId::new(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn row_to_entry(row: &rusqlite::Row<'_>) -> Result<HistoryEntry, rusqlite::Error> {
    let direction = if row.get::<_, bool>(1)? {
        Direction::Outgoing
    } else {
        Direction::Incoming
    };
    let peer = match row.get_ref(3)? {
        rusqlite::types::ValueRef::Null => None,
        _ => Some(user_column(row, 3)?),
    };
    let data: Vec<u8> = row.get(8)?;
    Ok(HistoryEntry {
        id: row.get(0)?,
        direction,
        sender: user_column(row, 2)?,
        peer,
        group: row.get::<_, Option<i32>>(4)?.map(GroupId),
        sent_at: Timestamp(row.get(5)?),
        received_at: Timestamp(row.get(6)?),
        kind: MessageKind::from_is_text(row.get(7)?),
        data: Bytes::from(data),
        read: row.get(9)?,
    })
}

fn open_db(path: &Path) -> Result<Connection, ClientError> {
    // Create the file owner-only before SQLite opens it; SQLite gives its journal files
    // the database file's permissions.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?;
    let mut conn = Connection::open(path)?;
    // Several programs may share a profile (`vcom listen` beside `vcom send`): wait for
    // the other's write instead of failing with "database is locked".
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Brings the schema to [`SCHEMA_VERSION`], all missing steps in one transaction: a
/// crash or a second `vcom` opening the file at the same time leaves it either at the
/// old version or at the new one, never in between.
fn migrate(conn: &mut Connection) -> Result<(), ClientError> {
    // IMMEDIATE takes the write lock before the version is read, so two processes
    // cannot both decide to run the same step.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(ClientError::HistoryTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    let done = usize::try_from(found).unwrap_or(0);
    for step in MIGRATIONS.iter().skip(done) {
        tx.execute_batch(step)?;
    }
    if found != SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn user(s: &str) -> UserId {
        UserId::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn text(sender: &str, group: Option<i32>, body: &str) -> NewEntry {
        NewEntry {
            sender: user(sender),
            group: group.map(GroupId),
            sent_at: Timestamp(1000),
            kind: MessageKind::Text,
            data: Bytes::copy_from_slice(body.as_bytes()),
            read: false,
        }
    }

    #[tokio::test]
    async fn a_numbered_message_is_kept_once_and_an_unnumbered_one_each_time() -> TestResult {
        let dir = tempfile::tempdir()?;
        let history = History::open(dir.path().join("h.sqlite3")).await?;
        let (first, new) = history
            .record_numbered(text("bob", None, "a"), Some(7))
            .await?;
        assert!(new);
        let (again, new) = history
            .record_numbered(text("bob", None, "a"), Some(7))
            .await?;
        assert_eq!(
            (again, new),
            (first, false),
            "sent again after a lost receipt"
        );
        let (other, new) = history
            .record_numbered(text("carol", None, "a"), Some(7))
            .await?;
        assert!(
            new && other != first,
            "another sender under the same number is new"
        );
        history.record(text("bob", None, "b")).await?;
        history.record(text("bob", None, "b")).await?;
        assert_eq!(history.count().await?, 4);
        Ok(())
    }

    #[tokio::test]
    async fn recorded_messages_come_back_in_order_with_every_field() -> TestResult {
        let dir = tempfile::tempdir()?;
        let history = History::open(dir.path().join("h.sqlite3")).await?;
        let image = NewEntry {
            kind: MessageKind::Image,
            data: Bytes::from_static(&[0, 159, 146, 150]),
            read: true,
            sent_at: Timestamp(-5),
            ..text("bob", None, "")
        };
        history.record(text("bob", None, "hi")).await?;
        history.record(image.clone()).await?;
        let all = history.query(HistoryQuery::All).await?;
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].data, Bytes::from_static(b"hi"));
        assert_eq!(all[1].kind, MessageKind::Image);
        assert_eq!(all[1].data, image.data);
        assert!(all[1].read);
        assert_eq!(all[1].sent_at, Timestamp(-5));
        assert!(all[0].id < all[1].id);
        assert!(all[0].received_at.0 > 0);
        assert_eq!(all[0].direction, Direction::Incoming);
        assert_eq!(all[0].peer, Some(user("bob")));
        Ok(())
    }

    #[tokio::test]
    async fn queries_filter_by_user_and_by_group() -> TestResult {
        let dir = tempfile::tempdir()?;
        let history = History::open(dir.path().join("h.sqlite3")).await?;
        history.record(text("bob", None, "1")).await?;
        history.record(text("carol", None, "2")).await?;
        history.record(text("bob", Some(7), "3")).await?;
        history.record(text("dave", Some(8), "4")).await?;
        let bodies =
            |v: Vec<HistoryEntry>| -> Vec<Bytes> { v.into_iter().map(|e| e.data).collect() };
        assert_eq!(
            bodies(history.query(HistoryQuery::With(user("bob"))).await?),
            vec![Bytes::from_static(b"1")]
        );
        assert_eq!(
            bodies(history.query(HistoryQuery::Group(GroupId(7))).await?),
            vec![Bytes::from_static(b"3")]
        );
        assert_eq!(history.count().await?, 4);
        Ok(())
    }

    fn sent(to: Recipient, body: &str) -> SentEntry {
        SentEntry {
            sender: user("alice"),
            to,
            sent_at: Timestamp(2000),
            kind: MessageKind::Text,
            data: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    fn directions_and_bodies(entries: &[HistoryEntry]) -> Vec<(Direction, &[u8])> {
        entries.iter().map(|e| (e.direction, &e.data[..])).collect()
    }

    #[tokio::test]
    async fn a_conversation_with_a_user_holds_both_directions_in_the_order_recorded() -> TestResult
    {
        let dir = tempfile::tempdir()?;
        let history = History::open(dir.path().join("h.sqlite3")).await?;
        history.record(text("bob", None, "hi alice")).await?;
        history
            .record_sent(sent(Recipient::User(user("bob")), "hi bob"))
            .await?;
        history
            .record_sent(sent(Recipient::User(user("carol")), "hi carol"))
            .await?;
        history.record(text("bob", None, "how are you?")).await?;

        let with_bob = history.query(HistoryQuery::With(user("bob"))).await?;
        assert_eq!(
            directions_and_bodies(&with_bob),
            vec![
                (Direction::Incoming, &b"hi alice"[..]),
                (Direction::Outgoing, &b"hi bob"[..]),
                (Direction::Incoming, &b"how are you?"[..]),
            ]
        );
        let mine = &with_bob[1];
        assert_eq!(mine.sender, user("alice"));
        assert_eq!(mine.peer, Some(user("bob")));
        assert_eq!(mine.group, None);
        assert_eq!(mine.sent_at, Timestamp(2000));
        assert!(mine.read);
        assert_eq!(with_bob[0].peer, Some(user("bob")));
        assert_eq!(history.count().await?, 4);
        Ok(())
    }

    #[tokio::test]
    async fn a_group_holds_the_messages_sent_to_it_and_received_from_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let history = History::open(dir.path().join("h.sqlite3")).await?;
        history
            .record_sent(sent(Recipient::Group(GroupId(7)), "hello team"))
            .await?;
        history.record(text("bob", Some(7), "hi alice")).await?;
        history
            .record_sent(sent(Recipient::Group(GroupId(8)), "elsewhere"))
            .await?;

        let team = history.query(HistoryQuery::Group(GroupId(7))).await?;
        assert_eq!(
            directions_and_bodies(&team),
            vec![
                (Direction::Outgoing, &b"hello team"[..]),
                (Direction::Incoming, &b"hi alice"[..]),
            ]
        );
        assert_eq!(team[0].group, Some(GroupId(7)));
        assert_eq!(team[0].peer, None);
        // A group message is part of no direct conversation.
        assert!(
            history
                .query(HistoryQuery::With(user("bob")))
                .await?
                .is_empty()
        );
        Ok(())
    }

    /// The schema and a row exactly as the first releases wrote them (version 1).
    fn create_version_1(path: &Path) -> Result<(), rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "CREATE TABLE messages (
                 id          INTEGER PRIMARY KEY AUTOINCREMENT,
                 sender      TEXT    NOT NULL,
                 group_id    INTEGER,
                 sent_at     INTEGER NOT NULL,
                 received_at INTEGER NOT NULL,
                 is_text     INTEGER NOT NULL,
                 data        BLOB    NOT NULL,
                 read        INTEGER NOT NULL
             );
             CREATE INDEX messages_by_sender ON messages (sender, id);
             CREATE INDEX messages_by_group ON messages (group_id, id);
             PRAGMA user_version = 1;
             INSERT INTO messages (sender, group_id, sent_at, received_at, is_text, data, read)
                 VALUES ('bob', NULL, 10, 11, 1, CAST('old direct' AS BLOB), 0),
                        ('carol', 7, 20, 21, 1, CAST('old group' AS BLOB), 1);",
        )
    }

    #[tokio::test]
    async fn a_version_1_history_is_migrated_and_its_rows_become_incoming() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("h.sqlite3");
        create_version_1(&path)?;

        let history = History::open(&path).await?;
        let old = history.query(HistoryQuery::All).await?;
        assert_eq!(old.len(), 2);
        assert!(old.iter().all(|e| e.direction == Direction::Incoming));
        assert_eq!(old[0].sender, user("bob"));
        assert_eq!(old[0].peer, Some(user("bob")));
        assert_eq!(old[0].data, Bytes::from_static(b"old direct"));
        assert_eq!(old[0].received_at, Timestamp(11));
        assert_eq!(old[1].peer, None);
        assert_eq!(old[1].group, Some(GroupId(7)));
        assert!(old[1].read);

        // The migrated file takes new rows of both kinds, and the old conversation
        // continues with them.
        history
            .record_sent(sent(Recipient::User(user("bob")), "new reply"))
            .await?;
        let with_bob = history.query(HistoryQuery::With(user("bob"))).await?;
        assert_eq!(
            directions_and_bodies(&with_bob),
            vec![
                (Direction::Incoming, &b"old direct"[..]),
                (Direction::Outgoing, &b"new reply"[..]),
            ]
        );
        drop(history);

        let conn = Connection::open(&path)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        assert_eq!(version, SCHEMA_VERSION);
        Ok(())
    }

    #[tokio::test]
    async fn reopening_a_current_history_runs_no_migration_again() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("h.sqlite3");
        create_version_1(&path)?;
        drop(History::open(&path).await?);

        // A second run of step 2 would fail on the duplicate column.
        let history = History::open(&path).await?;
        assert_eq!(history.count().await?, 2);
        Ok(())
    }

    #[tokio::test]
    async fn a_history_from_a_newer_version_is_refused_and_left_alone() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("h.sqlite3");
        {
            let conn = Connection::open(&path)?;
            conn.execute_batch("CREATE TABLE future (x INTEGER); PRAGMA user_version = 99;")?;
        }
        let result = History::open(&path).await;
        assert!(
            matches!(result, Err(ClientError::HistoryTooNew { found: 99, known }) if known == SCHEMA_VERSION),
            "{result:?}"
        );
        let conn = Connection::open(&path)?;
        let tables: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'messages'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(tables, 0);
        Ok(())
    }

    #[tokio::test]
    async fn the_history_survives_a_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("h.sqlite3");
        {
            let history = History::open(&path).await?;
            history.record(text("bob", None, "kept")).await?;
        }
        let history = History::open(&path).await?;
        assert_eq!(history.count().await?, 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn opening_a_history_in_a_missing_directory_fails_cleanly() -> TestResult {
        let dir = tempfile::tempdir()?;
        let result = History::open(dir.path().join("missing/h.sqlite3")).await;
        assert!(matches!(result, Err(ClientError::Io(_))));
        Ok(())
    }
}
