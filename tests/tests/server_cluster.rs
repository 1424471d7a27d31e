//! Three `vcom-server` nodes on one PostgreSQL database with NATS between them
//! (`[cluster] nats_url`): what one node's user sends reaches users on the others, a
//! broadcast and a list change reach every node, and a node that cannot reach NATS still
//! serves its own users and still delivers across nodes (late, by its sweep).
//!
//! Each test creates its own database on the server named by `VCOM_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`) and uses its own subject prefix
//! on the NATS server named by `VCOM_TEST_NATS_URL` (default `nats://127.0.0.1:4222`).
//! One test starts a NATS server of its own, late: the program `nats-server`, or
//! `VCOM_TEST_NATS_SERVER`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use vcom_protocol::{
    AbortReason, FileSize, FileTransferRequest, GroupId, MessageKind, SendGroupMessage, Timestamp,
};
use vcom_server::admin::{AdminReply, EntryKind, GroupAction, PolicyAction, UserAction};
use vcom_server::{
    AdminHandle, AdminRequest, ClusterStatus, ConfiguredServer, ServerConfig, ShutdownHandle,
    StoreBackend,
};
use vcom_store::PostgresStore;
use vcom_tests::harness::{Identity, Session, TIMEOUT, Target, login, login_ext, text_to};
use vcom_tests::postgres::TestDatabase;
use vcom_tests::recv_packet;

/// The NATS server the tests use, after checking that it answers.
async fn nats_url() -> String {
    let url =
        std::env::var("VCOM_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let addr = url.strip_prefix("nats://").unwrap_or(&url).to_owned();
    if let Err(e) = tokio::net::TcpStream::connect(&addr).await {
        panic!(
            "these tests need a NATS server and none answered at {url} ({e}); start one \
             (`nats-server -js`), or set VCOM_TEST_NATS_URL to nats://HOST:PORT"
        );
    }
    url
}

/// A node of the test's cluster.
struct Node {
    target: Target,
    status: ClusterStatus,
    admin: AdminHandle<PostgresStore>,
    shutdown: ShutdownHandle,
    task: tokio::task::JoinHandle<Result<(), vcom_server::ServerError>>,
}

/// A cluster of nodes on one fresh database and one subject prefix.
struct Cluster {
    nodes: Vec<Node>,
    _db: TestDatabase,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts one node per entry, each on NATS at the given URL.
    async fn start(nats: &[&str]) -> Cluster {
        let db = TestDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("vcomtest_{}", vcom_tests::unique_suffix());
        let mut nodes = Vec::new();
        for (i, url) in nats.iter().enumerate() {
            let mut config = ServerConfig::new(dir.path().join(format!("node{i}")));
            config.store.backend = StoreBackend::Postgres;
            config.store.postgres_url = Some(db.url.clone());
            config.cluster.nats_url = Some((*url).to_owned());
            config.cluster.node_name = Some(format!("node-{i}"));
            config.cluster.subject_prefix = prefix.clone();
            let ConfiguredServer::Postgres(server) = ConfiguredServer::bind(config)
                .await
                .expect("the node starts on PostgreSQL")
            else {
                panic!("a cluster node runs on PostgreSQL")
            };
            nodes.push(Node {
                target: Target {
                    addr: server.local_addr(),
                    cert_sha256: server.cert_sha256().to_owned(),
                },
                status: server.cluster_status(),
                admin: server.admin(),
                shutdown: server.shutdown_handle(),
                task: tokio::spawn(server.run()),
            });
        }
        Cluster {
            nodes,
            _db: db,
            _dir: dir,
        }
    }

    /// Three nodes on the test's NATS server.
    async fn three() -> Cluster {
        let nats = nats_url().await;
        Cluster::start(&[&nats, &nats, &nats]).await
    }

    fn node(&self, i: usize) -> &Target {
        &self.nodes[i].target
    }

    /// Waits until every node hears the others (what a broadcast or a list notice,
    /// which are not stored, needs).
    async fn connected(&mut self) {
        for node in &mut self.nodes {
            tokio::time::timeout(TIMEOUT, node.status.connected())
                .await
                .expect("every node connects to NATS in time");
        }
    }

    async fn stop(self) {
        for node in self.nodes {
            node.shutdown.shutdown();
            tokio::time::timeout(TIMEOUT, node.task)
                .await
                .expect("the node stops in time")
                .unwrap()
                .expect("the node stops cleanly");
        }
    }
}

async fn expect_direct(session: &mut Session, from: &str, text: &str) {
    let (sender, _, got) = session.next_direct().await;
    assert_eq!((sender.as_str(), got.as_str()), (from, text));
}

#[tokio::test]
async fn a_message_from_a_user_on_one_node_reaches_a_user_on_another() {
    let cluster = Cluster::three().await;
    let mut bob = login(cluster.node(1), "bob").await;
    let mut alice = login(cluster.node(0), "alice").await;

    alice.client.send(text_to("bob", "across nodes", 1)).await;

    expect_direct(&mut bob, "alice", "across nodes").await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_user_with_devices_on_two_nodes_gets_a_message_on_both() {
    let cluster = Cluster::three().await;
    let mut bob_b = login(cluster.node(1), "bob").await;
    let mut bob_c = bob_b.second_device(cluster.node(2), "bob").await;
    let mut alice = login(cluster.node(0), "alice").await;

    for n in 1..=3 {
        alice
            .client
            .send(text_to("bob", &format!("hello {n}"), n))
            .await;
    }

    for n in 1..=3 {
        expect_direct(&mut bob_b, "alice", &format!("hello {n}")).await;
    }
    for n in 1..=3 {
        let (_, _, text) = bob_c.next_direct().await;
        assert_eq!(text, format!("hello {n}"), "in the order sent");
    }
    cluster.stop().await;
}

#[tokio::test]
async fn a_group_message_reaches_members_on_every_node() {
    let cluster = Cluster::three().await;
    let mut alice = login(cluster.node(0), "alice").await;
    let mut bob = login(cluster.node(1), "bob").await;
    let mut carol = login(cluster.node(2), "carol").await;
    // Created on a third node: the sender's node learns of it from the store.
    let reply = cluster.nodes[2]
        .admin
        .execute(AdminRequest::Group {
            action: GroupAction::Create {
                name: "team".into(),
                members: vec!["alice".into(), "bob".into(), "carol".into()],
            },
        })
        .await
        .unwrap();
    let AdminReply::GroupCreated { id } = reply else {
        panic!("expected the new group's id, got {reply:?}")
    };

    alice
        .client
        .send(SendGroupMessage {
            group: GroupId(id),
            sent_at: Timestamp(7),
            kind: MessageKind::Text,
            data: Bytes::from_static(b"hello team"),
        })
        .await;

    for member in [&mut bob, &mut carol] {
        let m = recv_packet!(member.client, GroupMessage);
        assert_eq!((m.sender.as_str(), m.group), ("alice", GroupId(id)));
        assert_eq!(&m.data[..], b"hello team");
    }
    cluster.stop().await;
}

#[tokio::test]
async fn a_broadcast_given_to_one_node_reaches_devices_on_every_node() {
    let mut cluster = Cluster::three().await;
    let mut sessions = Vec::new();
    for (i, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
        sessions.push(login(cluster.node(i), user).await);
    }
    cluster.connected().await;

    cluster.nodes[0]
        .admin
        .execute(AdminRequest::Broadcast {
            text: "maintenance at noon".into(),
        })
        .await
        .unwrap();

    for session in &mut sessions {
        let b = recv_packet!(session.client, Broadcast);
        assert_eq!(b.text, "maintenance at noon");
    }
    cluster.stop().await;
}

#[tokio::test]
async fn a_list_upload_on_one_node_asks_the_users_devices_on_other_nodes_to_sync() {
    let mut cluster = Cluster::three().await;
    let mut bob_a = login(cluster.node(0), "bob").await;
    let mut bob_c = bob_a.second_device(cluster.node(2), "bob").await;
    let _mallory = login(cluster.node(1), "mallory").await;
    cluster.connected().await;

    bob_a.block(&["mallory"]).await;

    let request = recv_packet!(bob_c.client, RequestUserListsSync);
    assert!(request.blocks.0 > 0, "the new block list's time");
    cluster.stop().await;
}

#[tokio::test]
async fn a_node_that_cannot_reach_nats_serves_its_users_and_still_delivers_across_nodes() {
    let nats = nats_url().await;
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("nats://{}", listener.local_addr().unwrap())
    };
    let cluster = Cluster::start(&[&closed, &nats, &nats]).await;
    let mut alice = login(cluster.node(0), "alice").await;
    let mut bob = login(cluster.node(0), "bob").await;
    let mut carol = login(cluster.node(1), "carol").await;
    assert!(!cluster.nodes[0].status.is_connected());

    alice.client.send(text_to("bob", "same node", 1)).await;
    expect_direct(&mut bob, "alice", "same node").await;

    // No notice can leave or reach node 0: the sweeps deliver, late but in full.
    carol
        .client
        .send(text_to("alice", "to the lonely node", 2))
        .await;
    expect_direct(&mut alice, "carol", "to the lonely node").await;
    alice
        .client
        .send(text_to("carol", "from the lonely node", 3))
        .await;
    expect_direct(&mut carol, "alice", "from the lonely node").await;

    let before_pong = alice.client.round_trip().await;
    assert!(
        before_pong.is_empty(),
        "node 0 still answers: {before_pong:?}"
    );
    cluster.stop().await;
}

/// File transfers are relayed within one node: an offer to a user online only on another
/// node is refused at once, as for a user who is offline, and never hangs.
#[tokio::test]
async fn a_file_offer_to_a_user_on_another_node_is_refused_as_recipient_offline() {
    let cluster = Cluster::three().await;
    let _bob = login(cluster.node(1), "bob").await;
    let mut alice = login(cluster.node(0), "alice").await;

    alice
        .client
        .send(FileTransferRequest {
            recipient: vcom_tests::harness::uid("bob"),
            size: FileSize::new(10).unwrap(),
            name: "x.txt".into(),
        })
        .await;

    let id = recv_packet!(alice.client, FileTransferId).transfer;
    let abort = recv_packet!(alice.client, FileTransferAbort);
    assert_eq!(
        (abort.transfer, abort.reason),
        (id, AbortReason::RecipientOffline)
    );
    cluster.stop().await;
}

/// Administrator commands given to one node act on the whole cluster.
#[tokio::test]
async fn a_blacklisting_or_a_key_reset_on_one_node_ends_sessions_on_the_others() {
    let mut cluster = Cluster::three().await;
    let mut bob = login(cluster.node(1), "bob").await;
    let mut carol = login(cluster.node(2), "carol").await;
    cluster.connected().await;

    cluster.nodes[0]
        .admin
        .execute(AdminRequest::Blacklist {
            action: PolicyAction::Add {
                kind: EntryKind::User,
                value: "bob".into(),
            },
        })
        .await
        .unwrap();
    cluster.nodes[0]
        .admin
        .execute(AdminRequest::User {
            action: UserAction::ResetKey {
                user: "carol".into(),
                fingerprint: None,
            },
        })
        .await
        .unwrap();

    bob.client.recv_until_closed().await;
    carol.client.recv_until_closed().await;
    cluster.stop().await;
}

/// Nodes that start before NATS does serve their users meanwhile, and hear each other
/// once it is up: a broadcast, which only NATS carries, then reaches every node.
#[tokio::test]
async fn nodes_started_before_nats_connect_when_it_comes_up() {
    let program = std::env::var("VCOM_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut cluster = Cluster::start(&[&url, &url, &url]).await;
    let mut alice = login(cluster.node(0), "alice").await;
    let mut bob = login(cluster.node(1), "bob").await;
    alice.client.send(text_to("bob", "before NATS", 1)).await;
    expect_direct(&mut bob, "alice", "before NATS").await;

    let _nats = tokio::process::Command::new(&program)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "this test starts its own NATS server and could not run `{program}` ({e}); \
                 install nats-server, or set VCOM_TEST_NATS_SERVER to its path"
            )
        });
    cluster.connected().await;
    cluster.nodes[2]
        .admin
        .execute(AdminRequest::Broadcast {
            text: "NATS is up".into(),
        })
        .await
        .unwrap();

    for session in [&mut alice, &mut bob] {
        assert_eq!(recv_packet!(session.client, Broadcast).text, "NATS is up");
    }
    cluster.stop().await;
}

/// SDK clients (the extension set: sequence numbers, receipts, acknowledgements) on two
/// nodes: each message is acknowledged as stored and arrives once, in order.
#[tokio::test]
async fn sdk_clients_on_two_nodes_exchange_messages_in_order() {
    use vcom_client::{Client, ClientConfig, Event, Trust};
    let cluster = Cluster::three().await;
    let profiles = tempfile::tempdir().unwrap();
    let connect = |node: usize, user: &str| {
        let config = ClientConfig::new(
            cluster.node(node).addr.to_string(),
            vcom_client::UserId::new(user).unwrap(),
            profiles.path().join(user),
        )
        .with_trust(Trust::TrustOnFirstUse);
        async move {
            tokio::time::timeout(TIMEOUT, Client::connect(config))
                .await
                .expect("connecting finishes in time")
                .unwrap()
        }
    };
    let (bob, mut bob_events) = connect(1, "bob").await;
    let (alice, _alice_events) = connect(0, "alice").await;

    for n in 0..20 {
        alice
            .send_text(&vcom_client::UserId::new("bob").unwrap(), &format!("m{n}"))
            .await
            .unwrap();
    }

    for n in 0..20 {
        let message = tokio::time::timeout(TIMEOUT, async {
            loop {
                match bob_events
                    .next()
                    .await
                    .expect("the event stream stays open")
                {
                    Event::Message(m) => return m,
                    Event::Disconnected { reason } => panic!("disconnected: {reason:?}"),
                    _ => {}
                }
            }
        })
        .await
        .expect("a message arrives in time");
        assert_eq!(message.text(), Some(format!("m{n}").as_str()));
    }
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    cluster.stop().await;
}

/// A group change made on one node is announced (525) to members' extended sessions on
/// the others.
#[tokio::test]
async fn a_member_added_on_one_node_is_told_on_another() {
    let mut cluster = Cluster::three().await;
    let bob_key = Identity::generate("bob");
    let mut bob = login_ext(
        cluster.node(1),
        "bob",
        &bob_key,
        vcom_protocol::DeviceId::NEW,
    )
    .await;
    cluster.connected().await;
    let reply = cluster.nodes[0]
        .admin
        .execute(AdminRequest::Group {
            action: GroupAction::Create {
                name: "team".into(),
                members: vec!["alice".into()],
            },
        })
        .await
        .unwrap();
    let AdminReply::GroupCreated { id } = reply else {
        panic!("expected the new group's id, got {reply:?}")
    };

    cluster.nodes[2]
        .admin
        .execute(AdminRequest::Group {
            action: GroupAction::Add {
                id,
                user: "bob".into(),
            },
        })
        .await
        .unwrap();

    let info = recv_packet!(bob.client, GroupInfo);
    assert_eq!(info.group, GroupId(id));
    assert!(info.members.iter().any(|m| m.as_str() == "bob"), "{info:?}");
    cluster.stop().await;
}
