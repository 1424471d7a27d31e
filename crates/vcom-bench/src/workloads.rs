//! The workloads: each logs simulated users in, drives them, and returns figures by
//! [`metric`] name. They know a target only through [`Protocol`] (and, for files, the
//! vCom packets) and a process id to read memory and CPU from.
//!
//! Every loop is bounded in count and time; nothing here sleeps to wait for a result
//! except where a server gives no signal (noted where it happens).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use futures::FutureExt as _;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vcom_protocol::{
    ClientPacket, Decoded, FileChunk, FileSize, FileTransferAccept, FileTransferComplete,
    FileTransferRequest, ServerPacket, TransferId,
};

use crate::results::metric;
use crate::vcom::Vcom;
use crate::wire::{self, Event, Protocol, Tls};

/// Figures by metric name, and latency points for the plot.
#[derive(Debug, Default)]
pub struct Figures {
    /// By [`metric`] name.
    pub metrics: BTreeMap<String, f64>,
    /// (percentile, ms) points.
    pub latency: Vec<(f64, f64)>,
}

impl Figures {
    fn set(&mut self, name: &str, value: f64) {
        self.metrics.insert(name.to_owned(), value);
    }

    fn latency_from(&mut self, histogram: &Histogram<u64>) {
        if histogram.is_empty() {
            return;
        }
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e6;
        self.set(metric::P50_MS, ms(0.50));
        self.set(metric::P90_MS, ms(0.90));
        self.set(metric::P99_MS, ms(0.99));
        self.set(metric::P999_MS, ms(0.999));
        self.set(metric::MAX_MS, histogram.max() as f64 / 1e6);
        self.latency = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0]
            .into_iter()
            .map(|p| (p, ms(p / 100.0)))
            .collect();
    }
}

/// The server process being measured, when it is on this machine.
#[derive(Debug, Clone, Copy)]
pub struct ServerProcess(pub Option<u32>);

impl ServerProcess {
    /// Resident memory in KiB (`VmRSS`).
    pub fn rss_kib(self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// User plus system CPU time so far, in µs.
    pub fn cpu_us(self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0?)).ok()?;
        // The command name (field 2) may hold spaces; fields after its ')' are fixed.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        // Clock ticks are USER_HZ, 100 per second on Linux.
        Some((utime + stime) * 10_000.0)
    }
}

/// Sizes and durations of the workloads.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Online users of the message workloads (and group members).
    pub users: usize,
    /// Warm-up before a measurement window, not counted.
    pub warm_up: Duration,
    /// The measurement window.
    pub window: Duration,
    /// Messages stored for the offline user.
    pub backlog: usize,
    /// Bytes of each file.
    pub file_size: u64,
    /// Logins in flight at once in the connection workload.
    pub login_concurrency: usize,
}

/// Draining: how long receivers may stay silent before what has not arrived is lost.
const DRAIN_IDLE: Duration = Duration::from_secs(10);
/// Draining a backlog: a server may load the whole of it before sending the first one.
const BACKLOG_IDLE: Duration = Duration::from_secs(120);
/// The longest any single phase may take (storing a million messages at 2 000 a second
/// fits; a server that stopped answering is reported failed within it).
const PHASE_LIMIT: Duration = Duration::from_secs(600);

/// One logged-in client.
pub struct Client {
    /// Its user number.
    pub user: usize,
    rd: ReadHalf<Tls>,
    wr: Arc<Mutex<WriteHalf<Tls>>>,
    buf: BytesMut,
}

/// Connects and logs `user` in; returns the client and how long that took.
pub async fn login(
    protocol: &Arc<dyn Protocol>,
    user: usize,
    persistent: bool,
) -> anyhow::Result<(Client, Duration)> {
    let start = Instant::now();
    let mut stream = wire::connect(protocol.as_ref(), user).await?;
    let mut buf = BytesMut::new();
    tokio::time::timeout(
        wire::CONNECT_TIMEOUT,
        protocol.login(user, persistent, &mut stream, &mut buf),
    )
    .await
    .with_context(|| format!("login of user {user} took over {:?}", wire::CONNECT_TIMEOUT))??;
    let took = start.elapsed();
    let (rd, wr) = tokio::io::split(stream);
    Ok((
        Client {
            user,
            rd,
            wr: Arc::new(Mutex::new(wr)),
            buf,
        },
        took,
    ))
}

/// Logs users `range` in, `concurrency` at a time.
async fn login_all(
    protocol: &Arc<dyn Protocol>,
    users: impl Iterator<Item = usize>,
    persistent: bool,
    concurrency: usize,
) -> anyhow::Result<Vec<Client>> {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    for user in users {
        let protocol = protocol.clone();
        let slots = slots.clone();
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await?;
            login(&protocol, user, persistent).await
        }));
    }
    let mut clients = Vec::with_capacity(tasks.len());
    for task in tasks {
        clients.push(task.await.context("login task failed")??.0);
    }
    Ok(clients)
}

/// What receivers count, shared with senders.
struct Tally {
    received: AtomicU64,
    in_window: AtomicU64,
    measuring: AtomicBool,
    barriers: AtomicU64,
    /// Messages that arrived before an earlier one of the same sender (must stay 0).
    reordered: AtomicU64,
    /// Closed-loop senders take a permit per expected delivery; receivers give one back
    /// per delivery.
    permits: Semaphore,
}

impl Tally {
    fn new(permits: usize) -> Arc<Tally> {
        Arc::new(Tally {
            received: AtomicU64::new(0),
            in_window: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            barriers: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            permits: Semaphore::new(permits),
        })
    }
}

/// Users logged in with a receiver running on each.
struct Fleet {
    writers: Vec<Arc<Mutex<WriteHalf<Tls>>>>,
    receivers: Vec<JoinHandle<anyhow::Result<Histogram<u64>>>>,
    tally: Arc<Tally>,
    stop: CancellationToken,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 10 min in ns, 3 significant digits.
    Ok(Histogram::new_with_bounds(1_000, 600_000_000_000, 3)?)
}

impl Fleet {
    fn start(protocol: &Arc<dyn Protocol>, clients: Vec<Client>, permits: usize) -> Fleet {
        let tally = Tally::new(permits);
        let stop = CancellationToken::new();
        let mut writers = Vec::with_capacity(clients.len());
        let mut receivers = Vec::with_capacity(clients.len());
        for client in clients {
            writers.push(client.wr.clone());
            receivers.push(tokio::spawn(receive(
                protocol.clone(),
                client,
                tally.clone(),
                stop.clone(),
            )));
        }
        Fleet {
            writers,
            receivers,
            tally,
            stop,
        }
    }

    /// Stops the receivers and merges their latency histograms.
    async fn finish(self) -> anyhow::Result<Histogram<u64>> {
        self.stop.cancel();
        let mut all = histogram()?;
        for receiver in self.receivers {
            let h = receiver.await.context("receiver task failed")??;
            all.add(h)?;
        }
        for writer in self.writers {
            let mut w = writer.lock().await;
            let _ = tokio::time::timeout(Duration::from_secs(2), w.shutdown()).await;
        }
        Ok(all)
    }

    /// Waits until `expected` messages have arrived, or none has for `idle`.
    async fn drain(&self, expected: u64, idle: Duration) {
        let mut last = self.tally.received.load(Ordering::Relaxed);
        let mut since = Instant::now();
        while last < expected && since.elapsed() < idle {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = self.tally.received.load(Ordering::Relaxed);
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
    }
}

async fn receive(
    protocol: Arc<dyn Protocol>,
    mut client: Client,
    tally: Arc<Tally>,
    stop: CancellationToken,
) -> anyhow::Result<Histogram<u64>> {
    let mut latencies = histogram()?;
    let mut replies = BytesMut::new();
    // The next sequence number expected from each sender: one sender's messages to one
    // recipient must arrive in the order sent.
    let mut next_seq: std::collections::HashMap<usize, u64> = std::collections::HashMap::new();
    loop {
        while let Some(event) = protocol.decode(&mut client.buf, &mut replies)? {
            match event {
                Event::Message(body) => {
                    // MQTT without no-local echoes a group message to its sender.
                    if wire::sender_of(&body) == Some(client.user) {
                        continue;
                    }
                    tally.received.fetch_add(1, Ordering::Relaxed);
                    tally.permits.add_permits(1);
                    if let (Some(sender), Some(seq)) = (wire::sender_of(&body), wire::seq_of(&body))
                    {
                        let next = next_seq.entry(sender).or_default();
                        if seq < *next {
                            tally.reordered.fetch_add(1, Ordering::Relaxed);
                        }
                        *next = (*next).max(seq + 1);
                    }
                    if tally.measuring.load(Ordering::Relaxed) {
                        tally.in_window.fetch_add(1, Ordering::Relaxed);
                        if let Some(sent) = wire::sent_ns(&body) {
                            latencies.saturating_record(wire::now_ns().saturating_sub(sent));
                        }
                    }
                }
                Event::Barrier => {
                    tally.barriers.fetch_add(1, Ordering::Relaxed);
                }
                Event::Other => {}
            }
        }
        if !replies.is_empty() {
            client.wr.lock().await.write_all(&replies).await?;
            replies.clear();
        }
        client.buf.reserve(16 * 1024);
        tokio::select! {
            _ = stop.cancelled() => return Ok(latencies),
            n = client.rd.read_buf(&mut client.buf) => {
                if n? == 0 {
                    return Ok(latencies);
                }
            }
        }
    }
}

/// A small, fast generator for picking recipients (not for anything secret).
struct XorShift(u64);

impl XorShift {
    fn new(seed: usize) -> XorShift {
        XorShift((seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }

    /// A user other than `me` among `0..n`.
    fn other(&mut self, me: usize, n: usize) -> usize {
        let pick = self.below(n.saturating_sub(1));
        if pick >= me { pick + 1 } else { pick }
    }
}

/// Connection workload: `n` clients log in, `concurrency` at a time, and stay idle.
pub async fn connections(
    protocol: Arc<dyn Protocol>,
    server: ServerProcess,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Figures> {
    let before = server.rss_kib();
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for user in 0..n {
        let protocol = protocol.clone();
        let slots = slots.clone();
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await?;
            login(&protocol, user, false).await
        }));
    }
    let mut clients = Vec::with_capacity(n);
    let mut latencies = histogram()?;
    let mut failures = Vec::new();
    for task in tasks {
        match task.await.context("login task failed")? {
            Ok((client, took)) => {
                latencies.saturating_record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
                clients.push(client);
            }
            Err(e) => failures.push(e),
        }
    }
    let elapsed = start.elapsed();
    if clients.is_empty() {
        if let Some(e) = failures.into_iter().next() {
            return Err(e.context("no client could log in"));
        }
        bail!("no client could log in");
    }
    if let Some(e) = failures.first() {
        tracing::warn!(failed = failures.len(), first = %format!("{e:#}"), "some logins failed");
    }
    // The server frees handshake state after the last login; give it a moment before
    // reading its memory (no signal exists for "idle").
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    let mut figures = Figures::default();
    let connected = clients.len() as f64;
    figures.set(metric::CONNECTED, connected);
    figures.set(metric::LOGINS_PER_S, connected / elapsed.as_secs_f64());
    figures.set(
        metric::LOGIN_P50_MS,
        latencies.value_at_quantile(0.5) as f64 / 1e6,
    );
    figures.set(
        metric::LOGIN_P99_MS,
        latencies.value_at_quantile(0.99) as f64 / 1e6,
    );
    if let (Some(before), Some(after)) = (before, after) {
        figures.set(metric::RSS_PER_CONN_KIB, (after - before) / connected);
        figures.set(metric::RSS_MIB, after / 1024.0);
    }
    drop(clients);
    Ok(figures)
}

/// How the direct workload's senders pace themselves.
#[derive(Debug, Clone, Copy)]
pub enum Rate {
    /// As fast as the server delivers, with a window of messages in flight per user.
    Max,
    /// This many messages a second in all, spread evenly over the users.
    Steady(u64),
}

/// Messages in flight per user when sending at the maximum rate: far below the vCom
/// server's outbound queue (1 024), so no recipient is dropped as too slow.
const WINDOW_PER_USER: usize = 8;
/// Messages a closed-loop sender writes at once.
const SEND_BATCH: usize = 4;

/// Direct messages: `plan.users` online users send to random online users.
pub async fn direct(
    protocol: Arc<dyn Protocol>,
    server: ServerProcess,
    plan: &Plan,
    rate: Rate,
) -> anyhow::Result<Figures> {
    let users = plan.users.max(2);
    let clients = login_all(&protocol, 0..users, false, plan.login_concurrency).await?;
    let fleet = Fleet::start(&protocol, clients, users * WINDOW_PER_USER);
    let sent = Arc::new(AtomicU64::new(0));
    let stop_sending = CancellationToken::new();
    let mut senders = Vec::with_capacity(users);
    let start = tokio::time::Instant::now();
    for (me, writer) in fleet.writers.iter().enumerate() {
        let sender = Sender {
            protocol: protocol.clone(),
            me,
            users,
            writer: writer.clone(),
            tally: fleet.tally.clone(),
            sent: sent.clone(),
            stop: stop_sending.clone(),
        };
        senders.push(tokio::spawn(match rate {
            Rate::Max => sender.closed_loop().boxed(),
            Rate::Steady(total) => {
                // A rate beyond a message per microsecond per user would make the period
                // zero, which no timer takes: it is clamped there.
                let period = Duration::from_secs_f64(users as f64 / total.max(1) as f64)
                    .max(Duration::from_micros(1));
                let phase = period.mul_f64(me as f64 / users as f64);
                sender.paced(start + phase, period).boxed()
            }
        }));
    }
    let figures = measure(&fleet, server, plan, sent.clone()).await;
    stop_sending.cancel();
    for sender in senders {
        sender.await.context("sender task failed")??;
    }
    let total_sent = sent.load(Ordering::Relaxed);
    fleet.drain(total_sent, DRAIN_IDLE).await;
    let received = fleet.tally.received.load(Ordering::Relaxed);
    let reordered = fleet.tally.reordered.load(Ordering::Relaxed);
    let latencies = fleet.finish().await?;
    let mut figures = figures?;
    figures.set(metric::LOST, total_sent.saturating_sub(received) as f64);
    figures.set(metric::REORDERED, reordered as f64);
    figures.latency_from(&latencies);
    Ok(figures)
}

/// Opens the measurement window after the warm-up, closes it, and takes the counts.
async fn measure(
    fleet: &Fleet,
    server: ServerProcess,
    plan: &Plan,
    sent: Arc<AtomicU64>,
) -> anyhow::Result<Figures> {
    tokio::time::sleep(plan.warm_up).await;
    let cpu_before = server.cpu_us();
    let sent_before = sent.load(Ordering::Relaxed);
    fleet.tally.measuring.store(true, Ordering::Relaxed);
    let opened = Instant::now();
    tokio::time::sleep(plan.window).await;
    fleet.tally.measuring.store(false, Ordering::Relaxed);
    let seconds = opened.elapsed().as_secs_f64();
    let cpu_after = server.cpu_us();
    let delivered = fleet.tally.in_window.load(Ordering::Relaxed) as f64;
    let mut figures = Figures::default();
    figures.set(metric::DELIVERED_PER_S, delivered / seconds);
    figures.set(
        metric::SENT,
        (sent.load(Ordering::Relaxed) - sent_before) as f64,
    );
    if let (Some(before), Some(after)) = (cpu_before, cpu_after)
        && delivered > 0.0
    {
        figures.set(metric::SERVER_CPU_US_PER_MSG, (after - before) / delivered);
    }
    if let Some(rss) = server.rss_kib() {
        figures.set(metric::RSS_MIB, rss / 1024.0);
    }
    Ok(figures)
}

/// One user's sending loop.
struct Sender {
    protocol: Arc<dyn Protocol>,
    me: usize,
    users: usize,
    writer: Arc<Mutex<WriteHalf<Tls>>>,
    tally: Arc<Tally>,
    sent: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Sender {
    fn count(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Sends whenever the window has room.
    async fn closed_loop(self) -> anyhow::Result<()> {
        let mut pick = XorShift::new(self.me);
        let mut out = BytesMut::new();
        let mut seq = 0u64;
        loop {
            let permit = tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                p = self.tally.permits.acquire_many(SEND_BATCH as u32) => p?,
            };
            permit.forget();
            out.clear();
            for _ in 0..SEND_BATCH {
                let to = pick.other(self.me, self.users);
                let body = wire::payload(wire::now_ns(), self.me, seq);
                self.protocol.direct(self.me, to, &body, &mut out);
                seq += 1;
            }
            self.writer.lock().await.write_all(&out).await?;
            self.count(SEND_BATCH as u64);
        }
    }

    /// Sends one message every `period`, from `first` on.
    async fn paced(self, first: tokio::time::Instant, period: Duration) -> anyhow::Result<()> {
        let mut pick = XorShift::new(self.me);
        let mut out = BytesMut::new();
        let mut seq = 0u64;
        let mut ticks = tokio::time::interval_at(first, period);
        // A late tick is sent at once: the offered rate holds even when the load
        // generator or the server falls behind (an open loop).
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                _ = ticks.tick() => {}
            }
            out.clear();
            let to = pick.other(self.me, self.users);
            let body = wire::payload(wire::now_ns(), self.me, seq);
            self.protocol.direct(self.me, to, &body, &mut out);
            seq += 1;
            self.writer.lock().await.write_all(&out).await?;
            self.count(1);
        }
    }
}

/// What one phase of a soak counted (see [`steady_phase`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseCounts {
    /// Messages written by the senders.
    pub sent: u64,
    /// Messages that arrived.
    pub received: u64,
    /// Messages that arrived before an earlier one of the same sender.
    pub reordered: u64,
    /// Logins: every user once, plus the churning ones.
    pub logins: u64,
}

/// One phase of a soak (`vcom-bench soak`): users `0..users` log in (again: the same
/// devices, so a phase after the first is a reconnect of everyone), send direct
/// messages to each other at `rate` in all for `window`, stop, and wait until every
/// message sent has arrived (or none has for 10 s). Meanwhile users
/// `users..users + churn`, who receive nothing, log in and out again and again, each
/// staying about `churn_stay`. The senders keep their pace whatever the server does
/// (an open loop, as in [`direct`] at a steady rate).
pub async fn steady_phase(
    protocol: Arc<dyn Protocol>,
    users: usize,
    churn: usize,
    churn_stay: Duration,
    rate: u64,
    window: Duration,
) -> anyhow::Result<PhaseCounts> {
    let users = users.max(2);
    let clients = login_all(&protocol, 0..users, false, 256).await?;
    let fleet = Fleet::start(&protocol, clients, 0);
    let sent = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let churn_logins = Arc::new(AtomicU64::new(0));
    let churners: Vec<_> = (users..users + churn)
        .map(|user| {
            let protocol = protocol.clone();
            let stop = stop.clone();
            let logins = churn_logins.clone();
            // Spread over the stay, so that logins and logouts never stop.
            let offset = churn_stay.mul_f64((user - users) as f64 / churn.max(1) as f64);
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => return anyhow::Ok(()),
                    _ = tokio::time::sleep(offset) => {}
                }
                while !stop.is_cancelled() {
                    let (client, _) = login(&protocol, user, false).await?;
                    logins.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(churn_stay) => {}
                    }
                    let mut wr = client.wr.lock().await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), wr.shutdown()).await;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let period =
        Duration::from_secs_f64(users as f64 / rate.max(1) as f64).max(Duration::from_micros(1));
    let start = tokio::time::Instant::now();
    let senders: Vec<_> = fleet
        .writers
        .iter()
        .enumerate()
        .map(|(me, writer)| {
            let sender = Sender {
                protocol: protocol.clone(),
                me,
                users,
                writer: writer.clone(),
                tally: fleet.tally.clone(),
                sent: sent.clone(),
                stop: stop.clone(),
            };
            let phase = period.mul_f64(me as f64 / users as f64);
            tokio::spawn(sender.paced(start + phase, period))
        })
        .collect();
    tokio::time::sleep(window).await;
    stop.cancel();
    for sender in senders {
        sender.await.context("sender task failed")??;
    }
    for churner in churners {
        churner.await.context("churn task failed")??;
    }
    let sent = sent.load(Ordering::Relaxed);
    fleet.drain(sent, DRAIN_IDLE).await;
    let received = fleet.tally.received.load(Ordering::Relaxed);
    let reordered = fleet.tally.reordered.load(Ordering::Relaxed);
    fleet.finish().await?;
    Ok(PhaseCounts {
        sent,
        received,
        reordered,
        logins: users as u64 + churn_logins.load(Ordering::Relaxed),
    })
}

/// Group messages in flight while measuring fan-out.
const GROUP_WINDOW: usize = 4;

/// Group fan-out: every user is a member; user 0 sends, everyone else receives.
pub async fn group(
    protocol: Arc<dyn Protocol>,
    server: ServerProcess,
    plan: &Plan,
) -> anyhow::Result<Figures> {
    let users = plan.users.max(2);
    let clients = login_all(&protocol, 0..users, false, plan.login_concurrency).await?;
    let members: Vec<usize> = (0..users).collect();
    protocol.prepare_group(&members).await?;
    let per_message = users - 1;
    let fleet = Fleet::start(&protocol, clients, per_message * GROUP_WINDOW);
    let sent = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let sender = {
        let protocol = protocol.clone();
        let writer = fleet.writers[0].clone();
        let tally = fleet.tally.clone();
        let sent = sent.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut out = BytesMut::new();
            let mut seq = 0u64;
            let need = u32::try_from(per_message).unwrap_or(u32::MAX);
            loop {
                let permit = tokio::select! {
                    _ = stop.cancelled() => return anyhow::Ok(()),
                    p = tally.permits.acquire_many(need) => p?,
                };
                permit.forget();
                out.clear();
                protocol.group(0, &wire::payload(wire::now_ns(), 0, seq), &mut out);
                seq += 1;
                writer.lock().await.write_all(&out).await?;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let figures = measure(&fleet, server, plan, sent.clone()).await;
    stop.cancel();
    sender.await.context("group sender failed")??;
    let expected = sent.load(Ordering::Relaxed) * per_message as u64;
    fleet.drain(expected, DRAIN_IDLE).await;
    let received = fleet.tally.received.load(Ordering::Relaxed);
    let reordered = fleet.tally.reordered.load(Ordering::Relaxed);
    let latencies = fleet.finish().await?;
    let mut figures = figures?;
    figures.set(metric::REORDERED, reordered as f64);
    // What the window counted are deliveries (one per member); SENT is group messages.
    figures.set(metric::LOST, expected.saturating_sub(received) as f64);
    figures.latency_from(&latencies);
    Ok(figures)
}

/// Senders storing the backlog at once, unless told otherwise.
pub const BACKLOG_SENDERS: usize = 4;
/// Messages a backlog sender writes at once.
const BACKLOG_BATCH: usize = 64;

/// Offline backlog: `plan.backlog` messages are stored for user 0 by `senders` senders
/// at once while it is offline, then it logs in and receives them.
pub async fn backlog(
    protocol: Arc<dyn Protocol>,
    server: ServerProcess,
    plan: &Plan,
    senders: usize,
) -> anyhow::Result<Figures> {
    let senders = senders.max(1);
    let total = plan.backlog.max(senders);
    // The recipient becomes known to the server, then leaves.
    let (first, _) = login(&protocol, 0, true).await?;
    {
        let mut w = first.wr.lock().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), w.shutdown()).await;
    }
    drop(first);
    // The server learns of the close asynchronously and gives no signal; a message that
    // reached a session on its way out would be written to a dead socket.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let clients = login_all(&protocol, 1..=senders, false, senders).await?;
    let fleet = Fleet::start(&protocol, clients, 0);
    let per_sender = total / senders;
    let stored_total = per_sender * senders;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, writer) in fleet.writers.iter().enumerate() {
        let protocol = protocol.clone();
        let writer = writer.clone();
        let me = i + 1;
        tasks.push(tokio::spawn(async move {
            let mut out = BytesMut::new();
            let mut seq = 0u64;
            while (seq as usize) < per_sender {
                out.clear();
                let n = BACKLOG_BATCH.min(per_sender - seq as usize);
                for _ in 0..n {
                    protocol.direct(me, 0, &wire::payload(wire::now_ns(), me, seq), &mut out);
                    seq += 1;
                }
                writer.lock().await.write_all(&out).await?;
            }
            out.clear();
            protocol.barrier(&mut out);
            writer.lock().await.write_all(&out).await?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        tokio::time::timeout(PHASE_LIMIT, task)
            .await
            .context("storing the backlog took too long")?
            .context("backlog sender failed")??;
    }
    let deadline = Instant::now() + PHASE_LIMIT;
    while fleet.tally.barriers.load(Ordering::Relaxed) < senders as u64 {
        if Instant::now() > deadline {
            bail!("the server did not answer the senders' pings");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stored_secs = start.elapsed().as_secs_f64();
    fleet.finish().await?;

    // The recipient comes back.
    let start = Instant::now();
    let (client, _) = login(&protocol, 0, true).await?;
    let recipient = Fleet::start(&protocol, vec![client], 0);
    recipient.tally.measuring.store(true, Ordering::Relaxed);
    recipient.drain(stored_total as u64, BACKLOG_IDLE).await;
    let received = recipient.tally.received.load(Ordering::Relaxed);
    let reordered = recipient.tally.reordered.load(Ordering::Relaxed);
    let delivered_secs = start.elapsed().as_secs_f64();
    recipient.finish().await?;
    let mut figures = Figures::default();
    figures.set(metric::SENT, stored_total as f64);
    figures.set(metric::STORED_PER_S, stored_total as f64 / stored_secs);
    figures.set(metric::DELIVERED_PER_S, received as f64 / delivered_secs);
    figures.set(
        metric::LOST,
        (stored_total as u64).saturating_sub(received) as f64,
    );
    figures.set(metric::REORDERED, reordered as f64);
    if let Some(rss) = server.rss_kib() {
        figures.set(metric::RSS_MIB, rss / 1024.0);
    }
    Ok(figures)
}

/// Chunks a file sender writes at once.
const CHUNKS_PER_WRITE: usize = 64;

/// File relay: `pairs` transfers of `plan.file_size` bytes at once, each from user `i`
/// to user `pairs + i`.
pub async fn files(
    vcom: Arc<Vcom>,
    server: ServerProcess,
    plan: &Plan,
    pairs: usize,
) -> anyhow::Result<Figures> {
    let protocol: Arc<dyn Protocol> = vcom.clone();
    let size = FileSize::new(plan.file_size).context("file size out of range")?;
    let mut tasks = Vec::new();
    let clients = login_all(&protocol, 0..2 * pairs, false, plan.login_concurrency).await?;
    let mut clients = clients.into_iter();
    let mut senders = Vec::new();
    for _ in 0..pairs {
        senders.extend(clients.next());
    }
    let recipients: Vec<Client> = clients.collect();
    let start = Instant::now();
    for (sender, recipient) in senders.into_iter().zip(recipients) {
        tasks.push(tokio::spawn(transfer(
            vcom.clone(),
            sender,
            recipient,
            size,
        )));
    }
    let mut bytes = 0u64;
    let mut first_chunk: Option<Instant> = None;
    for task in tasks {
        let (began, got) = tokio::time::timeout(PHASE_LIMIT, task)
            .await
            .context("the transfers took too long")?
            .context("transfer task failed")??;
        bytes += got;
        first_chunk = Some(first_chunk.map_or(began, |f| f.min(began)));
    }
    let seconds = first_chunk.unwrap_or(start).elapsed().as_secs_f64();
    let mut figures = Figures::default();
    figures.set(metric::MB_PER_S, bytes as f64 / 1e6 / seconds);
    if let Some(rss) = server.rss_kib() {
        figures.set(metric::RSS_MIB, rss / 1024.0);
    }
    Ok(figures)
}

/// One transfer; returns when its first chunk was sent and the bytes received.
async fn transfer(
    vcom: Arc<Vcom>,
    sender: Client,
    recipient: Client,
    size: FileSize,
) -> anyhow::Result<(Instant, u64)> {
    let limits = vcom.limits();
    let (mut s_rd, s_wr, mut s_buf) = (sender.rd, sender.wr, sender.buf);
    let (mut r_rd, r_wr, mut r_buf) = (recipient.rd, recipient.wr, recipient.buf);
    let to = vcom_protocol::UserId::new(crate::vcom::user_name(recipient.user))?;
    write_packet(
        &s_wr,
        FileTransferRequest {
            recipient: to,
            size,
            name: "bench.bin".to_owned(),
        },
    )
    .await?;
    let transfer = loop {
        match read_half_packet(&mut s_rd, &mut s_buf, &limits).await? {
            ServerPacket::FileTransferId(id) => break id.transfer,
            ServerPacket::FileTransferAbort(a) => bail!("transfer refused: {}", a.reason),
            _ => {}
        }
    };
    loop {
        match read_half_packet(&mut r_rd, &mut r_buf, &limits).await? {
            ServerPacket::FileTransferOffer(o) if o.transfer == transfer => break,
            _ => {}
        }
    }
    write_packet(&r_wr, FileTransferAccept { transfer }).await?;
    loop {
        match read_half_packet(&mut s_rd, &mut s_buf, &limits).await? {
            ServerPacket::FileTransferAccept(a) if a.transfer == transfer => break,
            ServerPacket::FileTransferAbort(a) => bail!("transfer aborted: {}", a.reason),
            _ => {}
        }
    }
    let began = Instant::now();
    let total = size.bytes();
    let sending = tokio::spawn(send_chunks(s_wr, transfer, total));
    let mut received = 0u64;
    loop {
        match read_half_packet(&mut r_rd, &mut r_buf, &limits).await? {
            ServerPacket::FileChunk(c) if c.transfer == transfer => received += c.data.len() as u64,
            ServerPacket::FileTransferComplete(c) if c.transfer == transfer => break,
            ServerPacket::FileTransferAbort(a) => bail!("transfer aborted: {}", a.reason),
            _ => {}
        }
    }
    sending.await.context("chunk sender failed")??;
    if received != total {
        bail!("received {received} of {total} bytes");
    }
    Ok((began, received))
}

async fn send_chunks(
    writer: Arc<Mutex<WriteHalf<Tls>>>,
    transfer: TransferId,
    total: u64,
) -> anyhow::Result<()> {
    let chunk = Bytes::from(vec![0x5a; vcom_protocol::Limits::MAX_CHUNK_LEN]);
    let mut block = BytesMut::new();
    for _ in 0..CHUNKS_PER_WRITE {
        ClientPacket::from(FileChunk {
            transfer,
            data: chunk.clone(),
        })
        .encode(&mut block);
    }
    let block = block.freeze();
    let chunk_len = chunk.len() as u64;
    let mut left = total;
    let mut w = writer.lock().await;
    while left >= chunk_len * CHUNKS_PER_WRITE as u64 {
        w.write_all(&block).await?;
        left -= chunk_len * CHUNKS_PER_WRITE as u64;
    }
    let mut tail = BytesMut::new();
    while left > 0 {
        let n = left.min(chunk_len);
        ClientPacket::from(FileChunk {
            transfer,
            data: chunk.slice(..n as usize),
        })
        .encode(&mut tail);
        left -= n;
    }
    ClientPacket::from(FileTransferComplete { transfer }).encode(&mut tail);
    w.write_all(&tail).await?;
    w.flush().await?;
    Ok(())
}

async fn write_packet(
    writer: &Arc<Mutex<WriteHalf<Tls>>>,
    packet: impl Into<ClientPacket>,
) -> anyhow::Result<()> {
    let bytes = packet.into().to_bytes();
    writer.lock().await.write_all(&bytes).await?;
    Ok(())
}

async fn read_half_packet(
    rd: &mut ReadHalf<Tls>,
    buf: &mut BytesMut,
    limits: &vcom_protocol::Limits,
) -> anyhow::Result<ServerPacket> {
    let read = async {
        loop {
            if let Decoded::Complete { packet, len } = ServerPacket::decode(buf, limits)? {
                let _ = buf.split_to(len);
                return anyhow::Ok(packet);
            }
            buf.reserve(64 * 1024);
            if rd.read_buf(buf).await? == 0 {
                bail!("the server closed the connection");
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .context("no packet from the server within 60 s")?
}
