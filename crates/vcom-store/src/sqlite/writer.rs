//! The writer thread: the only owner of the read-write connection, with group commit.
//!
//! Callers queue a request on a bounded channel and await a oneshot. The thread takes
//! every request already queued (up to `max_batch`), runs each inside its own SAVEPOINT
//! of one transaction, commits once, and only then answers. A request that fails rolls
//! back its own savepoint and nothing else. This thread never runs on the async runtime
//! and never answers before the commit that made a change durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::{StoreError, StoreResult};

/// A queued write: its operation and the caller waiting for the result.
trait Request: Send {
    /// Runs inside the open transaction and returns how to answer once the batch's fate
    /// is known, and whether the transaction is still sound (false when a savepoint
    /// could not be rolled back: the batch must then be abandoned whole).
    fn run(self: Box<Self>, conn: &Connection) -> (Reply, bool);
    /// Answers without running: the batch's transaction could not begin.
    fn refuse(self: Box<Self>, error: &StoreError);
}

/// Sends a request's result: after the commit (`None`) or after it failed (`Some`).
type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

struct Write<T, F> {
    op: F,
    answer: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Request for Write<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (Reply, bool) {
        let Write { op, answer } = *self;
        let (result, sound) = in_savepoint(conn, op);
        let reply: Reply = Box::new(move |batch_error: Option<&StoreError>| {
            let result = match (result, batch_error) {
                (Ok(_), Some(error)) => Err(replicate(error)),
                (result, _) => result,
            };
            // The caller may have stopped waiting; the outcome stands regardless.
            let _ = answer.send(result);
        });
        (reply, sound)
    }

    fn refuse(self: Box<Self>, error: &StoreError) {
        let _ = self.answer.send(Err(replicate(error)));
    }
}

type Job = Box<dyn Request>;

enum Command {
    Run(Job),
    /// Finish what was queued before, then stop.
    Close(oneshot::Sender<()>),
}

/// The handle callers use; the thread lives until [`Writer::close`] or the last handle
/// is dropped (then it finishes the queued requests and exits on its own).
pub(crate) struct Writer {
    queue: mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

/// Batches and requests the thread has run, to show group commit at work.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    requests: AtomicU64,
}

/// How much group commit is sharing: `requests / batches` is the mean batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Write transactions run (each one `fsync` with [`super::Synchronous::Full`]).
    pub batches: u64,
    /// Write requests run in them.
    pub requests: u64,
}

impl Writer {
    /// Starts the thread that owns `conn`.
    pub(crate) fn start(
        conn: Connection,
        max_batch: usize,
        queue_capacity: usize,
    ) -> StoreResult<Self> {
        let (queue, commands) = mpsc::channel(queue_capacity.max(1));
        let max_batch = max_batch.max(1);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("vcom-store-writer".into())
            .spawn(move || run(conn, commands, max_batch, &thread_counters))
            .map_err(|e| StoreError::Migration(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            queue,
            thread: Mutex::new(Some(thread)),
            counters,
        })
    }

    /// Batches and requests run so far.
    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
        }
    }

    /// Runs `op` in the next batch and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(Write { op, answer });
        self.queue
            .send(Command::Run(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        // A dropped answer means the thread stopped before reaching this request.
        answered.await.map_err(|_| StoreError::Closed)?
    }

    /// Commits everything queued so far, stops the thread and waits for it to end.
    /// Later writes fail with [`StoreError::Closed`]. Calling it again does nothing.
    pub(crate) async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Command::Close(done)).await.is_ok() {
            let _ = finished.await;
        }
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // The thread has answered Close and is returning; joining is short, but it
            // is still a blocking call, so it stays off the runtime.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Runs `op` inside `SAVEPOINT request`, keeping its changes only when it succeeds.
/// The flag is false when the savepoint could not be closed: the transaction may then
/// hold part of a failed request and must not be committed.
fn in_savepoint<T>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> StoreResult<T>,
) -> (StoreResult<T>, bool) {
    let step = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    if let Err(e) = step("SAVEPOINT request") {
        // Nothing ran, nothing to undo.
        return (Err(e.into()), true);
    }
    match op(conn) {
        Ok(value) => match step("RELEASE request") {
            Ok(_) => (Ok(value), true),
            Err(e) => (Err(e.into()), false),
        },
        Err(error) => {
            let undone = step("ROLLBACK TO request").and_then(|_| step("RELEASE request"));
            (Err(error), undone.is_ok())
        }
    }
}

/// The thread's loop: one batch per wake-up until closed or every handle is gone.
fn run(
    conn: Connection,
    mut commands: mpsc::Receiver<Command>,
    max_batch: usize,
    counters: &Counters,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    let mut replies: Vec<Reply> = Vec::with_capacity(max_batch);
    loop {
        let Some(first) = commands.blocking_recv() else {
            return;
        };
        let mut close = None;
        match first {
            Command::Run(job) => jobs.push(job),
            Command::Close(done) => close = Some(done),
        }
        // Group commit: take what is already waiting, never wait for more.
        while close.is_none() && jobs.len() < max_batch {
            match commands.try_recv() {
                Ok(Command::Run(job)) => jobs.push(job),
                Ok(Command::Close(done)) => close = Some(done),
                Err(_) => break,
            }
        }
        if !jobs.is_empty() {
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters
                .requests
                .fetch_add(jobs.len() as u64, Ordering::Relaxed);
            commit_batch(&conn, &mut jobs, &mut replies);
        }
        if let Some(done) = close {
            // Requests queued after Close are dropped with the receiver: their callers
            // see `Closed`, and nothing of theirs was written.
            drop(commands);
            drop(conn);
            let _ = done.send(());
            return;
        }
    }
}

/// Runs `jobs` in one transaction, commits, and answers every caller.
fn commit_batch(conn: &Connection, jobs: &mut Vec<Job>, replies: &mut Vec<Reply>) {
    let begun = conn
        .prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut s| s.execute([]));
    if let Err(e) = begun {
        let error = StoreError::Sqlite(e);
        tracing::error!(%error, requests = jobs.len(), "store: cannot begin a write transaction");
        for job in jobs.drain(..) {
            job.refuse(&error);
        }
        return;
    }
    let mut sound = true;
    for job in jobs.drain(..) {
        if sound {
            let (reply, still_sound) = job.run(conn);
            replies.push(reply);
            sound = still_sound;
        } else {
            job.refuse(&StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("an earlier request of the same batch broke the transaction".into()),
            )));
        }
    }
    let committed = if sound {
        conn.prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
    } else {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
            Some("a request's savepoint could not be rolled back; batch abandoned".into()),
        ))
    };
    let error = match committed {
        Ok(_) => None,
        Err(e) => {
            // Leave no half-open transaction behind for the next batch.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            let error = StoreError::Sqlite(e);
            tracing::error!(%error, requests = replies.len(), "store: commit failed");
            Some(error)
        }
    };
    for reply in replies.drain(..) {
        reply(error.as_ref());
    }
}

/// A copy of `error` for every caller of a failed batch (errors are not `Clone`).
fn replicate(error: &StoreError) -> StoreError {
    match error {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, message)) => {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        StoreError::Closed => StoreError::Closed,
        other => StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
            Some(other.to_string()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job<T: Send + 'static>(
        op: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> (Job, oneshot::Receiver<StoreResult<T>>) {
        let (answer, answered) = oneshot::channel();
        (Box::new(Write { op, answer }), answered)
    }

    fn insert(conn: &Connection, x: i64) -> StoreResult<()> {
        conn.execute("INSERT INTO t (x) VALUES (?1)", [x])?;
        Ok(())
    }

    #[test]
    fn a_failed_request_is_rolled_back_alone_and_its_batch_commits() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let (a, a_answer) = job(|c| insert(c, 1));
        let (b, b_answer) = job(|c| {
            insert(c, 2)?;
            Err::<(), _>(StoreError::NotFound("on purpose".into()))
        });
        let (c, c_answer) = job(|c| insert(c, 3));

        commit_batch(&conn, &mut vec![a, b, c], &mut Vec::new());

        assert!(a_answer.blocking_recv().unwrap().is_ok());
        assert!(matches!(
            b_answer.blocking_recv().unwrap(),
            Err(StoreError::NotFound(_))
        ));
        assert!(c_answer.blocking_recv().unwrap().is_ok());
        let rows: Vec<i64> = conn
            .prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [1, 3]);
        assert!(conn.is_autocommit(), "no transaction left open");
    }

    #[test]
    fn a_batch_whose_commit_fails_answers_every_request_with_the_error() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE p (id INTEGER PRIMARY KEY);
             CREATE TABLE c (p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        // A deferred foreign key is checked at COMMIT, so the commit itself fails.
        let (a, a_answer) = job(|c| {
            c.execute("INSERT INTO c (p) VALUES (42)", [])?;
            Ok(())
        });
        let (b, b_answer) = job(|c| {
            c.execute("INSERT INTO p (id) VALUES (1)", [])?;
            Ok(())
        });

        commit_batch(&conn, &mut vec![a, b], &mut Vec::new());

        assert!(matches!(
            a_answer.blocking_recv().unwrap(),
            Err(StoreError::Sqlite(_))
        ));
        assert!(matches!(
            b_answer.blocking_recv().unwrap(),
            Err(StoreError::Sqlite(_))
        ));
        let parents: i64 = conn
            .query_row("SELECT count(*) FROM p", [], |r| r.get(0))
            .unwrap();
        assert_eq!(parents, 0, "nothing of a failed batch is kept");
        assert!(conn.is_autocommit());
    }
}
