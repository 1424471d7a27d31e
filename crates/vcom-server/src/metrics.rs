//! The Prometheus metrics endpoint (`metrics_listen`): `GET /metrics` over plain HTTP,
//! answered in the OpenMetrics text format, built at each scrape from the server's
//! counters (`stats`), its registry and transfer table, and the store's counts.
//!
//! The listener is the smallest HTTP there can be: one request per connection, its head
//! read within a few seconds and a few KiB, a few connections at once; anything but
//! `GET /metrics` is a 404. It is off unless configured, and refused on an address other
//! machines can reach unless `metrics_allow_remote` says so (there is no login on it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vcom_store::Store;

use crate::server::Shared;

/// Scrapes served at once; more wait in the listener's backlog.
const MAX_SCRAPES: usize = 4;
/// The most bytes of a request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a scraper has to send its request, and to take the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves scrapes until the server shuts down.
pub(crate) async fn serve<S: Store>(shared: Arc<Shared<S>>, listener: TcpListener) {
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(place) = Arc::clone(&places).acquire_owned().await else {
            return;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(SCRAPE_TIMEOUT, answer(&shared, stream)).await;
            drop(place);
        });
    }
}

/// Reads one request head and answers it.
async fn answer<S: Store>(shared: &Shared<S>, mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = first_line.split(|&b| b == b' ');
    let (method, target) = (words.next(), words.next());
    let (status, content_type, body) = if method == Some(b"GET") && target == Some(b"/metrics") {
        match render(shared).await {
            Ok(body) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body,
            ),
            Err(e) => (
                "500 Internal Server Error",
                "text/plain; charset=utf-8",
                format!("cannot read the store: {e}\n"),
            ),
        }
    } else {
        (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "only GET /metrics is served here\n".to_owned(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A counter holding `value`.
fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

/// A gauge holding `value`.
fn gauge(value: u64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    gauge
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The metrics, now, in the OpenMetrics text format.
pub(crate) async fn render<S: Store>(shared: &Shared<S>) -> Result<String, vcom_store::StoreError> {
    let stored = shared.store.stats().await?;
    let stats = &shared.stats;
    let sessions = shared.sessions.all();
    let queued: u64 = sessions
        .iter()
        .map(|s| (s.tx.max_capacity() - s.tx.capacity()) as u64)
        .sum();

    let mut registry = Registry::with_prefix("vcom");
    registry.register(
        "connections",
        "TCP connections accepted",
        counter(load(&stats.connections)),
    );
    registry.register("logins", "Logins accepted", counter(load(&stats.logins)));
    let refusals = Family::<Vec<(&'static str, String)>, Counter>::default();
    for (code, count) in stats.denials_by_code.iter().enumerate() {
        refusals
            .get_or_create(&vec![("code", code.to_string())])
            .inc_by(load(count));
    }
    registry.register("login_refusals", "Logins refused (258), by code", refusals);
    registry.register(
        "protocol_violations",
        "Connections closed for a protocol violation",
        counter(load(&stats.violations)),
    );
    registry.register(
        "messages_relayed",
        "Messages stored and relayed to online devices",
        counter(load(&stats.messages)),
    );
    registry.register(
        "message_bytes_relayed",
        "Bytes of the bodies of those messages",
        counter(load(&stats.message_bytes)),
    );
    registry.register(
        "broadcasts",
        "Broadcasts sent",
        counter(load(&stats.broadcasts)),
    );
    let transfers = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    transfers
        .get_or_create(&vec![("outcome", "completed")])
        .inc_by(load(&stats.transfers_completed));
    transfers
        .get_or_create(&vec![("outcome", "aborted")])
        .inc_by(load(&stats.transfers_aborted));
    registry.register("transfers", "File transfers ended, by outcome", transfers);
    registry.register(
        "file_bytes_relayed",
        "File bytes relayed",
        counter(load(&stats.file_bytes_relayed)),
    );
    registry.register(
        "commit_seconds",
        "Time from a message handed to the store to its commit",
        stats.commit_seconds.clone(),
    );
    registry.register(
        "online_sessions",
        "Logged-in sessions now",
        gauge(sessions.len() as u64),
    );
    registry.register(
        "queued_packets",
        "Packets waiting in the sessions' outbound queues now",
        gauge(queued),
    );
    registry.register(
        "active_transfers",
        "File transfers offered or streaming now",
        gauge(shared.transfers.len() as u64),
    );
    registry.register(
        "pending_deliveries",
        "Direct messages waiting for a user none of whose devices has them",
        gauge(stored.pending_deliveries),
    );
    registry.register("stored_users", "Known users", gauge(stored.users));
    registry.register("stored_messages", "Messages stored", gauge(stored.messages));

    let mut out = String::new();
    encode(&mut out, &registry).map_err(|e| vcom_store::StoreError::Corrupt(e.to_string()))?;
    Ok(out)
}
