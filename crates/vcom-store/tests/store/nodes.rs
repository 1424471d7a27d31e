//! Several nodes on one PostgreSQL database: each test opens two `PostgresStore`s on
//! the same database, as two `vcom-server` nodes do.

use std::collections::HashSet;
use std::time::Duration;

use vcom_protocol::DeviceId;
use vcom_store::{MessageId, PostgresStore, Store, StoreConfig, StoreError};

use crate::support::{TestDatabase, no_hook, text, ts, uid, user_with_device};

/// Two nodes on a fresh database.
async fn two_nodes(config: StoreConfig) -> (TestDatabase, PostgresStore, PostgresStore) {
    let db = TestDatabase::create().await;
    let a = PostgresStore::connect(&db.url, config.clone())
        .await
        .unwrap();
    let b = PostgresStore::connect(&db.url, config).await.unwrap();
    (db, a, b)
}

/// Stores `count` messages from alice to bob and carol on `node`, tagged with `node_name`,
/// and returns their ids in call order.
async fn send(
    node: PostgresStore,
    origin: DeviceId,
    node_name: &'static str,
    count: usize,
) -> Vec<MessageId> {
    let mut ids = Vec::with_capacity(count);
    // Several in flight at once, so the node's writer batches them.
    let calls: Vec<_> = (0..count)
        .map(|i| {
            node.store_message(
                text(
                    "alice",
                    origin,
                    &["bob", "carol"],
                    &format!("{node_name}-{i}"),
                ),
                no_hook(),
            )
        })
        .collect();
    for call in calls {
        ids.push(call.await.unwrap().id.expect("stored"));
    }
    ids
}

/// Two nodes append to the same recipients at once while a device of bob reads and
/// acknowledges as it goes: every id is unique, each node's ids grow in call order,
/// every recipient gets every message in increasing order, and the reading device,
/// which moves its cursor past what it has read, never skips a message that committed
/// later with a lower id (ids grow in commit order across nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_appending_to_the_same_recipients_never_collide_or_go_backwards() {
    let (_db, a, b) = two_nodes(StoreConfig::default()).await;
    let alice = user_with_device(&a, "alice").await;
    let bob = user_with_device(&b, "bob").await;
    let carol = user_with_device(&a, "carol").await;
    const EACH: usize = 300;
    let reader = {
        let store = b.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while seen.len() < 2 * EACH && tokio::time::Instant::now() < deadline {
                let page = store
                    .pending(&uid("bob"), bob, None, 50, usize::MAX)
                    .await
                    .unwrap();
                if let Some(last) = page.last() {
                    store.advance_cursor(bob, last.id).await.unwrap();
                }
                seen.extend(page.into_iter().map(|m| m.id));
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let from_a = tokio::spawn(send(a.clone(), alice, "a", EACH));
    let from_b = tokio::spawn(send(b.clone(), alice, "b", EACH));
    let (from_a, from_b) = (from_a.await.unwrap(), from_b.await.unwrap());
    let read_by_bob = reader.await.unwrap();

    for ids in [&from_a, &from_b] {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "in call order: {ids:?}"
        );
    }
    let all: HashSet<MessageId> = from_a.iter().chain(&from_b).copied().collect();
    assert_eq!(all.len(), 2 * EACH, "no id was given twice");
    assert!(
        read_by_bob.windows(2).all(|w| w[0] < w[1]),
        "bob's device reads in increasing order"
    );
    assert_eq!(
        read_by_bob.iter().copied().collect::<HashSet<_>>(),
        all,
        "bob's device, acknowledging as it read, skipped nothing"
    );
    let carols: Vec<MessageId> = a
        .pending(&uid("carol"), carol, None, usize::MAX, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert!(carols.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(carols.iter().copied().collect::<HashSet<_>>(), all);
    let stats = a.stats().await.unwrap();
    assert_eq!(stats.messages, 2 * EACH as u64);
    assert_eq!(
        stats.pending_deliveries,
        2 * EACH as u64,
        "carol waits for all of them; bob for none"
    );
}

/// What one node writes, the other reads at once: there is one record, not one per node.
#[tokio::test]
async fn a_write_on_one_node_is_read_on_the_other() {
    let (_db, a, b) = two_nodes(StoreConfig::default()).await;
    let alice = user_with_device(&a, "alice").await;
    assert_eq!(b.device_owner(alice).await.unwrap(), Some(uid("alice")));
    let group = b.create_group("g", &[uid("alice")], ts(2)).await.unwrap();
    assert_eq!(
        a.group(group).await.unwrap().unwrap().members,
        [uid("alice")]
    );
}

/// Logins of one user on two nodes at once issue distinct devices and keep to the
/// device cap between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_on_two_nodes_keep_the_device_cap() {
    let (_db, a, b) = two_nodes(StoreConfig {
        devices_per_user: Some(3),
        ..StoreConfig::default()
    })
    .await;
    a.register_user(&uid("alice"), None, ts(1)).await.unwrap();
    let logins: Vec<_> = (0..10)
        .map(|i| {
            let node = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                node.record_login(&uid("alice"), None, DeviceId::NEW, ts(10 + i), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for login in logins {
        login.await.unwrap();
    }
    assert_eq!(a.devices(&uid("alice")).await.unwrap().len(), 3);
}

/// A database written by a newer version is refused, and nothing in it is changed.
#[tokio::test]
async fn a_database_from_a_newer_version_is_refused_untouched() {
    let db = TestDatabase::create().await;
    let store = PostgresStore::connect(&db.url, StoreConfig::default())
        .await
        .unwrap();
    store.close().await;
    let (admin, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute("INSERT INTO schema_version (version) VALUES (999)")
        .await
        .unwrap();

    let err = PostgresStore::connect(&db.url, StoreConfig::default())
        .await
        .unwrap_err();

    match err {
        StoreError::NewerSchema { found, supported } => {
            assert_eq!(found, 999);
            assert_eq!(supported, PostgresStore::SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other}"),
    }
    let versions: i64 = admin
        .query_one("SELECT count(*) FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, PostgresStore::SCHEMA_VERSION as i64 + 1);
}

/// Nodes starting at once migrate the database once; a node starting later migrates
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_at_once_migrate_the_database_once() {
    let db = TestDatabase::create().await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move {
                PostgresStore::connect(&url, StoreConfig::default())
                    .await
                    .unwrap()
            })
        })
        .collect();
    for start in starts {
        start.await.unwrap().close().await;
    }
    PostgresStore::connect(&db.url, StoreConfig::default())
        .await
        .unwrap()
        .close()
        .await;
    let (admin, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let versions: Vec<i64> = admin
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = (1..=PostgresStore::SCHEMA_VERSION as i64).collect();
    assert_eq!(versions, expected);
}

/// `backup` writes no file for PostgreSQL, and says which tools back the database up.
#[tokio::test]
async fn a_postgres_backup_points_to_the_database_tools() {
    let db = TestDatabase::create().await;
    let store = PostgresStore::connect(&db.url, StoreConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("backup.sqlite3");
    let err = store.backup(to.clone()).await.unwrap_err();
    assert!(err.to_string().contains("pg_dump"), "{err}");
    assert!(!to.exists());
}
