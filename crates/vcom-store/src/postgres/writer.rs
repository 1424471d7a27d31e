//! The message writer: one task per store that commits queued messages in batches.
//!
//! `store_message` queues the message by the call itself, so one node commits its
//! messages in the order of the calls. The task takes every message already queued (up
//! to `max_batch`) into one transaction that first locks `message_counter`: ids are
//! assigned in order under that lock and the lock is held until the commit, so across
//! every node sharing the database ids grow in commit order. One commit (one WAL flush
//! on the server) is shared by the whole batch, and the counter's lock is taken once
//! per batch instead of once per message.
//!
//! A message that fails must not fail the others: the batch first runs straight in the
//! transaction; when one message fails, the transaction is rolled back (nothing has
//! been answered yet) and the batch replayed with a savepoint per message. Savepoints
//! are not used on the common path: each is a subtransaction, and past 64 of them in
//! one transaction PostgreSQL slows every other session's snapshots.
//!
//! Callers are answered, and their commit hooks run, only after the commit, in commit
//! order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use deadpool_postgres::{Client, GenericClient, Pool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::messages;
use crate::quota::Quotas;
use crate::{NewMessage, OnCommit, StoreError, StoreResult, Stored, WriteStats};

/// A queued message, the caller waiting for it, and its result once run.
struct Job {
    message: NewMessage,
    on_commit: OnCommit,
    answer: oneshot::Sender<StoreResult<Stored>>,
    result: Option<StoreResult<Stored>>,
}

impl Job {
    /// Runs the hook and sends the result: `batch_error` is `None` once the batch
    /// committed, else why it did not (then nothing of the message was kept).
    fn answer(self, batch_error: Option<&StoreError>) {
        let result = match (self.result, batch_error) {
            // Its own failure is the better answer, whatever became of the batch.
            (Some(Err(error)), _) => Err(error),
            (_, Some(error)) => Err(replicate(error)),
            (Some(Ok(value)), None) => Ok(value),
            // Unreachable by construction (a committed batch ran every message), but an
            // answer is owed either way.
            (None, None) => Err(StoreError::Connection("the message was not run".into())),
        };
        (self.on_commit)(&result);
        // The caller may have stopped waiting; the outcome stands regardless.
        let _ = self.answer.send(result);
    }
}

enum Command {
    Run(Box<Job>),
    /// Finish what was queued before, then stop.
    Close(oneshot::Sender<()>),
}

/// Batches and messages the task has committed.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    requests: AtomicU64,
    replayed: AtomicU64,
}

/// The handle `PostgresStore` queues messages on.
pub(crate) struct Writer {
    queue: mpsc::UnboundedSender<Command>,
    task: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl Writer {
    /// Starts the task (on the current tokio runtime).
    pub(crate) fn start(pool: Pool, max_batch: usize, quotas: Quotas) -> Self {
        let (queue, commands) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(
            pool,
            commands,
            max_batch.max(1),
            quotas,
            Arc::clone(&counters),
        ));
        Writer {
            queue,
            task: Mutex::new(Some(task)),
            counters,
        }
    }

    /// Batches and messages run so far.
    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
            replayed: self.counters.replayed.load(Ordering::Relaxed),
        }
    }

    /// Queues `message` now (by this call) and resolves once its fate is known.
    pub(crate) fn store(
        &self,
        message: NewMessage,
        on_commit: OnCommit,
    ) -> impl Future<Output = StoreResult<Stored>> + Send + 'static {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            message,
            on_commit,
            answer,
            result: None,
        };
        let queued = match self.queue.send(Command::Run(Box::new(job))) {
            Ok(()) => true,
            Err(mpsc::error::SendError(command)) => {
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
            answered.await.map_err(|_| StoreError::Closed)?
        }
    }

    /// Commits everything queued so far and stops the task. Idempotent.
    pub(crate) async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Command::Close(done)).is_ok() {
            let _ = finished.await;
        }
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The task's loop: one batch per wake-up until closed or every handle is gone.
async fn run(
    pool: Pool,
    mut commands: mpsc::UnboundedReceiver<Command>,
    max_batch: usize,
    quotas: Quotas,
    counters: Arc<Counters>,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    loop {
        let Some(first) = commands.recv().await else {
            return;
        };
        let mut close = None;
        match first {
            Command::Run(job) => jobs.push(*job),
            Command::Close(done) => close = Some(done),
        }
        // Group commit: take what is already waiting, never wait for more.
        while close.is_none() && jobs.len() < max_batch {
            match commands.try_recv() {
                Ok(Command::Run(job)) => jobs.push(*job),
                Ok(Command::Close(done)) => close = Some(done),
                Err(_) => break,
            }
        }
        if !jobs.is_empty() {
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters
                .requests
                .fetch_add(jobs.len() as u64, Ordering::Relaxed);
            let (error, replayed) = commit_batch(&pool, &mut jobs, quotas).await;
            if replayed {
                counters.replayed.fetch_add(1, Ordering::Relaxed);
            }
            for job in jobs.drain(..) {
                job.answer(error.as_ref());
            }
        }
        if let Some(done) = close {
            // Messages queued after Close are dropped with the receiver: their callers
            // see `Closed`, and nothing of theirs was written.
            drop(commands);
            let _ = done.send(());
            return;
        }
    }
}

/// Runs `jobs` in one transaction and commits: the batch's error if it did not commit,
/// and whether it had to be replayed with savepoints.
async fn commit_batch(pool: &Pool, jobs: &mut [Job], quotas: Quotas) -> (Option<StoreError>, bool) {
    let mut client = match super::client(pool).await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, messages = jobs.len(), "store: no PostgreSQL connection");
            return (Some(error), false);
        }
    };
    match optimistic(&mut client, jobs, quotas).await {
        Ok(true) => (None, false),
        Ok(false) => match careful(&mut client, jobs, quotas).await {
            Ok(()) => (None, true),
            Err(error) => {
                tracing::error!(%error, messages = jobs.len(), "store: commit failed");
                (Some(error), true)
            }
        },
        Err(error) => {
            tracing::error!(%error, messages = jobs.len(), "store: commit failed");
            (Some(error), false)
        }
    }
}

/// Locks the message counter until the commit and returns the next id to assign.
async fn lock_counter(c: &impl GenericClient) -> StoreResult<i64> {
    let last: i64 =
        super::statements::query_one(c, "SELECT last FROM message_counter FOR UPDATE", &[])
            .await?
            .try_get(0)?;
    Ok(last + 1)
}

/// Records the last id assigned.
async fn set_counter(c: &impl GenericClient, next: i64) -> StoreResult<()> {
    super::statements::execute(c, "UPDATE message_counter SET last = $1", &[&(next - 1)]).await?;
    Ok(())
}

/// Whether `stored` took the id it was offered.
fn took_id(stored: &StoreResult<Stored>) -> bool {
    matches!(
        stored,
        Ok(Stored {
            id: Some(_),
            duplicate: false,
            ..
        })
    )
}

/// The fast pass: every message straight in the transaction. `Ok(false)` when a
/// message failed (the transaction is rolled back, nothing was kept).
async fn optimistic(client: &mut Client, jobs: &mut [Job], quotas: Quotas) -> StoreResult<bool> {
    let tx = client.transaction().await?;
    let mut next = lock_counter(&tx).await?;
    for job in jobs.iter_mut() {
        let result = messages::store(&tx, &job.message, quotas, next).await;
        if took_id(&result) {
            next += 1;
        }
        let failed = result.is_err();
        job.result = Some(result);
        if failed {
            tx.rollback().await?;
            return Ok(false);
        }
    }
    set_counter(&tx, next).await?;
    tx.commit().await?;
    Ok(true)
}

/// The careful pass: each message in its own savepoint, so a failing one is rolled
/// back alone.
async fn careful(client: &mut Client, jobs: &mut [Job], quotas: Quotas) -> StoreResult<()> {
    for job in jobs.iter_mut() {
        job.result = None;
    }
    let mut tx = client.transaction().await?;
    let mut next = lock_counter(&tx).await?;
    for job in jobs.iter_mut() {
        let savepoint = tx.savepoint("message").await?;
        let result = messages::store(&savepoint, &job.message, quotas, next).await;
        if result.is_ok() {
            savepoint.commit().await?;
        } else {
            savepoint.rollback().await?;
        }
        if took_id(&result) {
            next += 1;
        }
        job.result = Some(result);
    }
    set_counter(&tx, next).await?;
    tx.commit().await?;
    Ok(())
}

/// A copy of a batch's error for each of its callers (errors are not `Clone`).
fn replicate(error: &StoreError) -> StoreError {
    match error {
        StoreError::Closed => StoreError::Closed,
        other => StoreError::Connection(format!("the batch was not committed: {other}")),
    }
}
