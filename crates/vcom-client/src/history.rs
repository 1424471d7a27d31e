//! The local message history: every message the client receives is written here before
//! the application sees it (`DESIGN.md` section 7).
//!
//! SQLite calls block, so one dedicated thread owns the connection and runs jobs sent to
//! it over a bounded channel; async callers await the answer and the runtime never
//! blocks. The handle is cheap to clone; the thread ends when the last handle is dropped.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use vcom_protocol::{GroupId, MessageKind, Timestamp, UserId};

use crate::ClientError;

/// How many jobs may wait for the history thread before callers wait in turn.
const QUEUE: usize = 64;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A received message as stored in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Row number: increases in the order messages were received.
    pub id: i64,
    /// Who sent it.
    pub sender: UserId,
    /// The group it was sent to, or `None` for a direct message.
    pub group: Option<GroupId>,
    /// The timestamp the sender gave.
    pub sent_at: Timestamp,
    /// When this device received it (local clock).
    pub received_at: Timestamp,
    /// Text or image.
    pub kind: MessageKind,
    /// The message body, byte-exact.
    pub data: Bytes,
    /// Whether another device of this user had received it before.
    pub read: bool,
}

/// Which messages a history query returns, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryQuery {
    /// Every message.
    All,
    /// The direct messages from this user.
    With(UserId),
    /// The messages sent to this group.
    Group(GroupId),
}

/// A message to record; [`History::record`] stamps the receive time.
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

/// A handle to the history database; see the module documentation.
#[derive(Debug, Clone)]
pub struct History {
    jobs: mpsc::Sender<Job>,
}

impl History {
    /// Opens (creating it with mode 0600 if needed) the history database at `path`.
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
        let received_at = crate::now();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO messages (sender, group_id, sent_at, received_at, is_text, data, read)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    entry.sender.as_str(),
                    entry.group.map(GroupId::get),
                    entry.sent_at.0,
                    received_at.0,
                    entry.kind.is_text(),
                    entry.data.as_ref(),
                    entry.read,
                ],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    /// The messages matching `query`, in the order they were received.
    pub async fn query(&self, query: HistoryQuery) -> Result<Vec<HistoryEntry>, ClientError> {
        self.run(move |conn| {
            const COLUMNS: &str =
                "SELECT id, sender, group_id, sent_at, received_at, is_text, data, read FROM messages";
            let (sql, arg): (String, Option<rusqlite::types::Value>) = match query {
                HistoryQuery::All => (format!("{COLUMNS} ORDER BY id"), None),
                HistoryQuery::With(user) => (
                    format!("{COLUMNS} WHERE group_id IS NULL AND sender = ?1 ORDER BY id"),
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

    /// How many messages the history holds.
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

fn row_to_entry(row: &rusqlite::Row<'_>) -> Result<HistoryEntry, rusqlite::Error> {
    let sender: String = row.get(1)?;
    let sender = UserId::new(sender).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let data: Vec<u8> = row.get(6)?;
    Ok(HistoryEntry {
        id: row.get(0)?,
        sender,
        group: row.get::<_, Option<i32>>(2)?.map(GroupId),
        sent_at: Timestamp(row.get(3)?),
        received_at: Timestamp(row.get(4)?),
        kind: MessageKind::from_is_text(row.get(5)?),
        data: Bytes::from(data),
        read: row.get(7)?,
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
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
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
         CREATE INDEX IF NOT EXISTS messages_by_group ON messages (group_id, id);
         PRAGMA user_version = 1;",
    )?;
    Ok(conn)
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
