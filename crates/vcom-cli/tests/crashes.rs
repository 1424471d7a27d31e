//! Nothing is lost when a process dies: a `vcom listen` killed with SIGKILL while it
//! receives a backlog, and a `vcom-server` killed with SIGKILL while fifty SDK clients
//! send to it. Real programs over TLS on 127.0.0.1; every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Server, TIMEOUT, World};
use tokio::sync::{Notify, watch};
use vcom_client::{Client, ClientConfig, Delivery, Event, EventStream, Outgoing, UserId};

/// Inboxes without a cap: the backlogs here are larger than the default allows.
const NO_INBOX_CAP: &str = "[retention]\npending_per_user = 0\npending_per_sender = 0\n";

fn uid(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

async fn connect(addr: &str, user: &str, profile: &Path) -> (Client, EventStream) {
    let config = ClientConfig::new(addr, uid(user), profile);
    tokio::time::timeout(TIMEOUT, Client::connect(config))
        .await
        .expect("connected in time")
        .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"))
}

/// The text of each incoming message in `user`'s history, in the order recorded.
fn incoming_texts(world_history: Vec<Value>) -> Vec<String> {
    world_history
        .into_iter()
        .filter(|m| m["direction"] == "in")
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_while_receiving_a_backlog_loses_nothing_and_keeps_each_message_once() {
    const N: usize = 10_000;
    let world = World::with_config(Some(NO_INBOX_CAP));
    world.register("bob");
    let (alice, _events) = connect(&world.server.addr, "alice", &world.profile("alice")).await;
    let senders: Vec<_> = (0..10)
        .map(|part| {
            let alice = alice.clone();
            tokio::spawn(async move {
                for i in part * N / 10..(part + 1) * N / 10 {
                    let sent = alice.send_text(&uid("bob"), &format!("m{i:05}")).await;
                    assert_eq!(sent.unwrap(), Delivery::Stored);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }

    // bob's listener prints each message once it is in bob's history; it is killed
    // (SIGKILL: no goodbye, no last receipt) a fifth of the way in.
    let mut first = world.spawn("bob", &["listen", "--json"]);
    for _ in 0..N / 5 {
        first.next_stdout();
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let kept = world.history_json("bob", &[]).len();
    assert!((N / 5..N).contains(&kept), "killed mid-backlog: {kept}");

    // The next listener gets exactly what the history lacks: what it holds but never
    // confirmed comes again and is recognised, not shown or stored twice.
    let mut second = world.spawn("bob", &["listen", "--json"]);
    for _ in kept..N {
        second.next_stdout();
    }
    let texts = incoming_texts(world.history_json("bob", &[]));
    let expected: Vec<String> = (0..N).map(|i| format!("m{i:05}")).collect();
    let mut sorted = texts.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "every message, each once");
}

/// Connects `user` to whichever address the server has now, retrying while it is down.
async fn reconnect(addr: &mut watch::Receiver<String>, user: &str, profile: &Path) -> Client {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = addr.borrow_and_update().clone();
        let config = ClientConfig::new(now, uid(user), profile);
        if let Ok(Ok((client, _events))) =
            tokio::time::timeout(TIMEOUT, Client::connect(config)).await
        {
            return client;
        }
        assert!(Instant::now() < deadline, "{user} could not reconnect");
        // Until the server is back, wait for its new address (or retry in a while).
        let _ = tokio::time::timeout(Duration::from_secs(1), addr.changed()).await;
    }
}

/// Sends `count` numbered messages to bob, each sent again (same client message id)
/// after a reconnect until the server says it is stored.
async fn sender(
    user: String,
    profile: PathBuf,
    mut addr: watch::Receiver<String>,
    count: usize,
    acked: Arc<AtomicUsize>,
    halfway: Arc<Notify>,
    total: usize,
) {
    let mut client = reconnect(&mut addr, &user, &profile).await;
    for i in 0..count {
        let message = Outgoing::text(&uid("bob"), &format!("{user} {i:04}"));
        loop {
            match client.send_message(message.clone()).await {
                Ok(Delivery::Stored) => break,
                Ok(other) => panic!("{user} {i}: {other:?}"),
                // The server is gone: whether it stored the message is unknown, and
                // sending it again with the same id stores it once.
                Err(_) => client = reconnect(&mut addr, &user, &profile).await,
            }
        }
        if acked.fetch_add(1, Ordering::AcqRel) + 1 == total * 2 / 5 {
            halfway.notify_one();
        }
    }
    let _ = client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_a_server_killed_mid_stream_in_order_per_sender() {
    const SENDERS: usize = 50;
    const EACH: usize = 1_000;
    let total = SENDERS * EACH;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = Server::start(&data, Some(NO_INBOX_CAP));
    let bob_profile = dir.path().join("bob");
    let (bob, _events) = connect(&server.addr, "bob", &bob_profile).await;
    bob.close().await.unwrap();

    let (addr_tx, addr_rx) = watch::channel(server.addr.clone());
    let acked = Arc::new(AtomicUsize::new(0));
    let halfway = Arc::new(Notify::new());
    let senders: Vec<_> = (0..SENDERS)
        .map(|n| {
            tokio::spawn(sender(
                format!("s{n:02}"),
                dir.path().join(format!("s{n:02}")),
                addr_rx.clone(),
                EACH,
                acked.clone(),
                halfway.clone(),
                total,
            ))
        })
        .collect();

    tokio::time::timeout(Duration::from_secs(300), halfway.notified())
        .await
        .expect("two fifths acknowledged in time");
    let at_kill = acked.load(Ordering::Acquire);
    tokio::task::spawn_blocking(move || server.kill())
        .await
        .unwrap();
    let restarted = tokio::task::spawn_blocking(move || Server::start(&data, None))
        .await
        .unwrap();
    addr_tx.send(restarted.addr.clone()).unwrap();
    for sender in senders {
        tokio::time::timeout(Duration::from_secs(600), sender)
            .await
            .expect("every sender finishes")
            .unwrap();
    }
    assert!(at_kill < total, "the server was killed mid-stream");

    // bob collects everything, then his history is checked per sender.
    let (bob, mut events) = connect(&restarted.addr, "bob", &bob_profile).await;
    let mut received = 0;
    while received < total {
        match tokio::time::timeout(TIMEOUT, events.next()).await {
            Ok(Some(Event::Message(_))) => received += 1,
            Ok(Some(Event::Disconnected { reason })) => panic!("disconnected: {reason:?}"),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("only {received} of {total} messages arrived"),
        }
    }
    let history = bob.history(vcom_client::HistoryQuery::All).await.unwrap();
    let mut per_sender: HashMap<String, Vec<usize>> = HashMap::new();
    for entry in history {
        let text = String::from_utf8(entry.data.to_vec()).unwrap();
        let (user, n) = text.split_once(' ').unwrap();
        per_sender
            .entry(user.to_owned())
            .or_default()
            .push(n.parse().unwrap());
    }
    assert_eq!(per_sender.len(), SENDERS);
    let in_order: Vec<usize> = (0..EACH).collect();
    for (user, numbers) in per_sender {
        assert_eq!(
            numbers, in_order,
            "{user}: each message once, in the order sent"
        );
    }
    bob.close().await.unwrap();
}
