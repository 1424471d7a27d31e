//! One task per connection: TLS handshake, login within the timeout, then a reader that
//! handles the client's packets and a writer that drains the session's queues.
//!
//! A protocol violation or a failure here ends this connection only. The reader and the
//! writer share one cancellation token: whichever stops first stops the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::codec::{Framed, FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use vcom_protocol::codec::CodecError;
use vcom_protocol::{
    ClientPacket, ConnectionAccepted, ConnectionDenied, DenyCode, DeviceId, Pong,
    RequestUserListsSync, SendAck, Sequence, ServerPacket, UserId,
};
use vcom_store::{MessageId, Store};

use crate::inbound::{Inbound, Step};
use crate::login::{self, Accepted, Refused};
use crate::server::Shared;
use crate::session::{Outbound, Session, SessionHandle};
use crate::stats::Stats;
use crate::tap::TappedCodec;
use crate::{delivery, groups, sync, transfer};

type Transport = Framed<TlsStream<TcpStream>, TappedCodec>;
type Sink = FramedWrite<tokio::io::WriteHalf<TlsStream<TcpStream>>, TappedCodec>;
type Stream = FramedRead<tokio::io::ReadHalf<TlsStream<TcpStream>>, TappedCodec>;

/// Most file chunks queued for one recipient: the relay's whole buffer per session
/// (64 KiB of file data). 16 was a third slower: each wake-up of the recipient's
/// writer moved fewer chunks (`docs/benchmarks.md`).
pub(crate) const CHUNK_QUEUE: usize = 64;
/// Most stored messages fetched per page of a backlog...
const BACKLOG_PAGE: usize = 2048;
/// ...and most message bytes: a page of large images is held whole while it is written,
/// so its size is bounded by bytes, not only by count.
const BACKLOG_BYTES: usize = 256 * 1024;
/// Most queued packets written before one flush.
const WRITE_BATCH: usize = 64;
/// The reader's buffer: a packet larger than this grows it (the codec reserves what the
/// packet needs).
const READ_BUFFER: usize = 4096;
/// Encoded bytes the writer gathers before the framing layer writes them out on its own.
/// Framed's default (8 KiB) would cut a batch of file chunks (the whole chunk queue,
/// about 17 KiB) into several TLS records and system calls; one is enough.
const WRITE_BUFFER: usize = 32 * 1024;

/// Why a connection ends: logged, never sent (the protocol has no packet for it).
#[derive(Debug)]
pub(crate) enum Close {
    /// The peer broke the protocol.
    Violation(String),
    /// The store failed; the client will retry on reconnect.
    Store(vcom_store::StoreError),
}

impl From<vcom_store::StoreError> for Close {
    fn from(e: vcom_store::StoreError) -> Self {
        Close::Store(e)
    }
}

/// The logged-in connection as the packet handlers see it.
pub(crate) struct Conn<S> {
    pub(crate) shared: Arc<Shared<S>>,
    pub(crate) session: SessionHandle,
}

impl<S> Conn<S> {
    pub(crate) fn user(&self) -> &UserId {
        &self.session.user
    }

    pub(crate) fn device(&self) -> DeviceId {
        self.session.device
    }

    /// Queues a packet for this client.
    pub(crate) async fn reply(&self, packet: impl Into<ServerPacket>) -> Result<(), Close> {
        // Awaiting capacity here slows only this client's own requests down.
        self.session
            .tx
            .send(Outbound::packet(packet))
            .await
            .map_err(|_| Close::Violation("connection closing".into()))
    }
}

/// Serves one accepted TCP connection to its end.
pub(crate) async fn serve<S: Store>(
    shared: Arc<Shared<S>>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
) {
    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
    let _ = tcp.set_nodelay(true);
    set_keepalive(&tcp);
    // Connections still logging in are bounded: a flood of half-open handshakes cannot
    // exhaust memory or file descriptors for everyone else.
    let Some(address_slot) = shared.pending_per_ip.try_take(addr.ip()) else {
        tracing::warn!(%addr, "too many connections from this address still logging in: refused");
        return;
    };
    let Ok(login_permit) = shared.pending_logins.clone().try_acquire_owned() else {
        tracing::warn!(%addr, "too many connections still logging in: refused");
        return;
    };
    let deadline = shared.config.login_timeout();
    // The handshake and login run in their own allocation, freed once they are over,
    // and hand over the connection boxed: this task lives as long as the connection,
    // and its size is that of the largest state it ever holds.
    let login = Box::pin(async {
        let (transport, accepted, key_resets, ext) =
            handshake_and_login(&shared, acceptor, tcp, addr).await?;
        Some(Box::new(LoggedIn {
            transport,
            accepted,
            key_resets,
            ext,
        }))
    });
    let login = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(deadline, login) => r,
    };
    let logged_in = match login {
        Err(_) => {
            tracing::info!(%addr, "no login within {}s: disconnected", deadline.as_secs());
            return;
        }
        Ok(None) => return,
        Ok(Some(ok)) => ok,
    };
    drop(login_permit);
    drop(address_slot);
    run_session(shared, logged_in, addr).await;
}

/// A connection that has just logged in, handed from the login to the session.
struct LoggedIn {
    transport: Transport,
    accepted: Accepted,
    key_resets: u64,
    ext: bool,
}

/// Turns on TCP keep-alive so dead peers of idle sessions are found and dropped.
fn set_keepalive(tcp: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(60))
        .with_interval(std::time::Duration::from_secs(15))
        .with_retries(4);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot enable TCP keep-alive");
    }
}

/// The TLS handshake and the login; on success also the user's key-reset count read
/// before the key was checked (for [`crate::session::Registry::insert`]) and whether the
/// client negotiated the extension set.
async fn handshake_and_login<S: Store>(
    shared: &Shared<S>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Option<(Transport, Accepted, u64, bool)> {
    let handshake = tokio::time::timeout(shared.config.handshake_timeout(), acceptor.accept(tcp));
    let tls = match handshake.await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%addr, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::info!(%addr, "no TLS handshake within {}s: disconnected", shared.config.handshake_timeout().as_secs());
            return None;
        }
    };
    let ext = tls.get_ref().1.alpn_protocol() == Some(vcom_protocol::alpn::EXT);
    let key = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(crate::tls::key_fingerprint);
    // Until it has logged in, a connection may send nothing but a 256: nothing larger
    // is buffered for it.
    let mut transport = Framed::new(
        tls,
        TappedCodec::new(shared.limits.before_login(), shared.tap.clone()),
    );
    let request = match transport.next().await {
        Some(Ok(ClientPacket::ConnectionRequest(request))) => request,
        Some(Ok(other)) => {
            violation(
                shared,
                addr,
                None,
                &format!("{} ({}) before login", other.name(), other.id()),
            );
            return None;
        }
        Some(Err(e)) => {
            log_read_error(shared, addr, None, e);
            return None;
        }
        None => return None,
    };
    // Read before the key is checked: a reset of the key from here on ends the session.
    let key_resets = shared.sessions.key_resets(&request.user);
    match login::check(shared, &request, addr.ip(), key).await {
        Ok(accepted) => {
            transport.codec_mut().set_limits(shared.limits);
            Stats::bump(&shared.stats.logins);
            tracing::info!(
                user = %accepted.user, device = %accepted.device, %addr,
                new_device = request.device == DeviceId::NEW, "login accepted"
            );
            Some((transport, accepted, key_resets, ext))
        }
        Err(refused) => {
            let code = match refused {
                Refused::Denied(code) => {
                    tracing::info!(user = ?request.user, %addr, %code, "login refused");
                    code
                }
                // The login could not be recorded (a full disk, a failing store): the
                // client is told the server cannot take it now, not left with a
                // connection closed mid-handshake.
                Refused::Store(e) => {
                    tracing::error!(user = ?request.user, %addr, error = %e, "login failed: store error; answered 258 code 6");
                    DenyCode::ServerFull
                }
            };
            shared
                .stats
                .denied(u8::try_from(code.code()).unwrap_or(u8::MAX));
            let denied = ServerPacket::from(ConnectionDenied { code });
            let _ = tokio::time::timeout(shared.config.write_timeout(), async {
                let _ = transport.send(denied).await;
                let _ = SinkExt::<ServerPacket>::close(&mut transport).await;
            })
            .await;
            None
        }
    }
}

fn violation<S>(shared: &Shared<S>, addr: SocketAddr, user: Option<&UserId>, what: &str) {
    Stats::bump(&shared.stats.violations);
    tracing::warn!(%addr, user = user.map(|u| u.as_str()), "protocol violation: {what}; closing the connection");
}

fn log_read_error<S>(shared: &Shared<S>, addr: SocketAddr, user: Option<&UserId>, e: CodecError) {
    match e {
        CodecError::Protocol(e) => violation(shared, addr, user, &e.to_string()),
        CodecError::Io(e) => {
            tracing::info!(%addr, user = user.map(|u| u.as_str()), error = %e, "connection error")
        }
    }
}

async fn run_session<S: Store>(shared: Arc<Shared<S>>, logged_in: Box<LoggedIn>, addr: SocketAddr) {
    // Split outside this future (a plain function's locals live on the stack), so the
    // TLS state moves straight from its box into the halves' shared allocation.
    let (sink, stream, accepted, key_resets, ext) = split(&shared, logged_in);
    let (tx, rx) = mpsc::channel(shared.config.outbound_queue);
    let (chunks_tx, chunks_rx) = mpsc::channel(CHUNK_QUEUE);
    let kill = CancellationToken::new();
    let session = SessionHandle::new(Session {
        conn: shared.sessions.next_conn(),
        user: accepted.user,
        device: accepted.device,
        addr,
        since: crate::now(),
        tx,
        chunks: chunks_tx,
        kill: kill.clone(),
        ext,
        behind: AtomicBool::new(false),
    });
    // Registered before the backlog is read, so nothing stored meanwhile is missed.
    shared
        .sessions
        .insert(session.clone(), key_resets, accepted.place);
    // The highest sequence number written to this client: a receipt never claims more.
    let sent = Arc::new(AtomicI64::new(0));
    let writer = tokio::spawn(write_loop(
        shared.clone(),
        session.clone(),
        sink,
        rx,
        chunks_rx,
        Arc::clone(&sent),
    ));
    let conn = Conn {
        shared: shared.clone(),
        session,
    };
    read_loop(&conn, stream, &sent).await;
    if !shared.shutdown.is_cancelled() {
        kill.cancel();
    }
    // On shutdown the writer sees it itself, writes what is queued, and closes.
    shared.sessions.remove(conn.user(), conn.session.conn);
    Box::pin(transfer::connection_closed(&conn)).await;
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "session writer task failed");
    }
    tracing::info!(user = %conn.user(), device = %conn.device(), %addr, "session closed");
}

/// Splits a logged-in connection into its reader and its writer, each with its own
/// buffer: the reader's starts at [`READ_BUFFER`] with whatever was read past the login,
/// the writer's is allocated when there is something to write and released when the
/// writer goes idle, so an idle connection holds as little as it can.
fn split<S>(shared: &Shared<S>, logged_in: Box<LoggedIn>) -> (Sink, Stream, Accepted, u64, bool) {
    let LoggedIn {
        transport,
        accepted,
        key_resets,
        ext,
    } = *logged_in;
    let parts = transport.into_parts();
    let (read, write) = tokio::io::split(parts.io);
    let mut stream = FramedRead::with_capacity(read, parts.codec, READ_BUFFER);
    stream.read_buffer_mut().extend_from_slice(&parts.read_buf);
    let mut sink = FramedWrite::new(write, TappedCodec::new(shared.limits, shared.tap.clone()));
    sink.set_backpressure_boundary(WRITE_BUFFER);
    *sink.write_buffer_mut() = bytes::BytesMut::new();
    (sink, stream, accepted, key_resets, ext)
}

/// Releases the writer's buffer once everything in it was written.
fn release_idle(sink: &mut Sink) {
    if sink.write_buffer().is_empty() && sink.write_buffer().capacity() > 0 {
        *sink.write_buffer_mut() = bytes::BytesMut::new();
    }
}

/// Messages a connection may have on their way to the store at once. At the bound the
/// reader stops reading, so a fast sender is held back by TCP, not buffered here.
const STORING: usize = 256;
/// How long the messages still on their way to the store may take to be relayed when a
/// connection ends.
const FINISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the reader's loop woke up for.
enum Wake {
    Packet(Option<Result<ClientPacket, CodecError>>),
    Stored(Result<(), Close>),
    Cursor(Result<(), WriteError>),
    /// A packet begun did not complete within `packet_timeout`.
    Stalled,
    Stop,
}

/// Reads the client's packets until the connection ends.
///
/// Messages (266, 267) are pipelined: each is checked against memory and handed to the
/// store at once, and the reader goes on reading while their commits complete (they
/// are relayed from the store's commit hook, in commit order). Any other packet first
/// waits for the messages before it, so a Pong or a transfer answer still follows them.
/// Receipts (515) move the device's cursor, one write in flight at a time.
async fn read_loop<S: Store>(conn: &Conn<S>, mut stream: Stream, sent: &AtomicI64) {
    let shared = &conn.shared;
    let mut storing: FuturesOrdered<delivery::Storing> = FuturesOrdered::new();
    let mut cursor = Cursor::new(shared.store.clone(), conn.device());
    let mut inbound = Inbound::new(conn.session.ext);
    // Made once, not per packet: each would register with the token and leave again.
    let killed = conn.session.kill.cancelled();
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(killed, shutdown);
    // Since when the reader, free to read, has held part of a packet: a peer that
    // starts a packet and dribbles the rest (or nothing) is cut off after
    // `packet_timeout`, so a connection cannot hold a partial packet, and its buffer,
    // for ever.
    let mut partial: Option<tokio::time::Instant> = None;
    let packet_timeout = shared.config.packet_timeout();
    loop {
        let reading = storing.len() < STORING;
        let deadline = partial.map(|since| since + packet_timeout);
        let wake = tokio::select! {
            biased;
            _ = &mut killed => Wake::Stop,
            _ = &mut shutdown => Wake::Stop,
            Some(stored) = storing.next(), if !storing.is_empty() => Wake::Stored(stored),
            landed = cursor.landed() => Wake::Cursor(landed),
            item = stream.next(), if reading => Wake::Packet(item),
            _ = sleep_until_some(deadline), if reading && deadline.is_some() => Wake::Stalled,
        };
        // The clock runs while bytes of an unfinished packet wait and the reader could
        // read more: it starts again with each packet, and after the reader was held
        // back by its commits.
        partial = match (&wake, stream.read_buffer().is_empty()) {
            (_, true) => None,
            (Wake::Packet(Some(Ok(_))) | Wake::Stored(_), false) => {
                Some(tokio::time::Instant::now())
            }
            (_, false) => partial.or_else(|| Some(tokio::time::Instant::now())),
        };
        let packet = match wake {
            Wake::Stored(Ok(())) | Wake::Cursor(Ok(())) => continue,
            Wake::Stalled => {
                tracing::warn!(
                    user = %conn.user(), addr = %conn.session.addr,
                    buffered = stream.read_buffer().len(),
                    "a packet did not complete within packet_timeout_secs: disconnecting"
                );
                finish(conn, &mut storing).await;
                break;
            }
            Wake::Stored(Err(close)) => {
                report_close(conn, close);
                break;
            }
            Wake::Cursor(Err(e)) => {
                tracing::error!(user = %conn.user(), error = ?e, "could not record a receipt: closing");
                break;
            }
            Wake::Stop | Wake::Packet(None) => {
                finish(conn, &mut storing).await;
                break;
            }
            Wake::Packet(Some(Err(e))) => {
                finish(conn, &mut storing).await;
                log_read_error(shared, conn.session.addr, Some(conn.user()), e);
                break;
            }
            Wake::Packet(Some(Ok(packet))) => packet,
        };
        match inbound.on(packet, sent.load(Ordering::Acquire)) {
            Step::Store(message, tag) => {
                // On a cluster, a recipient or group another node created may be new to
                // this node's directory: read from the store, after the messages before
                // it (so messages keep their order).
                if let Some(lookup) = crate::cluster::lookup_for(shared, conn.user(), &message) {
                    if !storing.is_empty() && !finish(conn, &mut storing).await {
                        break;
                    }
                    crate::cluster::look_up(shared, lookup).await;
                }
                match delivery::message(conn, message, tag) {
                    delivery::Sent::Storing(store) => storing.push_back(store),
                    delivery::Sent::Dropped(outcome) => {
                        if let Some(client_id) = tag {
                            conn.session
                                .push(Outbound::packet(SendAck { client_id, outcome }));
                        }
                    }
                }
            }
            Step::Confirm(through) => cursor.advance(through),
            Step::Nothing => {}
            Step::Close(why) => {
                report_close(conn, Close::Violation(why));
                break;
            }
            Step::InOrder(other) => {
                if !storing.is_empty() && !finish(conn, &mut storing).await {
                    break;
                }
                // Any other packet follows the record of the receipts before it: a
                // client whose Ping comes back knows its receipts are durable.
                if cursor.busy()
                    && let Err(e) = bounded_finish(cursor.finish()).await
                {
                    tracing::error!(user = %conn.user(), error = ?e, "could not record a receipt: closing");
                    break;
                }
                let result = tokio::select! {
                    biased;
                    _ = &mut killed => break,
                    r = Box::pin(handle(conn, other)) => r,
                };
                if let Err(close) = result {
                    report_close(conn, close);
                    break;
                }
                // The reader was not reading while the packet was handled (a chunk may
                // wait for its recipient): the next packet's clock starts now.
                if partial.is_some() {
                    partial = Some(tokio::time::Instant::now());
                }
            }
        }
    }
    // Receipts already given are recorded (bounded: the store may be what failed).
    if let Err(e) = bounded_finish(cursor.finish()).await {
        tracing::error!(user = %conn.user(), error = ?e, "could not record receipts");
    }
}

/// Waits until `deadline`, or for ever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A cursor's last writes, within [`FINISH_TIMEOUT`].
async fn bounded_finish(
    finish: impl std::future::Future<Output = Result<(), WriteError>>,
) -> Result<(), WriteError> {
    tokio::time::timeout(FINISH_TIMEOUT, finish)
        .await
        .unwrap_or(Err(WriteError::Timeout))
}

/// Waits for every message still on its way to the store (each is relayed as it
/// commits); false if the store failed (the connection must close).
async fn finish<S: Store>(conn: &Conn<S>, storing: &mut FuturesOrdered<delivery::Storing>) -> bool {
    let drain = async {
        while let Some(stored) = storing.next().await {
            match stored {
                Ok(()) => {}
                Err(close) => {
                    report_close(conn, close);
                    return false;
                }
            }
        }
        true
    };
    match tokio::time::timeout(FINISH_TIMEOUT, drain).await {
        Ok(done) => done,
        Err(_) => {
            tracing::error!(user = %conn.user(), "messages not stored within {}s: closing", FINISH_TIMEOUT.as_secs());
            false
        }
    }
}

fn report_close<S>(conn: &Conn<S>, close: Close) {
    match close {
        Close::Violation(what) => {
            violation(&conn.shared, conn.session.addr, Some(conn.user()), &what)
        }
        Close::Store(e) => {
            tracing::error!(user = %conn.user(), error = %e, "store error: closing the connection");
        }
    }
}

async fn handle<S: Store>(conn: &Conn<S>, packet: ClientPacket) -> Result<(), Close> {
    match packet {
        // `Inbound` closes the connection on these, and sends messages to the store.
        ClientPacket::ConnectionRequest(_)
        | ClientPacket::SendUserMessage(_)
        | ClientPacket::SendGroupMessage(_)
        | ClientPacket::Receipt(_)
        | ClientPacket::MessageTag(_) => Ok(()),
        ClientPacket::UserListsSync(p) => sync::on_lists_sync(conn, p).await,
        ClientPacket::FileTransferRequest(p) => transfer::on_request(conn, p).await,
        ClientPacket::FileTransferAbort(p) => transfer::on_abort(conn, p).await,
        ClientPacket::FileTransferAccept(p) => transfer::on_accept(conn, p).await,
        ClientPacket::FileChunk(p) => transfer::on_chunk(conn, p).await,
        ClientPacket::FileTransferComplete(p) => transfer::on_complete(conn, p).await,
        ClientPacket::Ping(p) => conn.reply(Pong { nonce: p.nonce }).await,
        ClientPacket::Pong(_) => Ok(()),
        ClientPacket::GroupCreate(_)
        | ClientPacket::GroupRename(_)
        | ClientPacket::GroupAddMember(_)
        | ClientPacket::GroupRemoveMember(_)
        | ClientPacket::GroupLeave(_) => match groups::Request::from_packet(packet) {
            Some((request, what)) => groups::on_request(conn, request, what).await,
            None => Ok(()),
        },
    }
}

/// Writes 257, 259 (and with the extension set 524 and a 525 per group) and the
/// backlog, then whatever is queued, until the session ends.
async fn write_loop<S: Store>(
    shared: Arc<Shared<S>>,
    session: SessionHandle,
    mut sink: Sink,
    mut rx: mpsc::Receiver<Outbound>,
    mut chunks: mpsc::Receiver<Box<ServerPacket>>,
    sent: Arc<AtomicI64>,
) {
    let mut out = Written {
        cursor: Cursor::new(shared.store.clone(), session.device),
        sent,
        ext: session.ext,
        last: None,
        through: None,
    };
    let result = async {
        let lists = shared
            .store
            .lists(&session.user)
            .await
            .map_err(WriteError::Store)?;
        let mut greeting = vec![
            ServerPacket::from(ConnectionAccepted {
                device: session.device,
            }),
            ServerPacket::from(RequestUserListsSync {
                friends: lists.friends.timestamp,
                blocks: lists.blocks.timestamp,
            }),
        ];
        // With the extension set, the groups come before the backlog, so that a group
        // message is never the first a client hears of its group. Read after the
        // session was registered: a change from now on is also queued for it, after.
        if session.ext {
            greeting.extend(groups::at_login(&shared, &session.user));
        }
        bounded(&shared, &session, async {
            for packet in greeting {
                sink.feed(packet).await.map_err(WriteError::Io)?;
            }
            flush(&shared, &mut sink).await
        })
        .await?;
        let backlog_end = send_backlog(&shared, &session, &mut sink, &mut out, None).await?;
        live(
            &shared,
            &session,
            &mut sink,
            &mut rx,
            &mut chunks,
            backlog_end,
            &mut out,
        )
        .await
    }
    .await;
    match result {
        Ok(()) => {}
        Err(WriteError::Io(e)) => tracing::info!(user = %session.user, error = %e, "write failed"),
        Err(WriteError::Timeout) => {
            tracing::warn!(user = %session.user, addr = %session.addr, "client stopped reading (write timed out): disconnecting")
        }
        Err(WriteError::Ended) => {
            tracing::debug!(user = %session.user, "session ended while writing")
        }
        Err(WriteError::Store(e)) => {
            tracing::error!(user = %session.user, error = %e, "store error while writing")
        }
    }
    session.kill.cancel();
    // Whatever ended the session, what was flushed is recorded (bounded: the store may
    // be what failed).
    if let Err(e) = bounded_finish(out.cursor.finish()).await {
        tracing::error!(user = %session.user, error = ?e, "could not record delivered messages");
    }
    // A TLS close_notify, bounded in time: the peer may be gone.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        SinkExt::<ServerPacket>::close(&mut sink),
    )
    .await;
}

/// What the writer has written of the stored messages, and what that means for the
/// device's cursor.
struct Written<S> {
    cursor: Cursor<S>,
    /// The highest sequence number flushed to the client, for the reader's receipts.
    sent: Arc<AtomicI64>,
    ext: bool,
    /// The highest sequence number fed since the last flush.
    last: Option<MessageId>,
    /// The highest sequence number ever fed.
    through: Option<MessageId>,
}

impl<S: Store> Written<S> {
    /// Feeds a stored message: its sequence number first when the client negotiated
    /// receipts.
    async fn feed(
        &mut self,
        sink: &mut Sink,
        id: MessageId,
        packet: &ServerPacket,
    ) -> Result<(), WriteError> {
        // A client with receipts may confirm it from now on. Not only once the flush has
        // returned: the bytes may reach the client (a feed can write, a flush has
        // written) and its receipt be read before this task runs again, and a receipt
        // clamped below what the client holds would be answered by a Pong all the same,
        // a confirmation the server did not record.
        self.sent.fetch_max(id.0, Ordering::AcqRel);
        if self.ext {
            sink.feed(ServerPacket::from(Sequence { seq: id.0 }))
                .await
                .map_err(WriteError::Io)?;
        }
        sink.feed(packet).await.map_err(WriteError::Io)?;
        self.last = Some(id);
        self.through = self.through.max(Some(id));
        Ok(())
    }

    /// Everything fed was flushed: for a client without receipts the device holds it,
    /// and its cursor moves (without waiting for the commit).
    fn flushed(&mut self) {
        let Some(last) = self.last.take() else {
            return;
        };
        if !self.ext {
            self.cursor.advance(last);
        }
    }
}

#[derive(Debug)]
enum WriteError {
    Io(CodecError),
    Timeout,
    /// The session was ended while a write was waiting.
    Ended,
    Store(vcom_store::StoreError),
}

async fn flush<S>(shared: &Shared<S>, sink: &mut Sink) -> Result<(), WriteError> {
    match tokio::time::timeout(
        shared.config.write_timeout(),
        SinkExt::<ServerPacket>::flush(sink),
    )
    .await
    {
        Ok(r) => r.map_err(WriteError::Io),
        Err(_) => Err(WriteError::Timeout),
    }
}

/// Runs one batch of writes to the client within `write_timeout`, and gives up at once
/// when the session is ended meanwhile (its queue overflowed, its reader stopped): a
/// writer never hangs on a client that stopped reading, and its socket and buffers are
/// released as soon as the session is dropped.
async fn bounded<S, T>(
    shared: &Shared<S>,
    session: &SessionHandle,
    writes: impl std::future::Future<Output = Result<T, WriteError>>,
) -> Result<T, WriteError> {
    tokio::select! {
        biased;
        _ = session.kill.cancelled() => Err(WriteError::Ended),
        r = tokio::time::timeout(shared.config.write_timeout(), writes) => {
            r.unwrap_or(Err(WriteError::Timeout))
        }
    }
}

/// Sends every stored message this device has not received (after `start`, if given),
/// oldest first, and returns the last identifier sent (queued messages up to it were
/// part of the backlog). At login, and again whenever the session fell behind.
async fn send_backlog<S: Store>(
    shared: &Shared<S>,
    session: &SessionHandle,
    sink: &mut Sink,
    out: &mut Written<S>,
    start: Option<MessageId>,
) -> Result<Option<MessageId>, WriteError> {
    // The next page is read while this one is written: the store's read and the
    // socket's write overlap, and at most two pages are held.
    let read = |after: Option<MessageId>| {
        let (store, user, device) = (shared.store.clone(), session.user.clone(), session.device);
        tokio::spawn(async move {
            store
                .pending(&user, device, after, BACKLOG_PAGE, BACKLOG_BYTES)
                .await
        })
    };
    let mut reading = read(start);
    let mut after = None;
    loop {
        let page = reading
            .await
            // The read task cannot panic short of a bug; treat it as a store failure.
            .map_err(|_| WriteError::Store(vcom_store::StoreError::Closed))?
            .map_err(WriteError::Store)?;
        let Some(last) = page.last().map(|m| m.id) else {
            return Ok(after);
        };
        reading = read(Some(last));
        bounded(shared, session, async {
            for message in page {
                let id = message.id;
                out.feed(sink, id, &delivery::packet_for(message)).await?;
            }
            flush(shared, sink).await
        })
        .await?;
        // The previous page's record lands while this one was read and written.
        out.cursor.settle().await?;
        out.flushed();
        after = Some(last);
    }
}

async fn live<S: Store>(
    shared: &Shared<S>,
    session: &SessionHandle,
    sink: &mut Sink,
    rx: &mut mpsc::Receiver<Outbound>,
    chunks: &mut mpsc::Receiver<Box<ServerPacket>>,
    mut backlog_end: Option<MessageId>,
    out: &mut Written<S>,
) -> Result<(), WriteError> {
    // Made once, not per wake-up (see `read_loop`).
    let killed = session.kill.cancelled();
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(killed, shutdown);
    loop {
        // Behind, and all that was queued is written: what the queue could not take is
        // read from the store, after the last message written. The flag is cleared
        // first, so a message queued from now on is either in what is read (and
        // skipped when it comes out of the queue) or committed after it.
        if rx.is_empty() && session.behind.swap(false, Ordering::AcqRel) {
            let start = out.through.max(backlog_end);
            if let Some(end) = send_backlog(shared, session, sink, out, start).await? {
                backlog_end = Some(end);
            }
            continue;
        }
        if rx.is_empty() && chunks.is_empty() {
            release_idle(sink);
        }
        // Messages and control packets first: a transfer never starves chat.
        let first = tokio::select! {
            biased;
            _ = &mut killed => return Ok(()),
            landed = out.cursor.landed() => {
                landed?;
                continue;
            }
            item = rx.recv() => match item {
                Some(item) => Either::Out(item),
                None => return Ok(()),
            },
            chunk = chunks.recv() => match chunk {
                Some(chunk) => Either::Chunk(chunk),
                None => return Ok(()),
            },
            _ = &mut shutdown => {
                // Finish what is queued, then close.
                bounded(shared, session, async {
                    while let Ok(item) = rx.try_recv() {
                        write_item(shared, sink, item, backlog_end, out).await?;
                    }
                    flush(shared, sink).await
                })
                .await?;
                out.flushed();
                return Ok(());
            }
        };
        bounded(shared, session, async {
            match first {
                Either::Out(item) => write_item(shared, sink, item, backlog_end, out).await?,
                Either::Chunk(chunk) => sink.feed(*chunk).await.map_err(WriteError::Io)?,
            }
            for _ in 1..WRITE_BATCH {
                if let Ok(item) = rx.try_recv() {
                    write_item(shared, sink, item, backlog_end, out).await?;
                } else if let Ok(chunk) = chunks.try_recv() {
                    sink.feed(*chunk).await.map_err(WriteError::Io)?;
                } else {
                    break;
                }
            }
            flush(shared, sink).await
        })
        .await?;
        // Written and flushed: received. Recorded without waiting for the commit.
        out.flushed();
    }
}

enum Either {
    Out(Outbound),
    Chunk(Box<ServerPacket>),
}

async fn write_item<S: Store>(
    shared: &Shared<S>,
    sink: &mut Sink,
    item: Outbound,
    backlog_end: Option<MessageId>,
    out: &mut Written<S>,
) -> Result<(), WriteError> {
    match item {
        Outbound::Packet(packet) => {
            // Anything but a message (a Pong, a list request, a transfer answer) follows
            // the record of the messages written before it: a client that pings after
            // receiving knows that another device of its user will see them as read.
            // Such packets are rare; messages themselves never wait for a record.
            if out.last.is_some() || out.cursor.busy() {
                flush(shared, sink).await?;
                out.flushed();
                out.cursor.finish().await?;
            }
            sink.feed(*packet).await.map_err(WriteError::Io)
        }
        Outbound::Message { id, packet } => {
            if backlog_end.is_some_and(|end| id <= end) {
                return Ok(()); // already sent as part of the backlog
            }
            out.feed(sink, id, &packet).await
        }
        // Seen by `live` before its next wait.
        Outbound::CatchUp => Ok(()),
    }
}

type Advancing =
    std::pin::Pin<Box<dyn std::future::Future<Output = vcom_store::StoreResult<()>> + Send>>;

/// Moves a device's cursor in the store, with at most one write in flight: whoever
/// advances it never waits for that commit, and what arrives meanwhile is folded into
/// the next write (one small write per batch, never a row per message).
///
/// For a client without receipts the writer advances it once messages are flushed to
/// the socket (if the server dies before the write commits, the device gets them again
/// at its next login: never lost); for a client with receipts, the reader advances it
/// on each receipt.
struct Cursor<S> {
    store: S,
    device: DeviceId,
    waiting: Option<MessageId>,
    in_flight: Option<Advancing>,
}

impl<S: Store> Cursor<S> {
    fn new(store: S, device: DeviceId) -> Self {
        Cursor {
            store,
            device,
            waiting: None,
            in_flight: None,
        }
    }

    /// The device holds every message through `through`: record it (now, or right
    /// after the write in flight).
    fn advance(&mut self, through: MessageId) {
        self.waiting = Some(self.waiting.map_or(through, |w| w.max(through)));
        self.start();
    }

    fn start(&mut self) {
        if self.in_flight.is_some() {
            return;
        }
        let Some(through) = self.waiting.take() else {
            return;
        };
        let (store, device) = (self.store.clone(), self.device);
        self.in_flight = Some(Box::pin(async move {
            store.advance_cursor(device, through).await
        }));
    }

    /// Resolves when the write in flight has committed (never, when none is), and
    /// starts the next.
    async fn landed(&mut self) -> Result<(), WriteError> {
        let Some(in_flight) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        let result = in_flight.await;
        self.in_flight = None;
        result.map_err(WriteError::Store)?;
        self.start();
        Ok(())
    }

    /// Whether a write is in flight or waiting to start.
    fn busy(&self) -> bool {
        self.in_flight.is_some() || self.waiting.is_some()
    }

    /// Waits for the write in flight, if any.
    async fn settle(&mut self) -> Result<(), WriteError> {
        if self.in_flight.is_some() {
            self.landed().await?;
        }
        Ok(())
    }

    /// Records everything advanced so far and waits for it.
    async fn finish(&mut self) -> Result<(), WriteError> {
        while self.busy() {
            self.start();
            self.settle().await?;
        }
        Ok(())
    }
}
