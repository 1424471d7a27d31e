//! Floods (`docs/reliability.md`, "Floods"): thousands of connections opened and dropped,
//! with and without TLS handshakes, and login storms past the server's capacity. The
//! server refuses what it cannot take (258 code 6 for logins past `max_connections`, a
//! closed socket past `max_pending_logins`), never crashes, releases every socket and
//! place, and serves a normal login afterwards.
//!
//! Client and server share this process and its 20 000 open files: no test here holds
//! more than about 4 000 at once, and they run one at a time ([`MEASURING`]) so that the
//! count of open sockets each checks is its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use hostile::{MEASURING, Raw, Sampler, eventually, open_sockets, stat};
use tokio::net::TcpStream;
use vcom_protocol::{ConnectionRequest, DenyCode, DeviceId, ServerPacket};
use vcom_server::ServerConfig;
use vcom_tests::harness::{
    Endpoint, Identity, TIMEOUT, TestServer, login, start_with_users, try_tls_connect_to,
};

/// Connections opened per flood.
const FLOOD: usize = 2000;

/// Waits until the process holds no more sockets than `baseline`: every connection of the
/// flood is closed on both sides. (Other files may grow: the store opens more readers
/// under load.)
async fn sockets_back_to(baseline: usize) {
    eventually(&format!("open sockets back to {baseline}"), || async {
        open_sockets() <= baseline
    })
    .await;
}

/// Once the flood is over, every place for a connection still logging in is free again:
/// `places` handshakes at once all get through (a place lost for good would refuse one
/// of them for ever; one the server has not yet given back is retried).
async fn every_pending_place_is_free(server: &TestServer, places: usize) {
    let target = server.target();
    eventually("every place for a pending login is free", || {
        let target = target.clone();
        async move {
            let attempts = (0..places).map(|_| {
                let target = target.clone();
                async move { try_tls_connect_to(&target, None).await }
            });
            let results = futures::future::join_all(attempts).await;
            results.iter().all(|r| r.is_ok())
        }
    })
    .await;
}

fn small_pending(c: &mut ServerConfig) {
    c.max_pending_logins = 64;
    c.max_pending_logins_per_ip = 64;
}

/// 2 000 TCP connections opened (a few hundred at a time) and dropped without a byte:
/// the server accepts each (and refuses at once what is past `max_pending_logins`),
/// closes every socket, keeps no place taken, and logs the next user in.
#[tokio::test]
async fn two_thousand_tcp_connections_opened_and_dropped_leave_nothing_behind() {
    let _measuring = MEASURING.lock().await;
    let (_dir, server, [alice, bob]) = start_with_users(small_pending, ["alice", "bob"]).await;
    let sampler = Sampler::start(alice, bob, "bob");
    let baseline = open_sockets();
    let accepted_before = stat(&server, "connections").await;
    let start = Instant::now();
    let mut opened = 0;
    while opened < FLOOD {
        let wave: Vec<TcpStream> = futures::future::join_all(
            (0..500).map(|_| async { TcpStream::connect(server.addr).await.unwrap() }),
        )
        .await;
        opened += wave.len();
        drop(wave);
    }
    let (_alice, _bob, latencies) = sampler.finish().await;
    eventually("the server accepted every connection", || async {
        stat(&server, "connections").await - accepted_before >= FLOOD as u64
    })
    .await;
    sockets_back_to(baseline).await;
    every_pending_place_is_free(&server, 64).await;
    eprintln!(
        "{FLOOD} TCP connections opened and dropped in {:?}; open sockets back to {baseline}",
        start.elapsed()
    );
    latencies.report(&format!("{FLOOD} TCP connections came and went"));
    let _carol = login(&server, "carol").await;
    assert_eq!(stat(&server, "online_sessions").await, 3);
    server.stop().await;
}

/// 2 000 TLS handshakes (64 at a time), each connection dropped right after its handshake
/// without a login: every socket is closed, no place stays taken, no session appears,
/// and the next user logs in.
#[tokio::test]
async fn two_thousand_tls_handshakes_opened_and_dropped_leave_nothing_behind() {
    let _measuring = MEASURING.lock().await;
    let (_dir, server, [alice, bob]) = start_with_users(small_pending, ["alice", "bob"]).await;
    let sampler = Sampler::start(alice, bob, "bob");
    let baseline = open_sockets();
    let target = server.target();
    let start = Instant::now();
    let done = futures::stream::iter(0..FLOOD)
        .map(|_| {
            let target = target.clone();
            async move { try_tls_connect_to(&target, None).await.is_ok() }
        })
        .buffer_unordered(64)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let elapsed = start.elapsed();
    let (_alice, _bob, latencies) = sampler.finish().await;
    // A handshake whose place the server had not yet given back may be refused; most
    // are not.
    assert!(
        done > FLOOD / 2,
        "only {done} of {FLOOD} handshakes completed"
    );
    sockets_back_to(baseline).await;
    every_pending_place_is_free(&server, 64).await;
    eprintln!(
        "{FLOOD} TLS handshakes ({done} completed) dropped in {elapsed:?}; open sockets back to {baseline}"
    );
    latencies.report(&format!("{FLOOD} TLS handshakes came and went"));
    assert_eq!(stat(&server, "online_sessions").await, 2);
    assert_eq!(stat(&server, "logins").await, 2);
    let _carol = login(&server, "carol").await;
    server.stop().await;
}

/// How a login of the storm ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Accepted,
    Denied(DenyCode),
    /// Closed before any answer: refused while still logging in.
    Unanswered,
}

/// One login of a storm: TLS, 256, and the first answer; the connection is kept open
/// so that accepted sessions stay. A refused handshake counts as unanswered.
async fn storm_login(
    target: vcom_tests::harness::Target,
    identity: Arc<Identity>,
    i: usize,
) -> (Option<Raw>, Ending) {
    let Ok(mut raw) = Raw::try_connect_to(&target, Some(&identity)).await else {
        return (None, Ending::Unanswered);
    };
    raw.send(ConnectionRequest {
        user: format!("user{i}"),
        device: DeviceId::NEW,
        password: bytes::Bytes::new(),
    })
    .await;
    let ending = match tokio::time::timeout(TIMEOUT, raw.io.next()).await {
        Err(_) => panic!("no answer to a login within {TIMEOUT:?}"),
        Ok(Some(Ok(ServerPacket::ConnectionAccepted(_)))) => Ending::Accepted,
        Ok(Some(Ok(ServerPacket::ConnectionDenied(d)))) => Ending::Denied(d.code),
        Ok(Some(Ok(other))) => panic!("expected 257 or 258, got {other:?}"),
        Ok(None | Some(Err(_))) => Ending::Unanswered,
    };
    (Some(raw), ending)
}

/// `n` logins at once as `storm_login`s: how each ended, and the connections they left
/// open (accepted sessions stay until these are dropped).
async fn storm(server: &TestServer, n: usize) -> (Vec<Ending>, Vec<Raw>) {
    let target = server.target();
    let identity = Arc::new(Identity::generate("storm"));
    let attempts: Vec<_> = (0..n)
        .map(|i| tokio::spawn(storm_login(target.clone(), identity.clone(), i)))
        .collect();
    let (mut endings, mut held) = (Vec::new(), Vec::new());
    for attempt in attempts {
        let (client, ending) = tokio::time::timeout(TIMEOUT, attempt)
            .await
            .expect("every login of the storm ends in time")
            .unwrap();
        endings.push(ending);
        held.extend(client);
    }
    (endings, held)
}

/// How many of `endings` are `which`.
fn count(endings: &[Ending], which: Ending) -> usize {
    endings.iter().filter(|e| **e == which).count()
}

/// 1 000 users log in at once on a server that takes 100 (`max_connections`): exactly
/// 100 are accepted and every other login is answered 258 code 6; the server serves on,
/// and once they are gone a new login works and no session or open file is left.
#[tokio::test]
async fn a_login_storm_past_max_connections_is_answered_code_6_and_the_server_serves_on() {
    const STORM: usize = 1000;
    const CAPACITY: usize = 100;
    let _measuring = MEASURING.lock().await;
    let (_dir, server, [alice, bob]) = start_with_users(
        |c| {
            c.max_connections = CAPACITY;
            c.max_pending_logins = 2 * STORM;
            c.max_pending_logins_per_ip = 0;
        },
        ["alice", "bob"],
    )
    .await;
    let sampler = Sampler::start(alice, bob, "bob");
    let baseline = open_sockets();
    let start = Instant::now();
    let (endings, held) = storm(&server, STORM).await;
    let elapsed = start.elapsed();
    let accepted = count(&endings, Ending::Accepted);
    let full = count(&endings, Ending::Denied(DenyCode::ServerFull));
    let (_alice, _bob, latencies) = sampler.finish().await;
    eprintln!(
        "login storm: {STORM} logins at once against {CAPACITY} places (2 already taken): \
         {accepted} accepted, {full} refused with code 6, in {elapsed:?}"
    );
    latencies.report(&format!("{STORM} users stormed the login"));
    assert_eq!(accepted, CAPACITY - 2, "exactly the free places are taken");
    assert_eq!(full, STORM - accepted);
    drop(held);
    eventually("every stormer's session released", || async {
        stat(&server, "online_sessions").await == 2
    })
    .await;
    sockets_back_to(baseline).await;
    let _carol = login(&server, "carol").await;
    server.stop().await;
}

/// 1 000 users log in at once on a server that lets 64 connections log in at a time
/// (`max_pending_logins`): what is past that is closed at once without an answer (there
/// is no one logged in to answer), every login that got a place is accepted, nothing
/// else happens, and the server serves on.
#[tokio::test]
async fn a_login_storm_past_max_pending_logins_is_turned_away_and_the_server_serves_on() {
    const STORM: usize = 1000;
    let _measuring = MEASURING.lock().await;
    let (_dir, server, [alice, bob]) = start_with_users(
        |c| {
            c.max_pending_logins = 64;
            c.max_pending_logins_per_ip = 0;
        },
        ["alice", "bob"],
    )
    .await;
    let sampler = Sampler::start(alice, bob, "bob");
    let (endings, held) = storm(&server, STORM).await;
    let accepted = count(&endings, Ending::Accepted);
    let unanswered = count(&endings, Ending::Unanswered);
    let (_alice, _bob, latencies) = sampler.finish().await;
    eprintln!(
        "pending-login storm: {STORM} at once against 64 pending places: {accepted} accepted, \
         {unanswered} turned away unanswered"
    );
    latencies.report(&format!("{STORM} users stormed 64 pending places"));
    assert_eq!(accepted + unanswered, STORM);
    assert!(accepted >= 64, "at least one wave gets in: {accepted}");
    assert_eq!(stat(&server, "online_sessions").await, 2 + accepted as u64);
    drop(held);
    eventually("every stormer's session released", || async {
        stat(&server, "online_sessions").await == 2
    })
    .await;
    let _carol = login(&server, "carol").await;
    server.stop().await;
}
