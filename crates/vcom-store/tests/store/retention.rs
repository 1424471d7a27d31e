//! Retention: `prune` deletes what every device holds at once, what some device holds by
//! age and by count, and never a message some recipient still waits for.

use std::time::Duration;

use vcom_store::{PruneReport, StoreConfig};

use crate::support::{
    Backend, another_device, message_at, no_hook, pending_bodies, store_with, text, ts, uid,
    user_with_device,
};

fn retention(max_age_ms: Option<u64>, max_count: Option<u64>) -> StoreConfig {
    StoreConfig {
        delivered_max_age: max_age_ms.map(Duration::from_millis),
        delivered_max_count: max_count,
        ..StoreConfig::default()
    }
}

async fn prune_deletes_at_once_what_every_device_of_every_recipient_holds<S: Backend>() {
    let t = store_with::<S>(retention(None, None)).await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let carol = user_with_device(&t.store, "carol").await;
    let group = t
        .store
        .create_group("g", &[uid("bob"), uid("carol")], ts(1))
        .await
        .unwrap();
    let direct = message_at(&t.store, alice, &["bob"], "direct", 0).await;
    let mut in_group = text("alice", alice, &[], "group");
    in_group.group = Some(group);
    let group_message = t
        .store
        .store_message(in_group, no_hook())
        .await
        .unwrap()
        .id
        .unwrap();
    t.store.advance_cursor(bob, group_message).await.unwrap();
    assert_eq!(
        t.store.prune(ts(1)).await.unwrap().messages_deleted,
        1,
        "the direct message is held by bob's only device; carol lacks the group's"
    );
    assert!(direct < group_message);
    t.store.advance_cursor(carol, group_message).await.unwrap();
    assert_eq!(t.store.prune(ts(1)).await.unwrap().messages_deleted, 1);
    assert_eq!(t.store.stats().await.unwrap().messages, 0);
}

async fn prune_deletes_delivered_messages_older_than_the_max_age<S: Backend>() {
    let t = store_with::<S>(retention(Some(1_000), None)).await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    // A second device that never comes back keeps both from being held everywhere.
    another_device(&t.store, "bob").await;
    let _old = message_at(&t.store, alice, &["bob"], "old", 1_000).await;
    let recent = message_at(&t.store, alice, &["bob"], "recent", 5_000).await;
    t.store.advance_cursor(bob, recent).await.unwrap();

    let report = t.store.prune(ts(5_500)).await.unwrap();

    assert_eq!(
        report,
        PruneReport {
            messages_deleted: 1,
            transfers_deleted: 0
        }
    );
    assert_eq!(t.store.stats().await.unwrap().messages, 1);
}

async fn prune_never_deletes_a_message_some_recipient_still_waits_for<S: Backend>() {
    let t = store_with::<S>(retention(Some(1), Some(0))).await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let carol = user_with_device(&t.store, "carol").await;
    let id = message_at(&t.store, alice, &["bob", "carol"], "for both", 0).await;
    t.store.advance_cursor(bob, id).await.unwrap();

    let report = t.store.prune(ts(1_000_000)).await.unwrap();

    assert_eq!(report.messages_deleted, 0);
    assert_eq!(pending_bodies(&t.store, "carol", carol).await, ["for both"]);
    t.store.advance_cursor(carol, id).await.unwrap();
    assert_eq!(
        t.store.prune(ts(1_000_000)).await.unwrap().messages_deleted,
        1
    );
}

async fn prune_keeps_at_most_max_count_delivered_messages_newest_first<S: Backend>() {
    let t = store_with::<S>(retention(None, Some(2))).await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    another_device(&t.store, "bob").await;
    let mut delivered = Vec::new();
    for i in 0..5 {
        delivered.push(message_at(&t.store, alice, &["bob"], &format!("d{i}"), 0).await);
    }
    message_at(&t.store, alice, &["bob"], "waiting", 0).await;
    t.store
        .advance_cursor(bob, *delivered.iter().max().unwrap())
        .await
        .unwrap();

    let report = t.store.prune(ts(10)).await.unwrap();

    assert_eq!(report.messages_deleted, 3);
    assert_eq!(t.store.stats().await.unwrap().messages, 3);
    // A new device of bob still gets the message nobody received.
    let tablet = t.store.issue_device(&uid("bob"), ts(11)).await.unwrap();
    assert_eq!(pending_bodies(&t.store, "bob", tablet).await, ["waiting"]);
}

async fn prune_without_retention_rules_deletes_nothing<S: Backend>() {
    let t = store_with::<S>(retention(None, None)).await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    another_device(&t.store, "bob").await;
    let id = message_at(&t.store, alice, &["bob"], "kept", 0).await;
    t.store.advance_cursor(bob, id).await.unwrap();
    assert_eq!(
        t.store.prune(ts(i64::MAX)).await.unwrap().messages_deleted,
        0
    );
}

async fn prune_keeps_only_the_newest_transfer_log_rows_and_the_highest_id<S: Backend>() {
    let t = store_with::<S>(StoreConfig {
        transfer_log_max: Some(3),
        ..StoreConfig::default()
    })
    .await;
    for id in 1..=10 {
        t.store
            .log_transfer(crate::transfers::record(id, Some(2)))
            .await
            .unwrap();
    }
    let report = t.store.prune(ts(1)).await.unwrap();
    assert_eq!(report.transfers_deleted, 7);
    let kept: Vec<i32> = t
        .store
        .transfers(100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id.0)
        .collect();
    assert_eq!(kept, [10, 9, 8]);
    assert_eq!(t.store.max_transfer_id().await.unwrap(), 10);
}

/// A client message id outlives its message: after the message was delivered and
/// pruned, a resend of the same id (its acknowledgement lost to a crash) is still
/// recognised and stored nowhere; 30 days after, the id is forgotten too.
async fn a_client_message_id_outlives_its_delivered_message_for_thirty_days<S: Backend>() {
    use crate::support::{no_hook, text, user_with_device};
    use vcom_store::NewMessage;

    let t = crate::support::store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let tagged = || NewMessage {
        tag: Some(77),
        ..text("alice", alice, &["bob"], "once")
    };
    let first = t.store.store_message(tagged(), no_hook()).await.unwrap();
    let id = first.id.unwrap();
    t.store.advance_cursor(bob, id).await.unwrap();
    let report = t.store.prune(ts(3_000)).await.unwrap();
    assert_eq!(report.messages_deleted, 1, "delivered everywhere: deleted");

    let again = t.store.store_message(tagged(), no_hook()).await.unwrap();
    assert!(again.duplicate && again.id == Some(id), "{again:?}");
    assert_eq!(t.store.stats().await.unwrap().messages, 0, "stored nowhere");

    let thirty_days_later = 2_000 + 30 * 24 * 3600 * 1000 + 1;
    t.store.prune(ts(thirty_days_later)).await.unwrap();
    let late = t.store.store_message(tagged(), no_hook()).await.unwrap();
    assert!(
        !late.duplicate && late.id.is_some_and(|new| new != id),
        "{late:?}"
    );
}

// Each test above, once per backend.
crate::on_both_backends!(
    tests: [
        prune_deletes_at_once_what_every_device_of_every_recipient_holds,
        prune_deletes_delivered_messages_older_than_the_max_age,
        prune_never_deletes_a_message_some_recipient_still_waits_for,
        prune_keeps_at_most_max_count_delivered_messages_newest_first,
        prune_without_retention_rules_deletes_nothing,
        prune_keeps_only_the_newest_transfer_log_rows_and_the_highest_id,
        a_client_message_id_outlives_its_delivered_message_for_thirty_days,
    ],
);
