//! A hostile sender offers files with dangerous names to a real SDK client: whatever the
//! name, nothing is written outside the directory the recipient chose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use bytes::Bytes;
use vcom_client::{
    AbortReason, Client, ClientConfig, Event, EventStream, FileOffer, TransferOutcome, Trust,
};
use vcom_protocol::{
    FileChunk, FileSize, FileTransferComplete, FileTransferRequest, TransferId, UserId,
};
use vcom_tests::harness::{Session, TIMEOUT, TestServer, login};
use vcom_tests::recv_packet;

/// Waits (at most [`TIMEOUT`]) for the next SDK event.
async fn next_event(events: &mut EventStream) -> Event {
    tokio::time::timeout(TIMEOUT, events.next())
        .await
        .expect("an event in time")
        .expect("the connection is open")
}

/// Mallory offers `name` to bob; waits until the server has answered with the transfer
/// id and bob's client has reported the offer.
async fn offer_to_bob(
    mallory: &mut Session,
    bob_events: &mut EventStream,
    name: &str,
) -> (TransferId, FileOffer) {
    let transfer = offer(mallory, name, 5).await;
    let Event::FileOffer(offer) = next_event(bob_events).await else {
        panic!("expected an offer")
    };
    (transfer, offer)
}

/// Mallory offers `name`; returns the transfer id once the server has answered.
async fn offer(mallory: &mut Session, name: &str, size: usize) -> TransferId {
    mallory
        .client
        .send(FileTransferRequest {
            recipient: UserId::new("bob").unwrap(),
            size: FileSize::new(size as u64).unwrap(),
            name: name.to_owned(),
        })
        .await;
    recv_packet!(mallory.client, FileTransferId).transfer
}

/// A server in `root/server`, bob's SDK client (profile `root/bob`, trusting on first
/// use) and mallory's raw session, both logged in.
async fn bob_and_mallory(root: &Path) -> (TestServer, (Client, EventStream), Session) {
    let server = TestServer::start(&root.join("server"), |_| {}).await;
    let bob = connect_bob(&server, &root.join("bob")).await;
    let mallory = login(&server, "mallory").await;
    (server, bob, mallory)
}

async fn connect_bob(server: &TestServer, profile: &Path) -> (Client, EventStream) {
    let config = ClientConfig::new(
        server.addr.to_string(),
        UserId::new("bob").unwrap(),
        profile,
    )
    .with_trust(Trust::TrustOnFirstUse);
    Client::connect(config).await.expect("bob connects")
}

/// Every file under `root`, as paths relative to it.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn directory_parts_of_an_offered_name_are_stripped() {
    let dir = tempfile::tempdir().unwrap();
    let (server, (_bob, mut events), mut mallory) = bob_and_mallory(dir.path()).await;
    let sandbox = tempfile::tempdir().unwrap();
    let downloads = sandbox.path().join("downloads");

    let cases = [
        ("../../escaped.txt", "escaped.txt"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\win.ini", "win.ini"),
        ("sub/dir/../../../up.txt", "up.txt"),
        (".bashrc", "_bashrc"),
        // Shown as "evilexe.png" with the override; saved under what it really is.
        ("evil\u{202e}gnp.exe", "evilgnp.exe"),
        ("in\u{200b}voice.pdf", "invoice.pdf"),
    ];
    for (hostile, saved) in cases {
        let (transfer, offer) = offer_to_bob(&mut mallory, &mut events, hostile).await;
        assert_eq!(offer.offered_name(), hostile);
        offer.accept(&downloads).await.unwrap();
        assert_eq!(
            recv_packet!(mallory.client, FileTransferAccept).transfer,
            transfer
        );
        mallory
            .client
            .send(FileChunk {
                transfer,
                data: Bytes::from_static(b"hello"),
            })
            .await;
        mallory.client.send(FileTransferComplete { transfer }).await;
        let path = loop {
            match next_event(&mut events).await {
                Event::TransferFinished {
                    outcome: TransferOutcome::Completed { path },
                    ..
                } => break path,
                Event::TransferFinished { outcome, .. } => panic!("{hostile}: {outcome:?}"),
                _ => continue,
            }
        };
        assert_eq!(path, downloads.join(saved), "{hostile}");
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    }
    let mut expected: Vec<String> = cases
        .iter()
        .map(|(_, saved)| format!("downloads/{saved}"))
        .collect();
    expected.sort();
    assert_eq!(
        files_under(sandbox.path()),
        expected,
        "nothing was written outside downloads/"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unusable_offered_name_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (server, (_bob, mut events), mut mallory) = bob_and_mallory(dir.path()).await;
    let sandbox = tempfile::tempdir().unwrap();
    let downloads = sandbox.path().join("downloads");

    for hostile in [
        "..",
        ".",
        "CON",
        "con.txt",
        "LPT1.tar.gz",
        "a\u{1}b",
        "evil\nname",
        "dir/",
    ] {
        let (transfer, offer) = offer_to_bob(&mut mallory, &mut events, hostile).await;
        assert!(
            offer.file_name().is_err(),
            "{hostile:?} must not be usable as a name"
        );
        assert!(
            offer.accept(&downloads).await.is_err(),
            "{hostile:?} is refused"
        );
        // The refused offer is declined: the sender learns it.
        let a = recv_packet!(mallory.client, FileTransferAbort);
        assert_eq!(
            (a.transfer, a.reason),
            (transfer, AbortReason::Declined),
            "{hostile:?}"
        );
    }
    assert!(
        files_under(sandbox.path()).is_empty(),
        "nothing was written anywhere"
    );
    server.stop().await;
}
