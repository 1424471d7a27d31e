//! The limit: a minimal vCom relay that stores nothing (`vcom-bench relay`).
//!
//! It does what the wire demands of any vCom server and nothing more: the same TLS 1.3
//! handshake with a client certificate (the server's own configuration), 256 answered
//! with 257 and 259, 266 relayed as 264 and 267 as 265, the 268-274 file flow, 512
//! answered with 513. Nothing is checked against a store and nothing is written to
//! disk: messages for a user who is offline wait in memory. Every group holds every
//! online user. Whatever vcom-server measures is read as a fraction of this.
//!
//! It never decides policy, never times anything out but the handshake, and is not a
//! server to deploy: it exists to be measured beside the real one.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use vcom_protocol::{
    AbortReason, ClientPacket, ConnectionAccepted, Decoded, DeviceId, FileTransferAbort,
    FileTransferAccept, FileTransferId, FileTransferOffer, GroupMessage, Limits, Pong,
    RequestUserListsSync, ServerPacket, Timestamp, TransferId, UserMessage,
};

/// Packets queued for one connection's writer; at the bound, whoever sends to it waits.
const QUEUE: usize = 1024;
/// Bytes a writer gathers into one TLS write.
const WRITE_BATCH: usize = 64 * 1024;
/// Messages kept for one offline user; past this, new ones are dropped (and counted).
const OFFLINE_CAP: usize = 4_000_000;
/// How long a client has for the TLS handshake and its 256.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The listen backlog: generous, so login storms measure the relay, not SYN retries.
const BACKLOG: u32 = 4096;

/// One connection's outbound queue.
#[derive(Clone)]
struct Peer {
    conn: u64,
    tx: mpsc::Sender<Bytes>,
}

#[derive(Default)]
struct User {
    sessions: Vec<Peer>,
    offline: VecDeque<Bytes>,
}

struct Transfer {
    sender: Peer,
    recipient: Arc<str>,
    acceptor: Option<Peer>,
}

#[derive(Default)]
struct State {
    users: HashMap<Arc<str>, User>,
    transfers: HashMap<i32, Transfer>,
}

#[derive(Default)]
struct Relay {
    state: Mutex<State>,
    next_conn: AtomicU64,
    next_device: AtomicI32,
    next_transfer: AtomicI32,
    dropped: AtomicU64,
}

impl Relay {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; a poisoned state is still whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the relay on `listen` until Ctrl-C or SIGTERM. Prints
/// `vcom-bench relay ready addr=<ip:port> cert-sha256=<hex>` once it accepts.
pub async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let tls =
        vcom_server::tls::ServerTls::load_or_generate(&vcom_server::ServerConfig::new(dir.path()))
            .context("cannot set up TLS")?;
    let socket = match listen {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let listener = socket.listen(BACKLOG)?;
    let addr = listener.local_addr()?;
    println!(
        "vcom-bench relay ready addr={addr} cert-sha256={}",
        tls.cert_sha256
    );
    let acceptor = TlsAcceptor::from(tls.config.clone());
    let relay = Arc::new(Relay::default());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    tokio::spawn(serve(relay.clone(), acceptor.clone(), tcp));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    let dropped = relay.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        tracing::warn!(dropped, "offline messages dropped past the in-memory cap");
    }
    Ok(())
}

fn encode(packet: impl Into<ServerPacket>) -> Bytes {
    packet.into().to_bytes()
}

async fn serve(relay: Arc<Relay>, acceptor: TlsAcceptor, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let limits = Limits::default();
    let login = tokio::time::timeout(LOGIN_TIMEOUT, async {
        let tls = acceptor.accept(tcp).await.ok()?;
        let (mut rd, wr) = tokio::io::split(tls);
        let mut buf = BytesMut::new();
        match next_packet(&mut rd, &mut buf, &limits).await? {
            (ClientPacket::ConnectionRequest(request), _) => Some((rd, wr, buf, request)),
            _ => None,
        }
    })
    .await;
    let Ok(Some((rd, wr, buf, request))) = login else {
        return;
    };
    // The only check the relay makes: the identifier must be one it can send back.
    let Ok(user_id) = vcom_protocol::UserId::new(request.user) else {
        return;
    };
    let user: Arc<str> = user_id.as_str().into();
    let device = if request.device == DeviceId::NEW {
        DeviceId(relay.next_device.fetch_add(1, Ordering::Relaxed) + 1)
    } else {
        request.device
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let me = Peer {
        conn: relay.next_conn.fetch_add(1, Ordering::Relaxed),
        tx,
    };
    let mut first = vec![
        encode(ConnectionAccepted { device }),
        encode(RequestUserListsSync {
            friends: Timestamp::NEVER,
            blocks: Timestamp::NEVER,
        }),
    ];
    {
        // Registered and the backlog taken under one lock: nothing falls between.
        let mut state = relay.lock();
        let entry = state.users.entry(user.clone()).or_default();
        first.extend(entry.offline.drain(..));
        entry.sessions.push(me.clone());
    }
    let writer = tokio::spawn(write_loop(wr, rx, first));
    let mut session = Session {
        relay: relay.clone(),
        user: user.clone(),
        user_id,
        me: me.clone(),
        routes: HashMap::new(),
    };
    session.read_loop(rd, buf, &limits).await;
    {
        let mut state = relay.lock();
        if let Some(entry) = state.users.get_mut(&user) {
            entry.sessions.retain(|p| p.conn != me.conn);
        }
        let ended: Vec<i32> = state
            .transfers
            .iter()
            .filter(|(_, t)| {
                t.sender.conn == me.conn || t.acceptor.as_ref().is_some_and(|a| a.conn == me.conn)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            if let Some(t) = state.transfers.remove(&id) {
                let abort = encode(FileTransferAbort {
                    transfer: TransferId(id),
                    reason: AbortReason::ConnectionDropped,
                });
                for peer in [Some(t.sender), t.acceptor].into_iter().flatten() {
                    if peer.conn != me.conn {
                        let _ = peer.tx.try_send(abort.clone());
                    }
                }
            }
        }
    }
    drop(session);
    drop(me);
    let _ = writer.await;
}

/// Reads until `buf` holds a whole client packet; returns it with its raw bytes.
async fn next_packet(
    rd: &mut ReadHalf<TlsStream<TcpStream>>,
    buf: &mut BytesMut,
    limits: &Limits,
) -> Option<(ClientPacket, Bytes)> {
    loop {
        match ClientPacket::decode(buf, limits).ok()? {
            Decoded::Complete { packet, len } => return Some((packet, buf.split_to(len).freeze())),
            Decoded::Incomplete { needed } => {
                buf.reserve(needed.saturating_sub(buf.len()).max(4096));
                if rd.read_buf(buf).await.ok()? == 0 {
                    return None;
                }
            }
        }
    }
}

async fn write_loop(
    mut wr: WriteHalf<TlsStream<TcpStream>>,
    mut rx: mpsc::Receiver<Bytes>,
    first: Vec<Bytes>,
) {
    let mut out = BytesMut::new();
    for packet in first {
        out.extend_from_slice(&packet);
        if out.len() >= WRITE_BATCH {
            if wr.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
    if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
        return;
    }
    out = BytesMut::new();
    while let Some(packet) = rx.recv().await {
        out.extend_from_slice(&packet);
        while out.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(packet) => out.extend_from_slice(&packet),
                Err(_) => break,
            }
        }
        if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        out.clear();
    }
    let _ = wr.shutdown().await;
}

/// One logged-in connection's reader.
struct Session {
    relay: Arc<Relay>,
    user: Arc<str>,
    user_id: vcom_protocol::UserId,
    me: Peer,
    /// Where this connection's file chunks go, per transfer, once accepted.
    routes: HashMap<i32, Peer>,
}

impl Session {
    async fn read_loop(
        &mut self,
        mut rd: ReadHalf<TlsStream<TcpStream>>,
        mut buf: BytesMut,
        limits: &Limits,
    ) {
        while let Some((packet, raw)) = next_packet(&mut rd, &mut buf, limits).await {
            if !self.handle(packet, raw).await {
                return;
            }
        }
    }

    /// Handles one packet; false ends the connection.
    async fn handle(&mut self, packet: ClientPacket, raw: Bytes) -> bool {
        match packet {
            ClientPacket::ConnectionRequest(_) => return false,
            ClientPacket::SendUserMessage(m) => {
                let packet = encode(UserMessage {
                    sender: self.user_id(),
                    read: false,
                    sent_at: m.sent_at,
                    kind: m.kind,
                    data: m.data,
                });
                let peers = {
                    let mut state = self.relay.lock();
                    match state.users.get_mut(m.recipient.as_str()) {
                        None => Vec::new(),
                        Some(user) if user.sessions.is_empty() => {
                            if user.offline.len() < OFFLINE_CAP {
                                user.offline.push_back(packet.clone());
                            } else {
                                self.relay.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            Vec::new()
                        }
                        Some(user) => user.sessions.clone(),
                    }
                };
                self.send_all(&peers, &packet).await;
            }
            ClientPacket::SendGroupMessage(m) => {
                let packet = encode(GroupMessage {
                    sender: self.user_id(),
                    group: m.group,
                    read: false,
                    sent_at: m.sent_at,
                    kind: m.kind,
                    data: m.data,
                });
                let peers: Vec<Peer> = {
                    let state = self.relay.lock();
                    state
                        .users
                        .values()
                        .flat_map(|u| u.sessions.iter())
                        .filter(|p| p.conn != self.me.conn)
                        .cloned()
                        .collect()
                };
                self.send_all(&peers, &packet).await;
            }
            ClientPacket::FileTransferRequest(request) => {
                let id = self.relay.next_transfer.fetch_add(1, Ordering::Relaxed) + 1;
                let transfer = TransferId(id);
                let _ = self.me.tx.send(encode(FileTransferId { transfer })).await;
                let offer = encode(FileTransferOffer {
                    sender: self.user_id(),
                    size: request.size,
                    name: request.name,
                    transfer,
                });
                let recipients = {
                    let mut state = self.relay.lock();
                    let sessions = state
                        .users
                        .get(request.recipient.as_str())
                        .map(|u| u.sessions.clone())
                        .unwrap_or_default();
                    if !sessions.is_empty() {
                        state.transfers.insert(
                            id,
                            Transfer {
                                sender: self.me.clone(),
                                recipient: request.recipient.as_str().into(),
                                acceptor: None,
                            },
                        );
                    }
                    sessions
                };
                if recipients.is_empty() {
                    let abort = encode(FileTransferAbort {
                        transfer,
                        reason: AbortReason::RecipientOffline,
                    });
                    let _ = self.me.tx.send(abort).await;
                } else {
                    self.send_all(&recipients, &offer).await;
                }
            }
            ClientPacket::FileTransferAccept(accept) => {
                let sender = {
                    let mut state = self.relay.lock();
                    match state.transfers.get_mut(&accept.transfer.0) {
                        Some(t) if t.acceptor.is_none() && *t.recipient == *self.user => {
                            t.acceptor = Some(self.me.clone());
                            Some(t.sender.clone())
                        }
                        _ => None,
                    }
                };
                if let Some(sender) = sender {
                    let packet = encode(FileTransferAccept {
                        transfer: accept.transfer,
                    });
                    let _ = sender.tx.send(packet).await;
                }
            }
            ClientPacket::FileChunk(chunk) => {
                if let Some(to) = self.route(chunk.transfer.0) {
                    // Relayed unchanged: 273 has the same shape both ways. Waiting for
                    // room in the recipient's queue is the transfer's flow control.
                    let _ = to.tx.send(raw).await;
                }
            }
            ClientPacket::FileTransferComplete(complete) => {
                let id = complete.transfer.0;
                if let Some(to) = self.route(id) {
                    let _ = to.tx.send(raw).await;
                }
                self.routes.remove(&id);
                self.relay.lock().transfers.remove(&id);
            }
            ClientPacket::FileTransferAbort(abort) => {
                let other = {
                    let mut state = self.relay.lock();
                    state.transfers.remove(&abort.transfer.0).map(|t| {
                        if t.sender.conn == self.me.conn {
                            t.acceptor
                        } else {
                            Some(t.sender)
                        }
                    })
                };
                self.routes.remove(&abort.transfer.0);
                if let Some(Some(peer)) = other {
                    let _ = peer.tx.send(raw).await;
                }
            }
            ClientPacket::Ping(ping) => {
                let _ = self.me.tx.send(encode(Pong { nonce: ping.nonce })).await;
            }
            ClientPacket::Pong(_) | ClientPacket::UserListsSync(_) => {}
            // The relay negotiates no extensions: like the server, it ends the connection.
            other => {
                debug_assert!(other.needs_extension_set(), "{} unhandled", other.name());
                return false;
            }
        }
        true
    }

    fn user_id(&self) -> vcom_protocol::UserId {
        self.user_id.clone()
    }

    fn route(&mut self, transfer: i32) -> Option<Peer> {
        if let Some(peer) = self.routes.get(&transfer) {
            return Some(peer.clone());
        }
        let peer = {
            let state = self.relay.lock();
            let t = state.transfers.get(&transfer)?;
            if t.sender.conn != self.me.conn {
                return None;
            }
            t.acceptor.clone()?
        };
        self.routes.insert(transfer, peer.clone());
        Some(peer)
    }

    async fn send_all(&self, peers: &[Peer], packet: &Bytes) {
        for peer in peers {
            // A closed queue is a connection on its way out: nothing to do.
            let _ = peer.tx.send(packet.clone()).await;
        }
    }
}
