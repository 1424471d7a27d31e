//! The SDK's examples (`crates/vcom-client/examples/`), each run against a real server:
//! the example's own `run` function, compiled into this test from the example's file, so
//! what the tests run is exactly what `cargo run --example` runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[allow(dead_code)]
#[path = "../examples/echo_bot.rs"]
mod echo_bot;
#[allow(dead_code)]
#[path = "../examples/file_drop.rs"]
mod file_drop;
#[allow(dead_code)]
#[path = "../examples/group_bridge.rs"]
mod group_bridge;

use std::io::Write;
use std::path::Path;

use tokio::sync::mpsc;
use vcom_client::{AbortReason, Delivery, TransferOutcome};

use support::{TIMEOUT, TestServer, finished, next_message, uid};

/// A writer that hands each complete line to a channel: an example's stdout, read by
/// the test as it is written.
struct Lines {
    partial: Vec<u8>,
    tx: mpsc::UnboundedSender<String>,
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            let _ = self.tx.send(line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lines() -> (Lines, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = Lines {
        partial: Vec::new(),
        tx,
    };
    (writer, rx)
}

async fn next_line(rx: &mut mpsc::UnboundedReceiver<String>, what: &str) -> String {
    tokio::time::timeout(TIMEOUT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("the example stopped before {what}"))
}

/// Logs `user` in once and out again, so the server knows the user before anyone
/// writes to it.
async fn register(server: &TestServer, root: &Path, user: &str) {
    let (client, _events) = server.connect_in(root, user).await;
    client.close().await.unwrap();
}

#[tokio::test]
async fn the_echo_bot_answers_each_direct_message_with_the_same_text() {
    let (dir, server) = TestServer::start_temp().await;
    register(&server, dir.path(), "echo").await;
    let bot = tokio::spawn(echo_bot::run(
        server.config("echo", &dir.path().join("echo")),
    ));
    let (alice, mut alice_events) = server.connect_in(dir.path(), "alice").await;

    for text in ["hello bot", "second"] {
        let delivery = alice.send_text(&uid("echo"), text).await.unwrap();
        assert_eq!(delivery, Delivery::Stored);
        let echoed = next_message(&mut alice_events, "the echo").await;
        assert_eq!(echoed.sender, uid("echo"));
        assert_eq!(echoed.text(), Some(text));
    }
    bot.abort();
    alice.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn the_group_bridge_writes_its_groups_messages_and_no_others_as_json_lines() {
    let (dir, server) = TestServer::start_temp().await;
    register(&server, dir.path(), "bridge").await;
    let (alice, _alice_events) = server.connect_in(dir.path(), "alice").await;
    let mirrored = server.create_group(&["alice", "bridge"]).await;
    let other = server.create_group(&["alice", "bridge"]).await;
    // Sent before the bridge connects: it arrives from the server's store.
    alice.send_group_text(other, "not mirrored").await.unwrap();
    alice.send_group_text(mirrored, "first").await.unwrap();

    let (out, mut rx) = lines();
    let bridge = tokio::spawn(group_bridge::run(
        server.config("bridge", &dir.path().join("bridge")),
        mirrored,
        out,
    ));
    let first: serde_json::Value =
        serde_json::from_str(&next_line(&mut rx, "the stored message").await).unwrap();
    assert_eq!(first["group"], mirrored.0);
    assert_eq!(first["sender"], "alice");
    assert_eq!(first["kind"], "text");
    assert_eq!(first["text"], "first");

    alice
        .send_group_image(mirrored, bytes::Bytes::from_static(b"\x89PNG...."))
        .await
        .unwrap();
    let image: serde_json::Value =
        serde_json::from_str(&next_line(&mut rx, "the image").await).unwrap();
    assert_eq!(image["kind"], "image");
    assert_eq!(image["bytes"], 8);
    assert!(image.get("text").is_none());
    bridge.abort();
    alice.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn the_file_drop_saves_offered_files_and_declines_those_over_its_limit() {
    let (dir, server) = TestServer::start_temp().await;
    register(&server, dir.path(), "drop").await;
    let inbox = dir.path().join("inbox");
    let (out, mut rx) = lines();
    let drop_box = tokio::spawn(file_drop::run(
        server.config("drop", &dir.path().join("drop")),
        inbox.clone(),
        10_000,
        out,
    ));
    let (alice, _alice_events) = server.connect_in(dir.path(), "alice").await;

    let content: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, &content).unwrap();
    let sent = alice.send_file(&uid("drop"), &notes).await.unwrap();
    assert!(matches!(
        finished(sent).await,
        TransferOutcome::Completed { .. }
    ));
    let saved = next_line(&mut rx, "the saved file").await;
    assert_eq!(
        saved,
        format!(
            "saved {} (3000 bytes) from alice",
            inbox.join("notes.txt").display()
        )
    );
    assert_eq!(std::fs::read(inbox.join("notes.txt")).unwrap(), content);

    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 20_000]).unwrap();
    let refused = alice.send_file(&uid("drop"), &big).await.unwrap();
    assert_eq!(
        finished(refused).await,
        TransferOutcome::Aborted(AbortReason::Declined)
    );
    let declined = next_line(&mut rx, "the declined offer").await;
    assert_eq!(
        declined,
        "declined \"big.bin\" from alice: 20000 bytes is over the limit of 10000"
    );
    assert!(!inbox.join("big.bin").exists());
    drop_box.abort();
    alice.close().await.unwrap();
    server.stop().await;
}
