//! The checkpointer: copies the write-ahead log into the database file on its own
//! thread, so the writer rarely does it.
//!
//! With SQLite's automatic checkpoint alone, the transaction that pushes the log past
//! its threshold copies every page of the log into the database and syncs it before it
//! returns: every few hundred milliseconds under load one commit took tens of
//! milliseconds longer, and every message waiting behind it too (the tail of the
//! latency). Here this thread runs a PASSIVE checkpoint on its own connection a few
//! times a second: PASSIVE never blocks the writer or the readers (it copies what no
//! reader still needs and leaves the rest for the next round), and the writer restarts
//! the log from its start once everything in it has been copied.
//!
//! Under a steady stream of commits that last condition never holds (each round ends
//! behind the writer), so the writer keeps a high automatic-checkpoint threshold
//! (`schema::WRITER_CHECKPOINT_PAGES`): past it, the writer copies the few frames this
//! thread has not reached yet, and its next commit restarts the log. The log stays
//! bounded, and the writer's share of the copying stays small.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{StoreError, StoreResult};

/// How often the log is copied into the database.
const PERIOD: Duration = Duration::from_millis(100);

/// The running checkpointer; stopped (after one last checkpoint) by [`Checkpointer::stop`]
/// or on drop.
/// Failed rounds between two log lines about them: a minute of rounds.
const FAILURES_PER_LOG: u64 = 60_000 / PERIOD.as_millis() as u64;

pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens its own connection to the database the writer has set up and starts the
    /// thread.
    pub(crate) fn start(path: &Path, busy_timeout: Duration) -> StoreResult<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(busy_timeout)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vcom-checkpoint".into())
            .spawn(move || {
                // Failures in a row: the first is logged, then one a minute (a full
                // disk fails every round, ten a second), and the recovery once.
                let mut failing = 0_u64;
                loop {
                    let last = match stopped.recv_timeout(PERIOD) {
                        Err(mpsc::RecvTimeoutError::Timeout) => false,
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
                    };
                    match checkpoint(&conn) {
                        // The writer keeps working and the log only grows until the
                        // next round succeeds; nothing is lost.
                        Err(e) => {
                            if failing.is_multiple_of(FAILURES_PER_LOG) {
                                tracing::warn!(error = %e, failed_rounds = failing + 1, "store: checkpoint failed; retrying");
                            }
                            failing += 1;
                        }
                        Ok(()) if failing > 0 => {
                            tracing::info!(failed_rounds = failing, "store: checkpoints work again");
                            failing = 0;
                        }
                        Ok(()) => {}
                    }
                    if last {
                        return;
                    }
                }
            })
            .map_err(|e| {
                StoreError::Migration(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs one last checkpoint and waits for the thread to end. Blocking; idempotent.
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        // Not joined here: a drop may happen on the async runtime. The thread ends
        // after its last checkpoint on its own.
    }
}

fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_copied_into_the_database_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let writer = Connection::open(&path).unwrap();
        writer
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute_batch(
                "CREATE TABLE t (x);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
                 INSERT INTO t SELECT randomblob(100) FROM n;",
            )
            .unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        let mut checkpointer = Checkpointer::start(&path, Duration::from_secs(5)).unwrap();
        checkpointer.stop();
        assert!(
            size() > before + 50_000,
            "the rows moved from the log into the database file: {before} -> {}",
            size()
        );
    }
}
