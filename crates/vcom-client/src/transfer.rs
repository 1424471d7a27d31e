//! File transfers (packets 268-274): sending a file from disk in 1024-byte chunks, and
//! the handle to answer an incoming offer.
//!
//! Sending runs in its own task that reads the file incrementally and writes chunks
//! straight to the connection's bounded send queue, so memory does not grow with the
//! file and a slow server slows the reading down. The session routes the server's
//! answers (269, 272, 270) to it. Receiving is done by the session itself (see
//! `session.rs`); this module only holds the application's handle for an offer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use vcom_protocol::{
    AbortReason, ClientPacket, FileChunk, FileSize, FileTransferAbort, FileTransferComplete,
    FileTransferRequest, Limits, TransferId, UserId,
};

use crate::ClientError;
use crate::event::TransferOutcome;
use crate::file_name::{UnsafeFileName, numbered, sanitize};
use crate::session::Command;

/// How far an outgoing transfer has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The identifier the server gave the transfer, once it has (269).
    pub transfer: Option<TransferId>,
    /// Bytes handed to the connection so far.
    pub done: u64,
    /// The file's size.
    pub total: u64,
}

/// The server's word on an outgoing transfer, routed by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// 272: the recipient accepted; start sending.
    Accepted,
    /// 270: the transfer is over.
    Aborted(AbortReason),
}

/// The sending side of a file transfer: watch its progress, cancel it, await its end.
///
/// Dropping the handle does not cancel the transfer.
#[derive(Debug)]
pub struct TransferHandle {
    progress: watch::Receiver<Progress>,
    result: oneshot::Receiver<Result<TransferOutcome, ClientError>>,
    cancel: CancellationToken,
}

impl TransferHandle {
    /// The latest progress.
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Waits for the progress to change; `None` once the transfer has ended.
    pub async fn progress_changed(&mut self) -> Option<Progress> {
        self.progress.changed().await.ok()?;
        Some(*self.progress.borrow_and_update())
    }

    /// Cancels the transfer: the server is told (270 reason 8) once the transfer has an
    /// identifier, and [`TransferHandle::finish`] returns `Aborted(Cancelled)`.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits for the end: `Completed` when every byte was handed to the server,
    /// `Aborted` with the reason when the recipient declined or something broke.
    pub async fn finish(self) -> Result<TransferOutcome, ClientError> {
        self.result.await.map_err(|_| ClientError::Closed)?
    }
}

/// What an outgoing transfer needs from the client.
pub(crate) struct Outgoing {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) out: mpsc::Sender<ClientPacket>,
    /// One permit: the protocol allows one 268 awaiting its 269 per connection.
    pub(crate) request_slot: Arc<Semaphore>,
}

/// Opens `path`, checks that it can be sent, and starts sending it in a new task.
pub(crate) async fn start(
    ctx: Outgoing,
    recipient: UserId,
    path: &Path,
    limits: &Limits,
) -> Result<TransferHandle, ClientError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            ClientError::InvalidInput(format!(
                "{}: the file name must be valid UTF-8",
                path.display()
            ))
        })?
        .to_owned();
    if name.len() > limits.max_file_name_len {
        return Err(ClientError::InvalidInput(format!(
            "{name}: the file name is longer than {} bytes",
            limits.max_file_name_len
        )));
    }
    let file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    let size = FileSize::new(len).ok_or_else(|| {
        ClientError::InvalidInput(format!(
            "{}: {len} bytes; a file must hold 1 to {} bytes",
            path.display(),
            i32::MAX
        ))
    })?;
    let (progress_tx, progress) = watch::channel(Progress {
        transfer: None,
        done: 0,
        total: size.bytes(),
    });
    let (result_tx, result) = oneshot::channel();
    let cancel = CancellationToken::new();
    let request = FileTransferRequest {
        recipient,
        size,
        name,
    };
    let task = Sending {
        ctx,
        file,
        path: path.to_owned(),
        progress: progress_tx,
        cancel: cancel.clone(),
    };
    tokio::spawn(async move {
        let outcome = task.run(request).await;
        let _ = result_tx.send(outcome);
    });
    Ok(TransferHandle {
        progress,
        result,
        cancel,
    })
}

struct Sending {
    ctx: Outgoing,
    file: tokio::fs::File,
    path: PathBuf,
    progress: watch::Sender<Progress>,
    cancel: CancellationToken,
}

impl Sending {
    async fn run(mut self, request: FileTransferRequest) -> Result<TransferOutcome, ClientError> {
        let (transfer, mut signals) = self.request(request).await?;
        self.progress.send_modify(|p| p.transfer = Some(transfer));
        let outcome = self.transfer(transfer, &mut signals).await;
        // The session keeps routing state for the transfer until told to forget it.
        let _ = self
            .ctx
            .commands
            .send(Command::ForgetOutgoing(transfer))
            .await;
        let completed = matches!(outcome, Ok(TransferOutcome::Completed { .. }));
        if self.cancel.is_cancelled() && !completed {
            self.abort(transfer, AbortReason::Cancelled).await;
        }
        outcome
    }

    /// Sends the 268 and waits for its 269, holding the connection's single request
    /// slot so no other 268 is sent meanwhile.
    async fn request(
        &self,
        request: FileTransferRequest,
    ) -> Result<(TransferId, mpsc::Receiver<Signal>), ClientError> {
        let _slot = self
            .ctx
            .request_slot
            .acquire()
            .await
            .map_err(|_| ClientError::Closed)?;
        let (reply, answer) = oneshot::channel();
        self.ctx
            .commands
            .send(Command::RequestTransfer { request, reply })
            .await
            .map_err(|_| ClientError::Closed)?;
        answer.await.map_err(|_| ClientError::Closed)
    }

    async fn transfer(
        &mut self,
        transfer: TransferId,
        signals: &mut mpsc::Receiver<Signal>,
    ) -> Result<TransferOutcome, ClientError> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => {
                return Ok(TransferOutcome::Aborted(AbortReason::Cancelled));
            }
            signal = signals.recv() => match signal {
                Some(Signal::Accepted) => {}
                Some(Signal::Aborted(reason)) => return Ok(TransferOutcome::Aborted(reason)),
                None => return Err(ClientError::Closed),
            },
        }
        let total = self.progress.borrow().total;
        let mut done = 0u64;
        let mut buf = [0u8; Limits::MAX_CHUNK_LEN];
        while done < total {
            let want = usize::try_from((total - done).min(buf.len() as u64)).unwrap_or(buf.len());
            let n = read_full(&mut self.file, &mut buf[..want]).await?;
            if n < want {
                self.abort(transfer, AbortReason::Cancelled).await;
                return Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} became shorter while it was sent", self.path.display()),
                )));
            }
            let chunk = ClientPacket::from(FileChunk {
                transfer,
                data: Bytes::copy_from_slice(&buf[..n]),
            });
            // A 270 that arrived meanwhile ends the transfer before more data is sent;
            // a repeated 272 changes nothing.
            match signals.try_recv() {
                Ok(Signal::Aborted(reason)) => return Ok(TransferOutcome::Aborted(reason)),
                Ok(Signal::Accepted) | Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => return Err(ClientError::Closed),
            }
            tokio::select! {
                () = self.cancel.cancelled() => {
                    return Ok(TransferOutcome::Aborted(AbortReason::Cancelled));
                }
                sent = self.ctx.out.send(chunk) => sent.map_err(|_| ClientError::Closed)?,
            }
            done += n as u64;
            self.progress.send_modify(|p| p.done = done);
        }
        self.ctx
            .out
            .send(FileTransferComplete { transfer }.into())
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(TransferOutcome::Completed {
            path: self.path.clone(),
        })
    }

    async fn abort(&self, transfer: TransferId, reason: AbortReason) {
        let _ = self
            .ctx
            .out
            .send(FileTransferAbort { transfer, reason }.into())
            .await;
    }
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// An offer of a file (271): accept it into a directory or decline it.
///
/// Dropping an offer without answering declines it.
#[derive(Debug)]
pub struct FileOffer {
    pub(crate) sender: UserId,
    pub(crate) size: u64,
    pub(crate) offered_name: String,
    pub(crate) transfer: TransferId,
    pub(crate) commands: Option<mpsc::Sender<Command>>,
}

/// Where and how an accepted file is saved.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub(crate) dir: PathBuf,
    pub(crate) name: String,
    pub(crate) replace: bool,
}

impl FileOffer {
    /// Who offers the file.
    pub fn sender(&self) -> &UserId {
        &self.sender
    }

    /// The announced size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The transfer's identifier.
    pub fn transfer(&self) -> TransferId {
        self.transfer
    }

    /// The file name exactly as the sender gave it: never use it as a path.
    pub fn offered_name(&self) -> &str {
        &self.offered_name
    }

    /// The name the file will be saved under by [`FileOffer::accept`], or why the
    /// offered name cannot be used (then use [`FileOffer::accept_as`]).
    pub fn file_name(&self) -> Result<String, UnsafeFileName> {
        sanitize(&self.offered_name)
    }

    /// Accepts the file into `dir` (created if missing) under its sanitised name. An
    /// existing file is never overwritten: the file is saved as `name (1).ext`,
    /// `name (2).ext`, ... instead. Progress and the end arrive as events.
    ///
    /// ```no_run
    /// # async fn demo(mut events: vcom_client::EventStream) -> Result<(), vcom_client::ClientError> {
    /// use vcom_client::Event;
    ///
    /// while let Some(event) = events.next().await {
    ///     match event {
    ///         Event::FileOffer(offer) if offer.size() <= 10 << 20 => offer.accept("downloads").await?,
    ///         Event::FileOffer(offer) => offer.decline().await?,
    ///         Event::TransferFinished { transfer, outcome } => println!("{transfer}: {outcome:?}"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn accept(self, dir: impl Into<PathBuf>) -> Result<(), ClientError> {
        let name = self.file_name()?;
        self.answer_accept(dir.into(), name, false).await
    }

    /// Accepts the file into `dir` under `name` (sanitised too); with `replace`, an
    /// existing file of that name is replaced when the transfer completes.
    pub async fn accept_as(
        self,
        dir: impl Into<PathBuf>,
        name: &str,
        replace: bool,
    ) -> Result<(), ClientError> {
        let name = sanitize(name)?;
        self.answer_accept(dir.into(), name, replace).await
    }

    /// Declines the file (270 reason 0).
    pub async fn decline(mut self) -> Result<(), ClientError> {
        let commands = self.commands.take().ok_or(ClientError::Closed)?;
        commands
            .send(Command::Decline(self.transfer))
            .await
            .map_err(|_| ClientError::Closed)
    }

    async fn answer_accept(
        mut self,
        dir: PathBuf,
        name: String,
        replace: bool,
    ) -> Result<(), ClientError> {
        let commands = self.commands.take().ok_or(ClientError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let to = Destination { dir, name, replace };
        commands
            .send(Command::Accept {
                transfer: self.transfer,
                to,
                reply,
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        answer.await.map_err(|_| ClientError::Closed)?
    }
}

impl Drop for FileOffer {
    fn drop(&mut self) {
        if let Some(commands) = self.commands.take() {
            // Best effort: with a full queue the server's idle timeout ends the offer.
            let _ = commands.try_send(Command::Decline(self.transfer));
        }
    }
}

/// Moves a fully received temporary file to `dir/name` without ever overwriting an
/// existing file (unless `replace`): on a clash the next free `name (n).ext` is taken.
///
/// A hard link fails atomically when the target exists, so no check-then-rename race
/// can clobber a file; on file systems without hard links it falls back to exactly
/// that check and rename. Blocking: run it on a blocking thread.
pub(crate) fn place(temp: &Path, to: &Destination) -> std::io::Result<PathBuf> {
    if to.replace {
        let target = to.dir.join(&to.name);
        std::fs::rename(temp, &target)?;
        return Ok(target);
    }
    for n in 0..10_000u32 {
        let target = match n {
            0 => to.dir.join(&to.name),
            n => to.dir.join(numbered(&to.name, n)),
        };
        match std::fs::hard_link(temp, &target) {
            Ok(()) => {
                std::fs::remove_file(temp)?;
                return Ok(target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) if target.symlink_metadata().is_err() => {
                std::fs::rename(temp, &target)?;
                return Ok(target);
            }
            Err(_) => continue,
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("no free name for {} in {}", to.name, to.dir.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn dest(dir: &Path, name: &str, replace: bool) -> Destination {
        Destination {
            dir: dir.to_owned(),
            name: name.to_owned(),
            replace,
        }
    }

    #[test]
    fn a_received_file_never_overwrites_an_existing_one() -> TestResult {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a.txt"), b"old")?;
        let temp = dir.path().join(".part");
        std::fs::write(&temp, b"new")?;
        let placed = place(&temp, &dest(dir.path(), "a.txt", false))?;
        assert_eq!(placed, dir.path().join("a (1).txt"));
        assert_eq!(std::fs::read(dir.path().join("a.txt"))?, b"old");
        assert_eq!(std::fs::read(&placed)?, b"new");
        assert!(!temp.exists());
        Ok(())
    }

    #[test]
    fn replacing_is_done_only_when_asked() -> TestResult {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a.txt"), b"old")?;
        let temp = dir.path().join(".part");
        std::fs::write(&temp, b"new")?;
        let placed = place(&temp, &dest(dir.path(), "a.txt", true))?;
        assert_eq!(placed, dir.path().join("a.txt"));
        assert_eq!(std::fs::read(&placed)?, b"new");
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_in_the_target_directory_is_not_followed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let outside = tempfile::tempdir()?;
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"keep")?;
        std::os::unix::fs::symlink(&victim, dir.path().join("a.txt"))?;
        let temp = dir.path().join(".part");
        std::fs::write(&temp, b"evil")?;
        let placed = place(&temp, &dest(dir.path(), "a.txt", false))?;
        assert_eq!(placed, dir.path().join("a (1).txt"));
        assert_eq!(std::fs::read(&victim)?, b"keep");
        Ok(())
    }
}
