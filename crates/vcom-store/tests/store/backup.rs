//! Online backups while messages are being stored, and restores into a stopped server's
//! data directory.

use vcom_protocol::DeviceId;
use vcom_store::{ListKind, SqliteStore, Store, StoreConfig, StoreError, check_backup, restore};

use crate::support::{
    db_path, no_hook, open_at, pending_bodies, store, store_with, text, ts, uid, user_with_device,
};

/// A backup taken while a sender stores message after message is a consistent snapshot:
/// every user, list and group, and of the messages exactly the first `n` stored, in
/// order, none half-written. Restored into another data directory it opens as a store
/// holding just that.
#[tokio::test]
async fn a_backup_under_write_load_restores_to_a_consistent_snapshot() {
    let t = store_with::<SqliteStore>(StoreConfig {
        pending_per_sender: None,
        ..StoreConfig::default()
    })
    .await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    t.store
        .replace_list(&uid("bob"), ListKind::Blocks, vec![uid("mallory")], ts(2))
        .await
        .unwrap();
    let group = t
        .store
        .create_group("friends", &[uid("alice"), uid("bob")], ts(3))
        .await
        .unwrap();

    const TOTAL: usize = 3_000;
    let writer = {
        let store = t.store.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                store
                    .store_message(
                        text("alice", alice, &["bob"], &format!("m{i:05}")),
                        no_hook(),
                    )
                    .await
                    .unwrap();
            }
        })
    };
    // Once some are stored, back up while the rest are being written.
    while t.store.stats().await.unwrap().messages < 300 {
        tokio::task::yield_now().await;
    }
    let copy = t.dir().join("backup.sqlite3");
    let report = t.store.backup(copy.clone()).await.unwrap();
    writer.await.unwrap();
    assert_eq!(report.users, 2);
    assert!(report.bytes > 0);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "a backup holds every message: private to its owner"
        );
    }
    assert_eq!(
        t.store.backup(copy.clone()).await.unwrap_err().to_string(),
        format!(
            "backup: {} exists: a backup never overwrites a file",
            copy.display()
        )
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let restored_db = db_path(elsewhere.path());
    let restored = restore(&copy, &restored_db).unwrap();
    assert_eq!(restored.previous, None, "there was nothing to replace");
    let back = open_at(&restored_db, StoreConfig::default());
    let bodies = pending_bodies(&back, "bob", bob).await;
    assert!(
        (300..TOTAL).contains(&bodies.len()),
        "a snapshot taken mid-stream: {} messages",
        bodies.len()
    );
    let expected: Vec<String> = (0..bodies.len()).map(|i| format!("m{i:05}")).collect();
    assert_eq!(bodies, expected, "the first n, in order");
    assert_eq!(
        back.lists(&uid("bob")).await.unwrap().blocks.entries,
        vec![uid("mallory")]
    );
    assert_eq!(back.group(group).await.unwrap().unwrap().members.len(), 2);
    assert!(
        back.device_owner(DeviceId(alice.0))
            .await
            .unwrap()
            .is_some(),
        "devices are back"
    );
}

/// Restoring over a database keeps the one it replaces, renamed beside it.
#[tokio::test]
async fn a_restore_keeps_the_database_it_replaces() {
    let t = store::<SqliteStore>().await;
    user_with_device(&t.store, "alice").await;
    let copy = t.dir().join("backup.sqlite3");
    t.store.backup(copy.clone()).await.unwrap();
    user_with_device(&t.store, "bob").await;
    let path = t.path();
    t.store.close().await;
    let report = restore(&copy, &path).unwrap();
    let previous = report.previous.expect("the old database was kept");
    assert!(previous.exists());
    assert_eq!(
        check_backup(&previous).unwrap().users,
        2,
        "bob is in the old one"
    );
    let back = open_at(&path, StoreConfig::default());
    assert!(back.user(&uid("alice")).await.unwrap().is_some());
    assert!(back.user(&uid("bob")).await.unwrap().is_none());
}

/// A file that is not a whole vCom database is refused, and nothing is replaced.
#[tokio::test]
async fn a_restore_refuses_what_is_not_a_vcom_database_and_changes_nothing() {
    let t = store::<SqliteStore>().await;
    user_with_device(&t.store, "alice").await;
    let path = t.path();
    t.store.close().await;
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"this is not a database, just some bytes").unwrap();
    let empty = dir.path().join("empty.sqlite3");
    rusqlite::Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    for bad in [&garbage, &empty, &dir.path().join("missing")] {
        let err = restore(bad, &path).unwrap_err();
        assert!(
            matches!(err, StoreError::Backup(_)),
            "{}: {err}",
            bad.display()
        );
    }
    let back = open_at(&path, StoreConfig::default());
    assert!(back.user(&uid("alice")).await.unwrap().is_some());
}
