//! Read-only connections, so a read never waits behind the writer's transaction.
//!
//! Write-ahead logging lets readers see the last commit while a write is in progress.
//! Each read borrows a connection on a blocking thread (`spawn_blocking`); a semaphore
//! bounds how many run at once, and idle connections are kept for reuse. This module
//! never writes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::schema;
use crate::{StoreError, StoreResult};

/// The pool of read-only connections.
pub(crate) struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    cache_kib: i64,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    closed: AtomicBool,
}

impl Readers {
    /// A pool of at most `size` connections to `path`, opened on first use.
    pub(crate) fn new(path: PathBuf, size: usize, busy_timeout: Duration, cache_kib: i64) -> Self {
        Readers {
            path,
            busy_timeout,
            cache_kib,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
            closed: AtomicBool::new(false),
        }
    }

    /// Runs `op` on a read-only connection, off the async runtime.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let readers = Arc::clone(self);
        let outcome = tokio::task::spawn_blocking(move || {
            if readers.closed.load(Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            let conn = match readers.take_idle() {
                Some(conn) => conn,
                None => {
                    schema::open_reader(&readers.path, readers.busy_timeout, readers.cache_kib)?
                }
            };
            let result = op(&conn);
            readers.put_back(conn);
            result
        })
        .await;
        drop(permit);
        match outcome {
            Ok(result) => result,
            // A panic in a query is a bug: let it surface in the caller.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Refuses further reads and closes the idle connections.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn take_idle(&self) -> Option<Connection> {
        // A panic while holding the lock leaves the Vec intact: poisoning is harmless.
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn put_back(&self, conn: Connection) {
        if !self.closed.load(Ordering::Acquire) {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}
