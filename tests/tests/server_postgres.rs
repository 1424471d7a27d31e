//! `vcom-server` on PostgreSQL (`[store] backend = "postgres"`): SDK clients log in and
//! exchange messages through a server whose store is a PostgreSQL database, and what
//! waits for an offline user survives the server's restart. Each test creates its own
//! database on the server named by `VCOM_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and drops it at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use vcom_client::{Client, ClientConfig, Event, EventStream, Message, Trust, UserId};
use vcom_server::{ConfiguredServer, ServerConfig, ShutdownHandle, StoreBackend};
use vcom_tests::postgres::TestDatabase;

const TIMEOUT: Duration = Duration::from_secs(20);

/// A server on `db` with its data directory (TLS files, admin socket) in `data_dir`.
struct RunningServer {
    addr: String,
    shutdown: ShutdownHandle,
    task: tokio::task::JoinHandle<Result<(), vcom_server::ServerError>>,
}

async fn start(db: &TestDatabase, data_dir: &Path) -> RunningServer {
    let mut config = ServerConfig::new(data_dir);
    config.store.backend = StoreBackend::Postgres;
    config.store.postgres_url = Some(db.url.clone());
    let server = ConfiguredServer::bind(config)
        .await
        .expect("the server starts on PostgreSQL");
    assert!(matches!(server, ConfiguredServer::Postgres(_)));
    RunningServer {
        addr: server.local_addr().to_string(),
        shutdown: server.shutdown_handle(),
        task: tokio::spawn(server.run()),
    }
}

impl RunningServer {
    async fn connect(&self, user: &str, profiles: &Path) -> (Client, EventStream) {
        let config = ClientConfig::new(self.addr.clone(), uid(user), profiles.join(user))
            .with_trust(Trust::TrustOnFirstUse);
        tokio::time::timeout(TIMEOUT, Client::connect(config))
            .await
            .expect("connecting finishes in time")
            .unwrap_or_else(|e| panic!("{user} could not connect: {e}"))
    }

    async fn stop(self) {
        self.shutdown.shutdown();
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("the server stops in time")
            .unwrap()
            .expect("the server stops cleanly");
    }
}

fn uid(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

async fn next_message(events: &mut EventStream) -> Message {
    tokio::time::timeout(TIMEOUT, async {
        loop {
            match events.next().await.expect("the event stream stays open") {
                Event::Message(message) => return message,
                Event::Disconnected { reason } => panic!("disconnected: {reason:?}"),
                _ => {}
            }
        }
    })
    .await
    .expect("a message arrives in time")
}

#[tokio::test]
async fn clients_log_in_and_exchange_messages_through_a_server_on_postgres() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(&db, &dir.path().join("server")).await;
    let (alice, _alice_events) = server.connect("alice", dir.path()).await;
    let (bob, mut bob_events) = server.connect("bob", dir.path()).await;

    alice
        .send_text(&uid("bob"), "hello over postgres")
        .await
        .unwrap();

    let message = next_message(&mut bob_events).await;
    assert_eq!(message.sender, uid("alice"));
    assert_eq!(message.text(), Some("hello over postgres"));
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_message_for_an_offline_user_waits_in_postgres_across_a_restart() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("server");
    let server = start(&db, &data_dir).await;
    let (bob, _) = server.connect("bob", dir.path()).await;
    bob.close().await.unwrap();
    let (alice, _) = server.connect("alice", dir.path()).await;
    alice
        .send_text(&uid("bob"), "while you were away")
        .await
        .unwrap();
    alice.close().await.unwrap();
    server.stop().await;

    let server = start(&db, &data_dir).await;
    let (bob, mut bob_events) = server.connect("bob", dir.path()).await;

    let message = next_message(&mut bob_events).await;
    assert_eq!(message.text(), Some("while you were away"));
    bob.close().await.unwrap();
    server.stop().await;
}
