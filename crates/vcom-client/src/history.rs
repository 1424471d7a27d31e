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
//! - 3: `seq`, the server's sequence number of a received message.
//! - 4: `delivery` and `refusal` (what became of a sent message, [`DeliveryState`]) and
//!   `client_id`; `read_marks`, how far each conversation has been read.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use vcom_protocol::{GroupId, MessageKind, SendOutcome, Timestamp, UserId};

use crate::ClientError;
use crate::outgoing::{Delivery, Outgoing};

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
    // 4: what became of a sent message (`delivery`: 0 pending, 1 stored, 2 refused with
    // the outcome code in `refusal`, 3 unconfirmed; `NULL` when received), under its
    // client message id so that the server's answer, or a resend, finds the row. Sent
    // rows from before were written once the server stored them or, from a server that
    // does not confirm, once handed to the connection: which, nobody knows now, so they
    // read unconfirmed. And the read marks: how far each conversation has been read in
    // `vcom chat`; every conversation so far counts as read. The unread messages are
    // counted in the indexes of received messages alone, however many there are, and
    // the pending ones are found without reading the rest.
    "ALTER TABLE messages ADD COLUMN client_id INTEGER;
     ALTER TABLE messages ADD COLUMN delivery INTEGER;
     ALTER TABLE messages ADD COLUMN refusal INTEGER;
     UPDATE messages SET delivery = 3 WHERE outgoing = 1;
     CREATE UNIQUE INDEX messages_by_client_id ON messages (client_id)
         WHERE client_id IS NOT NULL;
     CREATE INDEX messages_pending ON messages (id) WHERE delivery = 0;
     CREATE INDEX messages_received_by_peer ON messages (peer, id) WHERE outgoing = 0;
     CREATE INDEX messages_received_by_group ON messages (group_id, id) WHERE outgoing = 0;
     CREATE TABLE read_marks (
         conversation TEXT    PRIMARY KEY,
         through      INTEGER NOT NULL
     );
     INSERT INTO read_marks (conversation, through)
         SELECT 'u:' || peer, MAX(id) FROM messages WHERE peer IS NOT NULL GROUP BY peer;
     INSERT INTO read_marks (conversation, through)
         SELECT 'g:' || group_id, MAX(id) FROM messages WHERE group_id IS NOT NULL
             GROUP BY group_id;",
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

/// What became of a message this device sent, as the history knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Handed to the connection, the server's answer (517) not yet in. A message still
    /// pending when the program stopped stays pending until it is sent again under its
    /// client message id ([`History::unanswered`]).
    Pending,
    /// The server stored it durably ([`Delivery::Stored`]).
    Stored,
    /// The server did not store it, and said why ([`Delivery::Refused`]).
    Refused(SendOutcome),
    /// The server does not confirm messages ([`Delivery::Unconfirmed`]).
    Unconfirmed,
}

impl From<Delivery> for DeliveryState {
    fn from(delivery: Delivery) -> DeliveryState {
        match delivery {
            Delivery::Stored => DeliveryState::Stored,
            Delivery::Refused(outcome) => DeliveryState::Refused(outcome),
            Delivery::Unconfirmed => DeliveryState::Unconfirmed,
        }
    }
}

impl DeliveryState {
    /// The `delivery` and `refusal` columns.
    fn columns(self) -> (i64, Option<i8>) {
        match self {
            DeliveryState::Pending => (0, None),
            DeliveryState::Stored => (1, None),
            DeliveryState::Refused(outcome) => (2, Some(outcome.code())),
            DeliveryState::Unconfirmed => (3, None),
        }
    }

    /// Back from the columns; `None` for a received message (or a code this version
    /// does not know, read as nothing known).
    fn from_columns(delivery: Option<i64>, refusal: Option<i8>) -> Option<DeliveryState> {
        match delivery? {
            0 => Some(DeliveryState::Pending),
            1 => Some(DeliveryState::Stored),
            2 => Some(DeliveryState::Refused(SendOutcome::from_code(
                refusal.unwrap_or_default(),
            ))),
            _ => Some(DeliveryState::Unconfirmed),
        }
    }
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
    /// What became of an outgoing message; `None` for an incoming one.
    pub delivery: Option<DeliveryState>,
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

impl HistoryQuery {
    /// The `WHERE` condition selecting this query's rows, and its argument.
    fn filter(&self) -> (&'static str, Option<rusqlite::types::Value>) {
        match self {
            HistoryQuery::All => ("1", None),
            HistoryQuery::With(user) => (
                "group_id IS NULL AND peer = ?1",
                Some(user.as_str().to_owned().into()),
            ),
            HistoryQuery::Group(group) => ("group_id = ?1", Some(group.get().into())),
        }
    }

    /// The key of a conversation's read mark; `None` for [`HistoryQuery::All`].
    fn mark_key(&self) -> Option<String> {
        match self {
            HistoryQuery::All => None,
            HistoryQuery::With(user) => Some(format!("u:{user}")),
            HistoryQuery::Group(group) => Some(format!("g:{}", group.get())),
        }
    }
}

/// One conversation of the history, as listed by [`History::conversations`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// The conversation: [`HistoryQuery::With`] a user or [`HistoryQuery::Group`].
    pub query: HistoryQuery,
    /// Its newest row.
    pub last_id: i64,
    /// Received messages after its read mark ([`History::mark_read`]).
    pub unread: u64,
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
            client_id: None,
            delivery: None,
        })
        .await
    }

    /// Stores a message this device sent to a server that does not confirm messages
    /// ([`DeliveryState::Unconfirmed`]) durably and returns its row number.
    pub async fn record_sent(&self, entry: SentEntry) -> Result<i64, ClientError> {
        self.insert(Row::sent(entry, None, DeliveryState::Unconfirmed))
            .await
            .map(|(id, _)| id)
    }

    /// Stores a message this device is sending under `client_id`, as
    /// [`DeliveryState::Pending`] until [`History::settle`] records the server's answer,
    /// and returns its row number. Sending the same message again (same `client_id`)
    /// keeps its row, pending again.
    pub async fn record_pending(
        &self,
        entry: SentEntry,
        client_id: i64,
    ) -> Result<i64, ClientError> {
        let row = Row::sent(entry, Some(client_id), DeliveryState::Pending);
        let recorded_at = crate::now();
        self.run(move |conn| {
            let updated = conn
                .prepare_cached(
                    "UPDATE messages SET delivery = 0, refusal = NULL WHERE client_id = ?1
                     RETURNING id",
                )?
                .query_row([client_id], |r| r.get(0))
                .optional()?;
            match updated {
                Some(id) => Ok(id),
                None => Ok(insert_row(conn, &row, recorded_at)?.0),
            }
        })
        .await
    }

    /// The messages this device sent that are still pending (no answer came: the
    /// program stopped, or the connection ended, first) and were recorded at or after
    /// `since`, oldest first: each row number with the message to send again, under its
    /// client message id, so that the server stores it once and its row is settled.
    pub async fn unanswered(&self, since: Timestamp) -> Result<Vec<(i64, Outgoing)>, ClientError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, peer, group_id, is_text, data, client_id FROM messages
                 WHERE delivery = 0 AND client_id IS NOT NULL AND received_at >= ?1
                 ORDER BY id",
            )?;
            let rows = stmt.query_map([since.0], |r| {
                let to = match r.get::<_, Option<i32>>(2)? {
                    Some(group) => Recipient::Group(GroupId(group)),
                    None => Recipient::User(user_column(r, 1)?),
                };
                let data: Vec<u8> = r.get(4)?;
                let message = Outgoing {
                    to,
                    kind: MessageKind::from_is_text(r.get(3)?),
                    data: Bytes::from(data),
                    client_id: r.get(5)?,
                };
                Ok((r.get(0)?, message))
            })?;
            rows.collect()
        })
        .await
    }

    /// Records the server's answer for the message sent under `client_id`; returns its
    /// row number, or `None` if no such message is recorded.
    pub async fn settle(
        &self,
        client_id: i64,
        delivery: Delivery,
    ) -> Result<Option<i64>, ClientError> {
        let (state, refusal) = DeliveryState::from(delivery).columns();
        self.run(move |conn| {
            conn.prepare_cached(
                "UPDATE messages SET delivery = ?2, refusal = ?3 WHERE client_id = ?1
                 RETURNING id",
            )?
            .query_row(params![client_id, state, refusal], |r| r.get(0))
            .optional()
        })
        .await
    }

    /// Inserts a row in one job; a numbered row already recorded (same sequence number,
    /// sender and timestamp) is not inserted again, and its row number comes back with
    /// `false`.
    async fn insert(&self, row: Row) -> Result<(i64, bool), ClientError> {
        let recorded_at = crate::now();
        self.run(move |conn| insert_row(conn, &row, recorded_at))
            .await
    }

    /// The messages matching `query`, both directions, in the order this device
    /// received or sent them: the order the conversation happened as this device saw
    /// it, which the senders' clocks cannot be trusted to give.
    pub async fn query(&self, query: HistoryQuery) -> Result<Vec<HistoryEntry>, ClientError> {
        self.select(query, "", None, None).await
    }

    /// The newest `limit` messages matching `query` that come before row `before` (or
    /// the newest of all), oldest first: a page of a conversation to show, read from the
    /// end backwards without loading the rest.
    pub async fn page(
        &self,
        query: HistoryQuery,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ClientError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut page = self
            .select(
                query,
                "AND id < ?2",
                Some(before.unwrap_or(i64::MAX)),
                Some(limit),
            )
            .await?;
        page.reverse();
        Ok(page)
    }

    /// The messages matching `query` from row `from` (included) to row `before`
    /// (excluded), oldest first.
    pub async fn range(
        &self,
        query: HistoryQuery,
        from: i64,
        before: i64,
    ) -> Result<Vec<HistoryEntry>, ClientError> {
        self.run(move |conn| {
            let (filter, arg) = query.filter();
            let sql = format!("{COLUMNS} WHERE {filter} AND id >= ?2 AND id < ?3 ORDER BY id");
            let mut stmt = conn.prepare(&sql)?;
            let arg = arg.unwrap_or(rusqlite::types::Value::Null);
            let rows = stmt.query_map(params![arg, from, before], row_to_entry)?;
            rows.collect()
        })
        .await
    }

    /// The rows of the text messages matching `query` that contain `needle` (ASCII
    /// letters in either case), oldest first.
    pub async fn find(&self, query: HistoryQuery, needle: &str) -> Result<Vec<i64>, ClientError> {
        let needle = needle.to_ascii_lowercase();
        self.run(move |conn| {
            let (filter, arg) = query.filter();
            let sql = format!(
                "SELECT id FROM messages WHERE {filter} AND is_text = 1
                     AND instr(lower(CAST(data AS TEXT)), ?2) > 0 ORDER BY id"
            );
            let mut stmt = conn.prepare(&sql)?;
            let arg = arg.unwrap_or(rusqlite::types::Value::Null);
            let rows = stmt.query_map(params![arg, needle], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    /// Every direct and group conversation the history holds, newest activity first,
    /// with its count of unread received messages. Reads indexes, not the messages, so
    /// it stays fast however long the history is.
    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>, ClientError> {
        self.run(|conn| {
            let mut found: Vec<(HistoryQuery, i64)> = Vec::new();
            {
                let mut users = conn.prepare_cached(
                    "SELECT peer, MAX(id) FROM messages WHERE peer IS NOT NULL GROUP BY peer",
                )?;
                for row in users.query_map([], |r| Ok((user_column(r, 0)?, r.get(1)?)))? {
                    let (user, last) = row?;
                    found.push((HistoryQuery::With(user), last));
                }
                let mut groups = conn.prepare_cached(
                    "SELECT group_id, MAX(id) FROM messages WHERE group_id IS NOT NULL
                     GROUP BY group_id",
                )?;
                for row in groups.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
                    let (group, last) = row?;
                    found.push((HistoryQuery::Group(GroupId(group)), last));
                }
            }
            found.sort_by_key(|&(_, last)| std::cmp::Reverse(last));
            let mut summaries = Vec::with_capacity(found.len());
            for (query, last_id) in found {
                let unread = unread(conn, &query)?;
                summaries.push(ConversationSummary {
                    query,
                    last_id,
                    unread,
                });
            }
            Ok(summaries)
        })
        .await
    }

    /// Marks the conversation `query` read through row `through`: its received messages
    /// up to there no longer count as unread. A mark only moves forward.
    pub async fn mark_read(&self, query: HistoryQuery, through: i64) -> Result<(), ClientError> {
        let Some(key) = query.mark_key() else {
            return Ok(());
        };
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO read_marks (conversation, through) VALUES (?1, ?2)
                 ON CONFLICT (conversation) DO UPDATE SET through = MAX(through, ?2)",
            )?
            .execute(params![key, through])?;
            Ok(())
        })
        .await
    }

    /// The rows matching `query` and `extra` (whose argument is `?2`), newest first when
    /// limited, else oldest first.
    async fn select(
        &self,
        query: HistoryQuery,
        extra: &'static str,
        extra_arg: Option<i64>,
        limit: Option<i64>,
    ) -> Result<Vec<HistoryEntry>, ClientError> {
        self.run(move |conn| {
            let (filter, arg) = query.filter();
            let order = match limit {
                Some(limit) => format!("ORDER BY id DESC LIMIT {limit}"),
                None => "ORDER BY id".to_owned(),
            };
            let sql = format!("{COLUMNS} WHERE {filter} {extra} {order}");
            let mut stmt = conn.prepare_cached(&sql)?;
            let arg = arg.unwrap_or(rusqlite::types::Value::Null);
            let rows = match extra_arg {
                Some(extra_arg) => stmt.query_map(params![arg, extra_arg], row_to_entry)?,
                None if query == HistoryQuery::All => stmt.query_map([], row_to_entry)?,
                None => stmt.query_map([arg], row_to_entry)?,
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

/// The columns of a [`HistoryEntry`], in [`row_to_entry`]'s order.
const COLUMNS: &str = "SELECT id, outgoing, sender, peer, group_id, sent_at, received_at, \
                       is_text, data, read, delivery, refusal FROM messages";

/// The received messages of `query` after its read mark.
fn unread(conn: &Connection, query: &HistoryQuery) -> Result<u64, rusqlite::Error> {
    let (filter, arg) = match query {
        // Only direct messages have a peer: without the test of `group_id`, the count
        // reads the index of received messages alone.
        HistoryQuery::With(user) => ("peer = ?1", Some(user.as_str().to_owned().into())),
        other => other.filter(),
    };
    let sql = format!(
        "SELECT COUNT(*) FROM messages WHERE {filter} AND outgoing = 0 AND id > COALESCE(
             (SELECT through FROM read_marks WHERE conversation = ?2), 0)"
    );
    let key = query.mark_key();
    let arg = arg.unwrap_or(rusqlite::types::Value::Null);
    let n: i64 = conn
        .prepare_cached(&sql)?
        .query_row(params![arg, key], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Inserts a row; a numbered row already recorded (same sequence number, sender and
/// timestamp) is not inserted again, and its row number comes back with `false`.
fn insert_row(
    conn: &Connection,
    row: &Row,
    recorded_at: Timestamp,
) -> Result<(i64, bool), rusqlite::Error> {
    let (delivery, refusal) = match row.delivery.map(DeliveryState::columns) {
        Some((delivery, refusal)) => (Some(delivery), refusal),
        None => (None, None),
    };
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO messages
                 (outgoing, sender, peer, group_id, sent_at, received_at, is_text, data,
                  read, seq, client_id, delivery, refusal)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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
            row.client_id,
            delivery,
            refusal,
        ])?;
    if inserted == 1 {
        return Ok((conn.last_insert_rowid(), true));
    }
    let known = conn
        .prepare_cached("SELECT id FROM messages WHERE seq = ?1 AND sender = ?2 AND sent_at = ?3")?
        .query_row(params![row.seq, row.sender.as_str(), row.sent_at.0], |r| {
            r.get(0)
        })?;
    Ok((known, false))
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
    client_id: Option<i64>,
    delivery: Option<DeliveryState>,
}

impl Row {
    /// A message this device sent.
    fn sent(entry: SentEntry, client_id: Option<i64>, delivery: DeliveryState) -> Row {
        let (peer, group) = match entry.to {
            Recipient::User(user) => (Some(user), None),
            Recipient::Group(group) => (None, Some(group)),
        };
        Row {
            outgoing: true,
            sender: entry.sender,
            peer,
            group,
            sent_at: entry.sent_at,
            kind: entry.kind,
            data: entry.data,
            read: true,
            seq: None,
            client_id,
            delivery: Some(delivery),
        }
    }
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
        delivery: DeliveryState::from_columns(row.get(10)?, row.get(11)?),
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
    async fn a_sent_message_is_pending_until_the_answer_and_then_stored_or_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let history = History::open(dir.path().join("h.sqlite3")).await?;
        let stored = history
            .record_pending(sent(Recipient::User(user("bob")), "to bob"), 11)
            .await?;
        let refused = history
            .record_pending(sent(Recipient::User(user("nobody")), "to nobody"), 12)
            .await?;
        history.record(text("bob", None, "hi")).await?;
        let states = |entries: Vec<HistoryEntry>| -> Vec<Option<DeliveryState>> {
            entries.into_iter().map(|e| e.delivery).collect()
        };
        assert_eq!(
            states(history.query(HistoryQuery::All).await?),
            [
                Some(DeliveryState::Pending),
                Some(DeliveryState::Pending),
                None
            ]
        );

        assert_eq!(history.settle(11, Delivery::Stored).await?, Some(stored));
        let refusal = Delivery::Refused(SendOutcome::UnknownRecipient);
        assert_eq!(history.settle(12, refusal).await?, Some(refused));
        assert_eq!(history.settle(13, Delivery::Stored).await?, None);
        assert_eq!(
            states(history.query(HistoryQuery::All).await?),
            [
                Some(DeliveryState::Stored),
                Some(DeliveryState::Refused(SendOutcome::UnknownRecipient)),
                None
            ]
        );

        // Sent again under the same id: the same row, pending again.
        let again = history
            .record_pending(sent(Recipient::User(user("nobody")), "to nobody"), 12)
            .await?;
        assert_eq!(again, refused);
        assert_eq!(history.count().await?, 3);
        let to_nobody = history.query(HistoryQuery::With(user("nobody"))).await?;
        assert_eq!(states(to_nobody), [Some(DeliveryState::Pending)]);

        // A server that does not confirm.
        history
            .record_sent(sent(Recipient::Group(GroupId(7)), "team"))
            .await?;
        assert_eq!(
            states(history.query(HistoryQuery::Group(GroupId(7))).await?),
            [Some(DeliveryState::Unconfirmed)]
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_unanswered_messages_come_back_to_be_sent_again_under_their_ids() -> TestResult {
        let dir = tempfile::tempdir()?;
        let history = History::open(dir.path().join("h.sqlite3")).await?;
        let first = history
            .record_pending(sent(Recipient::User(user("bob")), "one"), 1)
            .await?;
        history
            .record_pending(sent(Recipient::User(user("bob")), "two"), 2)
            .await?;
        let third = history
            .record_pending(sent(Recipient::Group(GroupId(7)), "three"), 3)
            .await?;
        history.settle(2, Delivery::Stored).await?;
        history.record(text("bob", None, "in")).await?;

        let unanswered = history.unanswered(Timestamp(0)).await?;
        assert_eq!(
            unanswered,
            [
                (
                    first,
                    Outgoing {
                        client_id: 1,
                        ..Outgoing::text(&user("bob"), "one")
                    }
                ),
                (
                    third,
                    Outgoing {
                        client_id: 3,
                        ..Outgoing::group_text(GroupId(7), "three")
                    }
                ),
            ]
        );
        // Only those recorded since a time.
        let later = Timestamp(crate::now().0 + 60_000);
        assert!(history.unanswered(later).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_pending_message_stays_pending_across_a_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("h.sqlite3");
        History::open(&path)
            .await?
            .record_pending(sent(Recipient::User(user("bob")), "lost?"), 5)
            .await?;
        let history = History::open(&path).await?;
        let all = history.query(HistoryQuery::All).await?;
        assert_eq!(all[0].delivery, Some(DeliveryState::Pending));
        // The answer on a later connection (a resend with the same id) still settles it.
        history.settle(5, Delivery::Stored).await?;
        let all = history.query(HistoryQuery::All).await?;
        assert_eq!(all[0].delivery, Some(DeliveryState::Stored));
        Ok(())
    }

    #[tokio::test]
    async fn pages_read_a_conversation_from_the_end_backwards() -> TestResult {
        let dir = tempfile::tempdir()?;
        let history = History::open(dir.path().join("h.sqlite3")).await?;
        for i in 0..10 {
            history.record(text("bob", None, &format!("b{i}"))).await?;
            history
                .record(text("carol", None, &format!("c{i}")))
                .await?;
        }
        let bob = HistoryQuery::With(user("bob"));
        let bodies = |v: &[HistoryEntry]| -> Vec<String> {
            v.iter()
                .map(|e| String::from_utf8_lossy(&e.data).into_owned())
                .collect()
        };
        let newest = history.page(bob.clone(), None, 3).await?;
        assert_eq!(bodies(&newest), ["b7", "b8", "b9"]);
        let older = history.page(bob.clone(), Some(newest[0].id), 3).await?;
        assert_eq!(bodies(&older), ["b4", "b5", "b6"]);
        let rest = history.page(bob.clone(), Some(older[0].id), 100).await?;
        assert_eq!(rest.len(), 4);
        let between = history.range(bob.clone(), rest[2].id, older[1].id).await?;
        assert_eq!(bodies(&between), ["b2", "b3", "b4"]);
        let all = history.page(HistoryQuery::All, None, 2).await?;
        assert_eq!(bodies(&all), ["b9", "c9"]);
        Ok(())
    }

    #[tokio::test]
    async fn find_returns_the_rows_of_a_conversation_holding_the_text_in_either_case() -> TestResult
    {
        let dir = tempfile::tempdir()?;
        let history = History::open(dir.path().join("h.sqlite3")).await?;
        let lunch = history.record(text("bob", None, "Lunch at 1?")).await?;
        history.record(text("bob", None, "no")).await?;
        history.record(text("carol", None, "lunch?")).await?;
        let mine = history
            .record_sent(sent(Recipient::User(user("bob")), "yes, LUNCH"))
            .await?;
        assert_eq!(
            history
                .find(HistoryQuery::With(user("bob")), "lunch")
                .await?,
            [lunch, mine]
        );
        assert!(
            history
                .find(HistoryQuery::With(user("bob")), "dinner")
                .await?
                .is_empty()
        );
        Ok(())
    }

    #[tokio::test]
    async fn conversations_count_the_messages_received_after_their_read_mark() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("h.sqlite3");
        let history = History::open(&path).await?;
        let first = history.record(text("bob", None, "1")).await?;
        history.record(text("bob", None, "2")).await?;
        history
            .record_sent(sent(Recipient::User(user("bob")), "mine"))
            .await?;
        let team = history.record(text("carol", Some(7), "team")).await?;
        history
            .mark_read(HistoryQuery::With(user("bob")), first)
            .await?;
        // A mark never moves back.
        history
            .mark_read(HistoryQuery::With(user("bob")), 0)
            .await?;
        drop(history);

        let history = History::open(&path).await?;
        let summaries = history.conversations().await?;
        assert_eq!(
            summaries,
            [
                ConversationSummary {
                    query: HistoryQuery::Group(GroupId(7)),
                    last_id: team,
                    unread: 1
                },
                ConversationSummary {
                    query: HistoryQuery::With(user("bob")),
                    last_id: team - 1,
                    unread: 1
                },
            ]
        );
        history
            .mark_read(HistoryQuery::Group(GroupId(7)), team)
            .await?;
        assert_eq!(history.conversations().await?[0].unread, 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_version_3_history_reads_its_sent_rows_as_unconfirmed_and_everything_as_read()
    -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("h.sqlite3");
        {
            let mut conn = Connection::open(&path)?;
            let tx = conn.transaction()?;
            for step in &MIGRATIONS[..3] {
                tx.execute_batch(step)?;
            }
            tx.execute_batch(
                "PRAGMA user_version = 3;
                 INSERT INTO messages (sender, peer, group_id, sent_at, received_at, is_text,
                                       data, read, outgoing)
                     VALUES ('bob', 'bob', NULL, 1, 1, 1, CAST('hi' AS BLOB), 0, 0),
                            ('alice', 'bob', NULL, 2, 2, 1, CAST('yo' AS BLOB), 1, 1);",
            )?;
            tx.commit()?;
        }
        let history = History::open(&path).await?;
        let all = history.query(HistoryQuery::All).await?;
        assert_eq!(
            all.iter().map(|e| e.delivery).collect::<Vec<_>>(),
            [None, Some(DeliveryState::Unconfirmed)]
        );
        assert_eq!(history.conversations().await?[0].unread, 0);
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
