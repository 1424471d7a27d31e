//! Storing messages, marking them delivered, and what each device still receives.

use bytes::Bytes;
use vcom_protocol::{DeviceId, GroupId, MessageKind};
use vcom_store::{MessageId, NewMessage, Store, StoreConfig, StoreError};

use crate::support::{pending_bodies, store, store_with, text, ts, uid, user_with_device};

#[tokio::test]
async fn message_data_is_stored_byte_exact() {
    let t = store();
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let data: Vec<u8> = (0..=255u8).chain([0, 0, 0xff]).collect();
    let message = NewMessage {
        sender: uid("alice"),
        origin_device: alice,
        group: Some(GroupId(77)),
        recipients: vec![uid("bob")],
        sent_at: ts(123_456),
        received_at: ts(123_999),
        kind: MessageKind::Image,
        data: Bytes::from(data.clone()),
    };
    let id = t
        .store
        .store_message(message)
        .await
        .unwrap()
        .id
        .expect("stored");
    let pending = t.store.pending(&uid("bob"), bob, None, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    let got = &pending[0];
    assert_eq!(got.id, id);
    assert_eq!(got.sender, uid("alice"));
    assert_eq!(got.group, Some(GroupId(77)));
    assert_eq!(got.sent_at, ts(123_456));
    assert_eq!(got.kind, MessageKind::Image);
    assert_eq!(&got.data[..], &data[..]);
    assert!(!got.read);
}

#[tokio::test]
async fn message_ids_increase_in_store_order() {
    let t = store();
    let alice = user_with_device(&t.store, "alice").await;
    let mut last = MessageId(0);
    for i in 0..20 {
        let id = t
            .store
            .store_message(text("alice", alice, &["bob"], &i.to_string()))
            .await
            .unwrap()
            .id
            .expect("stored");
        assert!(id > last);
        last = id;
    }
}

#[tokio::test]
async fn pending_messages_come_oldest_first_and_page_with_after_and_limit() {
    let t = store();
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    for i in 0..5 {
        t.store
            .store_message(text("alice", alice, &["bob"], &format!("m{i}")))
            .await
            .unwrap()
            .id
            .expect("stored");
    }
    let first = t.store.pending(&uid("bob"), bob, None, 2).await.unwrap();
    let bodies = |ms: &[vcom_store::PendingMessage]| -> Vec<String> {
        ms.iter()
            .map(|m| String::from_utf8(m.data.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(bodies(&first), ["m0", "m1"]);
    let rest = t
        .store
        .pending(&uid("bob"), bob, Some(first[1].id), 10)
        .await
        .unwrap();
    assert_eq!(bodies(&rest), ["m2", "m3", "m4"]);
    assert!(
        t.store
            .pending(&uid("bob"), bob, None, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_message_is_pending_only_for_its_recipients() {
    let t = store();
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let carol = user_with_device(&t.store, "carol").await;
    t.store
        .store_message(text("alice", alice, &["bob"], "for bob"))
        .await
        .unwrap()
        .id
        .expect("stored");
    assert_eq!(pending_bodies(&t.store, "bob", bob).await, ["for bob"]);
    assert!(pending_bodies(&t.store, "carol", carol).await.is_empty());
    assert!(pending_bodies(&t.store, "alice", alice).await.is_empty());
}

#[tokio::test]
async fn a_message_never_returns_to_its_origin_device() {
    let t = store();
    let a1 = user_with_device(&t.store, "alice").await;
    let a2 = t.store.issue_device(&uid("alice"), ts(1)).await.unwrap();
    // A group message lists the sender so the sender's other devices get it.
    t.store
        .store_message(text("alice", a1, &["alice", "bob"], "hi group"))
        .await
        .unwrap()
        .id
        .expect("stored");
    assert!(pending_bodies(&t.store, "alice", a1).await.is_empty());
    assert_eq!(pending_bodies(&t.store, "alice", a2).await, ["hi group"]);
}

#[tokio::test]
async fn a_delivered_message_leaves_that_device_and_is_read_on_the_others() {
    let t = store();
    let alice = user_with_device(&t.store, "alice").await;
    let phone = user_with_device(&t.store, "bob").await;
    let laptop = t.store.issue_device(&uid("bob"), ts(1)).await.unwrap();
    let id = t
        .store
        .store_message(text("alice", alice, &["bob"], "hello"))
        .await
        .unwrap()
        .id
        .expect("stored");

    let before = t
        .store
        .pending(&uid("bob"), laptop, None, 10)
        .await
        .unwrap();
    assert!(!before[0].read, "nobody has it yet");

    t.store.mark_delivered(phone, &[id], ts(3)).await.unwrap();

    assert!(
        t.store
            .pending(&uid("bob"), phone, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let after = t
        .store
        .pending(&uid("bob"), laptop, None, 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert!(after[0].read, "the phone already has it");

    t.store.mark_delivered(laptop, &[id], ts(4)).await.unwrap();
    assert!(
        t.store
            .pending(&uid("bob"), laptop, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn marking_twice_is_harmless() {
    let t = store();
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let id = t
        .store
        .store_message(text("alice", alice, &["bob"], "x"))
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store.mark_delivered(bob, &[id, id], ts(3)).await.unwrap();
    t.store.mark_delivered(bob, &[id], ts(4)).await.unwrap();
    assert_eq!(t.store.stats().await.unwrap().pending_deliveries, 0);
}

#[tokio::test]
async fn a_recipient_listed_twice_waits_once_and_is_counted_once() {
    let t = store();
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let id = t
        .store
        .store_message(text("alice", alice, &["bob", "bob"], "x"))
        .await
        .unwrap()
        .id
        .expect("stored");
    assert_eq!(t.store.stats().await.unwrap().pending_deliveries, 1);
    assert_eq!(pending_bodies(&t.store, "bob", bob).await, ["x"]);
    t.store.mark_delivered(bob, &[id], ts(3)).await.unwrap();
    assert_eq!(t.store.stats().await.unwrap().pending_deliveries, 0);
}

#[tokio::test]
async fn a_new_device_gets_older_messages_only_while_no_device_of_its_user_has_them() {
    let t = store();
    let alice = user_with_device(&t.store, "alice").await;
    let phone = user_with_device(&t.store, "bob").await;
    let seen = t
        .store
        .store_message(text("alice", alice, &["bob"], "seen by phone"))
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store
        .store_message(text("alice", alice, &["bob"], "unseen"))
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store.mark_delivered(phone, &[seen], ts(3)).await.unwrap();

    let tablet = t.store.issue_device(&uid("bob"), ts(4)).await.unwrap();
    let after_issue = t
        .store
        .store_message(text("alice", alice, &["bob"], "after issue"))
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store
        .mark_delivered(phone, &[after_issue], ts(5))
        .await
        .unwrap();

    let pending = t
        .store
        .pending(&uid("bob"), tablet, None, 10)
        .await
        .unwrap();
    let got: Vec<(String, bool)> = pending
        .iter()
        .map(|m| (String::from_utf8(m.data.to_vec()).unwrap(), m.read))
        .collect();
    assert_eq!(
        got,
        [
            ("unseen".to_string(), false),
            ("after issue".to_string(), true)
        ],
        "older messages another device has are not replayed; newer ones are, as read"
    );
}

#[tokio::test]
async fn an_older_message_leaves_a_new_device_once_another_device_receives_it() {
    let t = store();
    let alice = user_with_device(&t.store, "alice").await;
    let phone = user_with_device(&t.store, "bob").await;
    let id = t
        .store
        .store_message(text("alice", alice, &["bob"], "old"))
        .await
        .unwrap()
        .id
        .expect("stored");
    let tablet = t.store.issue_device(&uid("bob"), ts(4)).await.unwrap();
    assert_eq!(pending_bodies(&t.store, "bob", tablet).await, ["old"]);
    t.store.mark_delivered(phone, &[id], ts(5)).await.unwrap();
    assert!(pending_bodies(&t.store, "bob", tablet).await.is_empty());
}

#[tokio::test]
async fn pending_for_a_device_of_another_user_is_not_found() {
    let t = store();
    let _alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let err = t
        .store
        .pending(&uid("alice"), bob, None, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = t
        .store
        .pending(&uid("alice"), DeviceId(999), None, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn marking_for_an_unknown_device_is_not_found_and_unknown_messages_are_skipped() {
    let t = store();
    let bob = user_with_device(&t.store, "bob").await;
    let err = t
        .store
        .mark_delivered(DeviceId(999), &[MessageId(1)], ts(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    t.store
        .mark_delivered(bob, &[MessageId(424_242)], ts(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_full_inbox_refuses_new_messages_and_keeps_every_one_it_holds() {
    let config = StoreConfig {
        pending_cap_per_user: Some(3),
        ..StoreConfig::default()
    };
    let t = store_with(config);
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let delivered = t
        .store
        .store_message(text("alice", alice, &["bob"], "delivered"))
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store
        .mark_delivered(bob, &[delivered], ts(2))
        .await
        .unwrap();
    let mut outcomes = Vec::new();
    for i in 0..5 {
        let stored = t
            .store
            .store_message(text("alice", alice, &["bob"], &format!("m{i}")))
            .await
            .unwrap();
        outcomes.push((stored.id.is_some(), stored.refused));
    }
    let bob_id = uid("bob");
    assert_eq!(
        outcomes,
        [
            (true, vec![]),
            (true, vec![]),
            (true, vec![]),
            (false, vec![bob_id.clone()]),
            (false, vec![bob_id])
        ]
    );
    assert_eq!(
        pending_bodies(&t.store, "bob", bob).await,
        ["m0", "m1", "m2"],
        "the oldest, accepted first, are all still there"
    );
    // Once bob has them, his inbox takes new ones again.
    let ids: Vec<MessageId> = t
        .store
        .pending(&uid("bob"), bob, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    t.store.mark_delivered(bob, &ids, ts(3)).await.unwrap();
    let again = t
        .store
        .store_message(text("alice", alice, &["bob"], "m5"))
        .await
        .unwrap();
    assert!(again.id.is_some() && again.refused.is_empty());
}

#[tokio::test]
async fn a_full_inbox_refuses_only_its_own_copy_of_a_message_for_several() {
    let config = StoreConfig {
        pending_cap_per_user: Some(1),
        ..StoreConfig::default()
    };
    let t = store_with(config);
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let carol = user_with_device(&t.store, "carol").await;
    t.store
        .store_message(text("alice", alice, &["bob"], "bob only"))
        .await
        .unwrap();
    let both = t
        .store
        .store_message(text("alice", alice, &["bob", "carol"], "both"))
        .await
        .unwrap();
    assert!(both.id.is_some());
    assert_eq!(both.refused, [uid("bob")]);
    assert_eq!(pending_bodies(&t.store, "bob", bob).await, ["bob only"]);
    assert_eq!(pending_bodies(&t.store, "carol", carol).await, ["both"]);
}

#[tokio::test]
async fn stats_count_every_kind_of_row() {
    let t = store();
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    t.store
        .create_group("g", &[uid("alice")], ts(1))
        .await
        .unwrap();
    let id = t
        .store
        .store_message(text("alice", alice, &["bob", "carol"], "x"))
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store
        .store_message(text("alice", alice, &["bob"], "y"))
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store.mark_delivered(bob, &[id], ts(2)).await.unwrap();
    let stats = t.store.stats().await.unwrap();
    assert_eq!(stats.users, 2);
    assert_eq!(stats.devices, 2);
    assert_eq!(stats.groups, 1);
    assert_eq!(stats.messages, 2);
    // carol for x, bob for y.
    assert_eq!(stats.pending_deliveries, 2);
    assert_eq!(stats.transfers, 0);
}
