//! The writer thread: the only owner of the read-write connection, with group commit.
//!
//! Callers queue a request on a channel and await a oneshot. The channel holds no more
//! than the callers have in flight, which each bounds (a connection's reader a few
//! hundred messages, every other caller the one request it awaits), and a request is
//! queued by the call itself, so requests commit in the order of the calls. The thread takes
//! every request already queued (up to `max_batch`) into one transaction, commits once,
//! and only then answers. A request that fails must not fail the others, and it must
//! leave nothing behind: the batch is first run *optimistically*, every request straight
//! in the transaction; only if one of them fails is the whole transaction rolled back
//! and the batch replayed with each request inside its own SAVEPOINT, where a failure
//! rolls back that request alone. This thread never runs on the async runtime and never
//! answers before the commit that made a change durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::{StoreError, StoreResult};

/// A queued write: its operation, the caller waiting for the result, and the result
/// once run (kept until the batch's fate is known).
///
/// The operation may run twice (optimistically, then replayed after a rollback), so it
/// must be a deterministic function of the database and what it captured: everything it
/// did the first time is undone by the rollback, including identifiers SQLite assigned.
trait Request: Send {
    /// Runs straight in the open transaction; false when it failed (the transaction may
    /// then hold part of it and must be rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Runs inside its own savepoint, keeping its changes only when it succeeds; false
    /// when the savepoint could not be rolled back (the batch must be abandoned whole).
    fn run_in_savepoint(&mut self, conn: &Connection) -> bool;
    /// Records that it was not run because the transaction was already broken.
    fn skip(&mut self, error: &StoreError);
    /// Sends the result: `batch_error` is `None` once the batch committed, else why it
    /// did not (then nothing of the request was kept).
    fn answer(self: Box<Self>, batch_error: Option<&StoreError>);
}

struct Write<T, F> {
    op: F,
    answer: oneshot::Sender<StoreResult<T>>,
    result: Option<StoreResult<T>>,
    /// Runs with the result before it is sent, on this thread, in batch order.
    then: Option<Then<T>>,
}

/// A hook run with a request's final result, in commit order (see [`Writer::write_then`]).
pub(crate) type Then<T> = Box<dyn FnOnce(&StoreResult<T>) + Send>;

impl<T, F> Request for Write<T, F>
where
    T: Send + 'static,
    F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.op)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn run_in_savepoint(&mut self, conn: &Connection) -> bool {
        let (result, sound) = in_savepoint(conn, &self.op);
        self.result = Some(result);
        sound
    }

    fn skip(&mut self, error: &StoreError) {
        self.result = Some(Err(replicate(error)));
    }

    fn answer(self: Box<Self>, batch_error: Option<&StoreError>) {
        let result = match (self.result, batch_error) {
            // Its own failure is the better answer, whatever became of the batch.
            (Some(Err(error)), _) => Err(error),
            (_, Some(error)) => Err(replicate(error)),
            (Some(Ok(value)), None) => Ok(value),
            // Unreachable by construction (a committed batch ran every request), but an
            // answer is owed either way.
            (None, None) => Err(aborted("the request was not run")),
        };
        if let Some(then) = self.then {
            then(&result);
        }
        // The caller may have stopped waiting; the outcome stands regardless.
        let _ = self.answer.send(result);
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
    queue: mpsc::UnboundedSender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

/// Batches and requests the thread has run, to show group commit at work.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    requests: AtomicU64,
    replayed: AtomicU64,
}

/// How much group commit is sharing: `requests / batches` is the mean batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Write transactions run (each one `fsync` with [`super::Synchronous::Full`]).
    pub batches: u64,
    /// Write requests run in them.
    pub requests: u64,
    /// Batches that had a failing request, so were rolled back and replayed with one
    /// savepoint per request (each counted once in `batches`).
    pub replayed: u64,
}

impl Writer {
    /// Starts the thread that owns `conn`.
    pub(crate) fn start(conn: Connection, max_batch: usize) -> StoreResult<Self> {
        let (queue, commands) = mpsc::unbounded_channel();
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
            replayed: self.counters.replayed.load(Ordering::Relaxed),
        }
    }

    /// Runs `op` in the next batch and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.write_then(op, None).await
    }

    /// Like [`Writer::write`], and runs `then` with the final result on the writer
    /// thread before answering: the hooks of all requests run in the order their
    /// requests were committed.
    ///
    /// The request is queued by this call, not when the returned future is first
    /// polled: requests are committed in the order of the calls. (A caller that keeps
    /// several requests in flight, like a connection's reader, cannot rely on the order
    /// in which its futures are first polled: a set of futures polls a future that
    /// yielded after newer ones.)
    pub(crate) fn write_then<T, F>(
        &self,
        op: F,
        then: Option<Then<T>>,
    ) -> impl Future<Output = StoreResult<T>> + Send + 'static
    where
        T: Send + 'static,
        F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(Write {
            op,
            answer,
            result: None,
            then,
        });
        let queued = match self.queue.send(Command::Run(job)) {
            Ok(()) => true,
            Err(mpsc::error::SendError(command)) => {
                // The thread is gone: the request is answered (and its hook run) here.
                if let Command::Run(job) = command {
                    job.answer(Some(&StoreError::Closed));
                }
                false
            }
        };
        async move {
            if !queued {
                return Err(StoreError::Closed);
            }
            // A dropped answer means the thread stopped before reaching this request.
            answered.await.map_err(|_| StoreError::Closed)?
        }
    }

    /// Commits everything queued so far, stops the thread and waits for it to end.
    /// Later writes fail with [`StoreError::Closed`]. Calling it again does nothing.
    pub(crate) async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Command::Close(done)).is_ok() {
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
    op: impl Fn(&Connection) -> StoreResult<T>,
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
    mut commands: mpsc::UnboundedReceiver<Command>,
    max_batch: usize,
    counters: &Counters,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    let wal = conn
        .path()
        .filter(|p| !p.is_empty())
        .map(|p| std::path::PathBuf::from(format!("{p}-wal")));
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
            if commit_batch(&conn, &mut jobs) == Outcome::Replayed {
                counters.replayed.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(wal) = &wal {
                bound_the_log(&conn, wal);
            }
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

/// Makes sure the log restarts once it passes [`super::schema::LOG_SIZE_LIMIT`].
///
/// Normally it never gets there: past `WRITER_CHECKPOINT_PAGES` the writer's own passive
/// checkpoint copies what the checkpointer thread has not, and the next commit restarts
/// the log. But a passive checkpoint gives up at once when the checkpointer holds the
/// checkpoint lock, and on a busy machine that thread can be held off the CPU for a
/// while, so the log went on growing (120 MB seen in a test). At the limit the writer
/// waits (up to the busy timeout) for a RESTART checkpoint, which leaves the next commit
/// writing the log from its start: the log's size is bounded by construction, at the
/// cost of one pause that only a starved checkpointer causes.
fn bound_the_log(conn: &Connection, wal: &std::path::Path) {
    let Ok(meta) = std::fs::metadata(wal) else {
        return;
    };
    if meta.len() <= super::schema::LOG_SIZE_LIMIT.unsigned_abs() {
        return;
    }
    let result = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match result {
        Ok((0, _, _)) => tracing::debug!(bytes = meta.len(), "store: the log was restarted"),
        Ok((_, log, copied)) => tracing::warn!(
            bytes = meta.len(),
            log,
            copied,
            "store: the log is past its limit and a reader kept it from restarting"
        ),
        Err(error) => tracing::warn!(%error, "store: cannot checkpoint the log"),
    }
}

/// How a batch was run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Every request ran straight in the transaction (or none could begin).
    Optimistic,
    /// A request failed; the batch was rolled back and replayed with savepoints.
    Replayed,
}

/// Runs `jobs` in one transaction, commits, and answers every caller.
///
/// The common batch has no failing request, so it runs without savepoints: a savepoint
/// per request costs two statements and a copy of every page the request touches into
/// the savepoint journal, and a batch of hundreds of messages touches the same few
/// pages hundreds of times. When a request fails, the whole transaction is rolled back
/// (nothing has been answered yet, nothing is lost) and the batch is replayed the
/// careful way, so the outcome is exactly what one savepoint per request gives.
fn commit_batch(conn: &Connection, jobs: &mut Vec<Job>) -> Outcome {
    let mut outcome = Outcome::Optimistic;
    let error = match execute(conn, "BEGIN IMMEDIATE") {
        Err(error) => {
            tracing::error!(%error, requests = jobs.len(), "store: cannot begin a write transaction");
            Some(error)
        }
        Ok(()) => {
            // `all` short-circuits: requests after a failure are not run optimistically.
            let ran = jobs.iter_mut().all(|job| job.run(conn));
            let committed = if ran {
                execute(conn, "COMMIT")
            } else {
                outcome = Outcome::Replayed;
                rollback(conn)
                    .and_then(|()| execute(conn, "BEGIN IMMEDIATE"))
                    .and_then(|()| run_in_savepoints(conn, jobs))
                    .and_then(|()| execute(conn, "COMMIT"))
            };
            match committed {
                Ok(()) => None,
                Err(error) => {
                    // Leave no half-open transaction behind for the next batch.
                    let _ = rollback(conn);
                    tracing::error!(%error, requests = jobs.len(), "store: commit failed");
                    Some(error)
                }
            }
        }
    };
    for job in jobs.drain(..) {
        job.answer(error.as_ref());
    }
    outcome
}

/// The careful pass: each request in its own savepoint, so a failing one is rolled back
/// alone. Fails when a savepoint could not be rolled back: the transaction may then
/// hold part of a failed request and must not be committed.
fn run_in_savepoints(conn: &Connection, jobs: &mut [Job]) -> StoreResult<()> {
    let mut jobs = jobs.iter_mut();
    for job in jobs.by_ref() {
        if !job.run_in_savepoint(conn) {
            let broken = aborted("an earlier request of the same batch broke the transaction");
            for job in jobs {
                job.skip(&broken);
            }
            return Err(aborted(
                "a request's savepoint could not be rolled back; batch abandoned",
            ));
        }
    }
    Ok(())
}

/// Runs one statement of the writer's own (kept in the statement cache).
fn execute(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Rolls back the open transaction, if any: some errors (a full disk, I/O) make SQLite
/// roll it back on its own.
fn rollback(conn: &Connection) -> StoreResult<()> {
    if conn.is_autocommit() {
        return Ok(());
    }
    execute(conn, "ROLLBACK")
}

/// The error of a request or batch given up on.
fn aborted(why: &str) -> StoreError {
    StoreError::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some(why.into()),
    ))
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
        op: impl Fn(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> (Job, oneshot::Receiver<StoreResult<T>>) {
        let (answer, answered) = oneshot::channel();
        let job = Write {
            op,
            answer,
            result: None,
            then: None,
        };
        (Box::new(job), answered)
    }

    fn rows(conn: &Connection) -> Vec<i64> {
        conn.prepare("SELECT x FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
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

        let outcome = commit_batch(&conn, &mut vec![a, b, c]);

        assert_eq!(outcome, Outcome::Replayed);
        assert!(a_answer.blocking_recv().unwrap().is_ok());
        assert!(matches!(
            b_answer.blocking_recv().unwrap(),
            Err(StoreError::NotFound(_))
        ));
        assert!(c_answer.blocking_recv().unwrap().is_ok());
        assert_eq!(rows(&conn), [1, 3]);
        assert!(conn.is_autocommit(), "no transaction left open");
    }

    #[test]
    fn a_batch_without_failures_runs_once_without_savepoints() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let (a, a_answer) = job(|c| insert(c, 1).map(|()| c.last_insert_rowid()));
        let (b, b_answer) = job(|c| insert(c, 2).map(|()| c.last_insert_rowid()));

        let outcome = commit_batch(&conn, &mut vec![a, b]);

        assert_eq!(outcome, Outcome::Optimistic);
        assert_eq!(a_answer.blocking_recv().unwrap().unwrap(), 1);
        assert_eq!(b_answer.blocking_recv().unwrap().unwrap(), 2);
        assert_eq!(rows(&conn), [1, 2]);
        assert!(conn.is_autocommit());
    }

    #[test]
    fn a_replayed_batch_answers_what_the_replay_assigned_and_keeps_no_duplicate() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE)")
            .unwrap();
        // Row ids assigned by the optimistic pass are undone by the rollback, so the
        // replay assigns the same ones again; the answers are the replay's.
        let (a, a_answer) = job(|c| insert(c, 1).map(|()| c.last_insert_rowid()));
        // Fails on a constraint after a partial change of its own.
        let (b, b_answer) = job(|c| {
            insert(c, 5)?;
            insert(c, 1)
        });
        let (c, c_answer) = job(|c| insert(c, 3).map(|()| c.last_insert_rowid()));

        let outcome = commit_batch(&conn, &mut vec![a, b, c]);

        assert_eq!(outcome, Outcome::Replayed);
        assert_eq!(a_answer.blocking_recv().unwrap().unwrap(), 1);
        assert!(matches!(
            b_answer.blocking_recv().unwrap(),
            Err(StoreError::Sqlite(_))
        ));
        assert_eq!(c_answer.blocking_recv().unwrap().unwrap(), 2);
        assert_eq!(rows(&conn), [1, 3], "nothing of the failed request is kept");
        assert!(conn.is_autocommit());
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

        commit_batch(&conn, &mut vec![a, b]);

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
