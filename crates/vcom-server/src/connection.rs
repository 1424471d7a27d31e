//! One task per connection: TLS handshake, login within the timeout, then a reader that
//! handles the client's packets and a writer that drains the session's queues.
//!
//! A protocol violation or a failure here ends this connection only. The reader and the
//! writer share one cancellation token: whichever stops first stops the other.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use vcom_protocol::codec::CodecError;
use vcom_protocol::{
    ClientPacket, ConnectionAccepted, ConnectionDenied, DeviceId, Pong, RequestUserListsSync,
    ServerPacket, UserId,
};
use vcom_store::{MessageId, Store};

use crate::login::{self, Accepted, Refused};
use crate::server::Shared;
use crate::session::{Outbound, SessionHandle};
use crate::stats::Stats;
use crate::tap::TappedCodec;
use crate::{delivery, sync, transfer};

type Transport = Framed<TlsStream<TcpStream>, TappedCodec>;
type Sink = futures::stream::SplitSink<Transport, ServerPacket>;
type Stream = futures::stream::SplitStream<Transport>;

/// Most file chunks queued for one recipient: the relay's whole buffer per session.
pub(crate) const CHUNK_QUEUE: usize = 16;
/// Most stored messages fetched per page of a backlog.
const BACKLOG_PAGE: usize = 256;
/// Most queued packets written before one flush.
const WRITE_BATCH: usize = 64;
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
            .send(Outbound::Packet(packet.into()))
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
    let Ok(login_permit) = shared.pending_logins.clone().try_acquire_owned() else {
        tracing::warn!(%addr, "too many connections still logging in: refused");
        return;
    };
    let deadline = shared.config.login_timeout();
    let login = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(deadline, handshake_and_login(&shared, acceptor, tcp, addr)) => r,
    };
    let (transport, accepted) = match login {
        Err(_) => {
            tracing::info!(%addr, "no login within {}s: disconnected", deadline.as_secs());
            return;
        }
        Ok(None) => return,
        Ok(Some(ok)) => ok,
    };
    drop(login_permit);
    run_session(shared, transport, accepted, addr).await;
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

async fn handshake_and_login<S: Store>(
    shared: &Shared<S>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Option<(Transport, Accepted)> {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::info!(%addr, error = %e, "TLS handshake failed");
            return None;
        }
    };
    let key = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(crate::tls::key_fingerprint);
    let mut transport = Framed::new(tls, TappedCodec::new(shared.limits, shared.tap.clone()));
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
    match login::check(shared, &request, addr.ip(), key).await {
        Ok(accepted) => {
            Stats::bump(&shared.stats.logins);
            tracing::info!(
                user = %accepted.user, device = %accepted.device, %addr,
                new_device = request.device == DeviceId::NEW, "login accepted"
            );
            Some((transport, accepted))
        }
        Err(Refused::Denied(code)) => {
            Stats::bump(&shared.stats.denials);
            tracing::info!(user = ?request.user, %addr, %code, "login refused");
            let denied = ServerPacket::from(ConnectionDenied { code });
            let _ = tokio::time::timeout(shared.config.write_timeout(), async {
                let _ = transport.send(denied).await;
                let _ = SinkExt::<ServerPacket>::close(&mut transport).await;
            })
            .await;
            None
        }
        Err(Refused::Store(e)) => {
            tracing::error!(user = ?request.user, %addr, error = %e, "login failed: store error");
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

async fn run_session<S: Store>(
    shared: Arc<Shared<S>>,
    mut transport: Transport,
    accepted: Accepted,
    addr: SocketAddr,
) {
    let (tx, rx) = mpsc::channel(shared.config.outbound_queue);
    let (chunks_tx, chunks_rx) = mpsc::channel(CHUNK_QUEUE);
    let kill = CancellationToken::new();
    let session = SessionHandle {
        conn: shared.sessions.next_conn(),
        user: accepted.user,
        device: accepted.device,
        addr,
        since: crate::now(),
        tx,
        chunks: chunks_tx,
        kill: kill.clone(),
    };
    // Registered before the backlog is read, so nothing stored meanwhile is missed.
    shared.sessions.insert(session.clone());
    transport.set_backpressure_boundary(WRITE_BUFFER);
    let (sink, stream) = transport.split();
    let writer = tokio::spawn(write_loop(
        shared.clone(),
        session.clone(),
        sink,
        rx,
        chunks_rx,
    ));
    let conn = Conn {
        shared: shared.clone(),
        session,
    };
    read_loop(&conn, stream).await;
    if !shared.shutdown.is_cancelled() {
        kill.cancel();
    }
    // On shutdown the writer sees it itself, writes what is queued, and closes.
    shared.sessions.remove(conn.user(), conn.session.conn);
    transfer::connection_closed(&conn).await;
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "session writer task failed");
    }
    tracing::info!(user = %conn.user(), device = %conn.device(), %addr, "session closed");
}

async fn read_loop<S: Store>(conn: &Conn<S>, mut stream: Stream) {
    let shared = &conn.shared;
    loop {
        let item = tokio::select! {
            biased;
            _ = conn.session.kill.cancelled() => return,
            _ = shared.shutdown.cancelled() => return,
            item = stream.next() => item,
        };
        let packet = match item {
            None => return,
            Some(Err(e)) => {
                log_read_error(shared, conn.session.addr, Some(conn.user()), e);
                return;
            }
            Some(Ok(packet)) => packet,
        };
        let result = tokio::select! {
            biased;
            _ = conn.session.kill.cancelled() => return,
            r = handle(conn, packet) => r,
        };
        match result {
            Ok(()) => {}
            Err(Close::Violation(what)) => {
                violation(shared, conn.session.addr, Some(conn.user()), &what);
                return;
            }
            Err(Close::Store(e)) => {
                tracing::error!(user = %conn.user(), error = %e, "store error: closing the connection");
                return;
            }
        }
    }
}

async fn handle<S: Store>(conn: &Conn<S>, packet: ClientPacket) -> Result<(), Close> {
    match packet {
        ClientPacket::ConnectionRequest(_) => Err(Close::Violation(
            "ConnectionRequest (256) after login".into(),
        )),
        ClientPacket::UserListsSync(p) => sync::on_lists_sync(conn, p).await,
        ClientPacket::SendUserMessage(p) => delivery::on_direct(conn, p).await,
        ClientPacket::SendGroupMessage(p) => delivery::on_group(conn, p).await,
        ClientPacket::FileTransferRequest(p) => transfer::on_request(conn, p).await,
        ClientPacket::FileTransferAbort(p) => transfer::on_abort(conn, p).await,
        ClientPacket::FileTransferAccept(p) => transfer::on_accept(conn, p).await,
        ClientPacket::FileChunk(p) => transfer::on_chunk(conn, p).await,
        ClientPacket::FileTransferComplete(p) => transfer::on_complete(conn, p).await,
        ClientPacket::Ping(p) => conn.reply(Pong { nonce: p.nonce }).await,
        ClientPacket::Pong(_) => Ok(()),
    }
}

/// Writes 257, 259 and the backlog, then whatever is queued, until the session ends.
async fn write_loop<S: Store>(
    shared: Arc<Shared<S>>,
    session: SessionHandle,
    mut sink: Sink,
    mut rx: mpsc::Receiver<Outbound>,
    mut chunks: mpsc::Receiver<ServerPacket>,
) {
    let result = async {
        let lists = shared
            .store
            .lists(&session.user)
            .await
            .map_err(WriteError::Store)?;
        let greeting = [
            ServerPacket::from(ConnectionAccepted {
                device: session.device,
            }),
            ServerPacket::from(RequestUserListsSync {
                friends: lists.friends.timestamp,
                blocks: lists.blocks.timestamp,
            }),
        ];
        for packet in greeting {
            sink.feed(packet).await.map_err(WriteError::Io)?;
        }
        flush(&shared, &mut sink).await?;
        let backlog_end = send_backlog(&shared, &session, &mut sink).await?;
        live(
            &shared,
            &session,
            &mut sink,
            &mut rx,
            &mut chunks,
            backlog_end,
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
        Err(WriteError::Store(e)) => {
            tracing::error!(user = %session.user, error = %e, "store error while writing")
        }
    }
    session.kill.cancel();
    // A TLS close_notify, bounded in time: the peer may be gone.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sink.close()).await;
}

#[derive(Debug)]
enum WriteError {
    Io(CodecError),
    Timeout,
    Store(vcom_store::StoreError),
}

async fn flush<S>(shared: &Shared<S>, sink: &mut Sink) -> Result<(), WriteError> {
    match tokio::time::timeout(shared.config.write_timeout(), sink.flush()).await {
        Ok(r) => r.map_err(WriteError::Io),
        Err(_) => Err(WriteError::Timeout),
    }
}

/// Sends every stored message this device has not received, oldest first, and returns
/// the last identifier sent (live messages up to it were part of the backlog).
async fn send_backlog<S: Store>(
    shared: &Shared<S>,
    session: &SessionHandle,
    sink: &mut Sink,
) -> Result<Option<MessageId>, WriteError> {
    let mut after = None;
    loop {
        let page = shared
            .store
            .pending(&session.user, session.device, after, BACKLOG_PAGE)
            .await
            .map_err(WriteError::Store)?;
        let Some(last) = page.last().map(|m| m.id) else {
            return Ok(after);
        };
        let ids: Vec<MessageId> = page.iter().map(|m| m.id).collect();
        for message in page {
            sink.feed(delivery::packet_for(message))
                .await
                .map_err(WriteError::Io)?;
        }
        flush(shared, sink).await?;
        shared
            .store
            .mark_delivered(session.device, &ids, crate::now())
            .await
            .map_err(WriteError::Store)?;
        after = Some(last);
    }
}

async fn live<S: Store>(
    shared: &Shared<S>,
    session: &SessionHandle,
    sink: &mut Sink,
    rx: &mut mpsc::Receiver<Outbound>,
    chunks: &mut mpsc::Receiver<ServerPacket>,
    backlog_end: Option<MessageId>,
) -> Result<(), WriteError> {
    let mut delivered = Vec::new();
    loop {
        // Messages and control packets first: a transfer never starves chat.
        let first = tokio::select! {
            biased;
            _ = session.kill.cancelled() => return Ok(()),
            item = rx.recv() => match item {
                Some(item) => Either::Out(item),
                None => return Ok(()),
            },
            chunk = chunks.recv() => match chunk {
                Some(chunk) => Either::Chunk(chunk),
                None => return Ok(()),
            },
            _ = shared.shutdown.cancelled() => {
                // Finish what is queued, then close.
                while let Ok(item) = rx.try_recv() {
                    write_item(sink, item, backlog_end, &mut delivered).await?;
                }
                flush(shared, sink).await?;
                return mark(shared, session, &mut delivered).await;
            }
        };
        match first {
            Either::Out(item) => write_item(sink, item, backlog_end, &mut delivered).await?,
            Either::Chunk(chunk) => sink.feed(chunk).await.map_err(WriteError::Io)?,
        }
        for _ in 1..WRITE_BATCH {
            if let Ok(item) = rx.try_recv() {
                write_item(sink, item, backlog_end, &mut delivered).await?;
            } else if let Ok(chunk) = chunks.try_recv() {
                sink.feed(chunk).await.map_err(WriteError::Io)?;
            } else {
                break;
            }
        }
        flush(shared, sink).await?;
        mark(shared, session, &mut delivered).await?;
    }
}

enum Either {
    Out(Outbound),
    Chunk(ServerPacket),
}

async fn write_item(
    sink: &mut Sink,
    item: Outbound,
    backlog_end: Option<MessageId>,
    delivered: &mut Vec<MessageId>,
) -> Result<(), WriteError> {
    match item {
        Outbound::Packet(packet) => sink.feed(packet).await.map_err(WriteError::Io),
        Outbound::Message { id, packet } => {
            if backlog_end.is_some_and(|end| id <= end) {
                return Ok(()); // already sent as part of the backlog
            }
            sink.feed(packet).await.map_err(WriteError::Io)?;
            delivered.push(id);
            Ok(())
        }
    }
}

async fn mark<S: Store>(
    shared: &Shared<S>,
    session: &SessionHandle,
    delivered: &mut Vec<MessageId>,
) -> Result<(), WriteError> {
    if delivered.is_empty() {
        return Ok(());
    }
    let ids = std::mem::take(delivered);
    shared
        .store
        .mark_delivered(session.device, &ids, crate::now())
        .await
        .map_err(WriteError::Store)
}
