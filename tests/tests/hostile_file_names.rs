//! A hostile sender offers files with dangerous names to a real SDK client: whatever the
//! name, nothing is written outside the directory the recipient chose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use bytes::Bytes;
use vcom_client::{AbortReason, Client, ClientConfig, Event, EventStream, TransferOutcome, Trust};
use vcom_protocol::{
    FileChunk, FileSize, FileTransferComplete, FileTransferRequest, ServerPacket, TransferId,
    UserId,
};
use vcom_tests::harness::{Session, TIMEOUT, TestServer, login};

async fn next_event(events: &mut EventStream) -> Event {
    tokio::time::timeout(TIMEOUT, events.next())
        .await
        .expect("an event in time")
        .expect("the connection is open")
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
    match mallory.client.recv().await {
        ServerPacket::FileTransferId(p) => p.transfer,
        other => panic!("expected 269, got {other:?}"),
    }
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
    let server = TestServer::start(&dir.path().join("server"), |_| {}).await;
    let sandbox = tempfile::tempdir().unwrap();
    let downloads = sandbox.path().join("downloads");
    let (_bob, mut events) = connect_bob(&server, &dir.path().join("bob")).await;
    let mut mallory = login(&server, "mallory").await;

    let cases = [
        ("../../escaped.txt", "escaped.txt"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\win.ini", "win.ini"),
        ("sub/dir/../../../up.txt", "up.txt"),
        (".bashrc", "_bashrc"),
    ];
    for (hostile, saved) in cases {
        let transfer = offer(&mut mallory, hostile, 5).await;
        let Event::FileOffer(offer) = next_event(&mut events).await else {
            panic!("expected an offer")
        };
        assert_eq!(offer.offered_name(), hostile);
        offer.accept(&downloads).await.unwrap();
        match mallory.client.recv().await {
            ServerPacket::FileTransferAccept(a) => assert_eq!(a.transfer, transfer),
            other => panic!("expected 272, got {other:?}"),
        }
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
    let server = TestServer::start(&dir.path().join("server"), |_| {}).await;
    let sandbox = tempfile::tempdir().unwrap();
    let downloads = sandbox.path().join("downloads");
    let (_bob, mut events) = connect_bob(&server, &dir.path().join("bob")).await;
    let mut mallory = login(&server, "mallory").await;

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
        let transfer = offer(&mut mallory, hostile, 5).await;
        let Event::FileOffer(offer) = next_event(&mut events).await else {
            panic!("expected an offer")
        };
        assert!(
            offer.file_name().is_err(),
            "{hostile:?} must not be usable as a name"
        );
        assert!(
            offer.accept(&downloads).await.is_err(),
            "{hostile:?} is refused"
        );
        // The refused offer is declined: the sender learns it.
        match mallory.client.recv().await {
            ServerPacket::FileTransferAbort(a) => {
                assert_eq!(
                    (a.transfer, a.reason),
                    (transfer, AbortReason::Declined),
                    "{hostile:?}"
                )
            }
            other => panic!("expected 270, got {other:?}"),
        }
    }
    assert!(
        files_under(sandbox.path()).is_empty(),
        "nothing was written anywhere"
    );
    server.stop().await;
}
