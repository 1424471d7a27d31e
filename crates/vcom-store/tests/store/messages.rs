//! Storing messages, device cursors, and what each device still receives.

use bytes::Bytes;
use vcom_protocol::{DeviceId, MessageKind};
use vcom_store::{ListKind, MessageId, NewMessage, StoreConfig, StoreError};

use crate::support::{
    Backend, message_at, no_hook, pending_bodies, store, store_with, text, ts, uid,
    user_with_device,
};

async fn message_data_is_stored_byte_exact<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let data: Vec<u8> = (0..=255u8).chain([0, 0, 0xff]).collect();
    let message = NewMessage {
        sender: uid("alice"),
        origin_device: alice,
        group: None,
        recipients: vec![uid("bob")],
        tag: None,
        sent_at: ts(123_456),
        received_at: ts(123_999),
        kind: MessageKind::Image,
        data: Bytes::from(data.clone()),
    };
    let id = t
        .store
        .store_message(message, no_hook())
        .await
        .unwrap()
        .id
        .expect("stored");
    let pending = t
        .store
        .pending(&uid("bob"), bob, None, 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    let got = &pending[0];
    assert_eq!(got.id, id);
    assert_eq!(got.sender, uid("alice"));
    assert_eq!(got.group, None);
    assert_eq!(got.sent_at, ts(123_456));
    assert_eq!(got.kind, MessageKind::Image);
    assert_eq!(&got.data[..], &data[..]);
    assert!(!got.read);
}

/// A connection's reader keeps many messages in flight and cannot control the order in
/// which their futures are first polled (a set of futures polls one that yielded after
/// newer ones): the order is the order of the calls.
async fn messages_commit_in_the_order_of_the_calls_whatever_order_their_futures_run<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    user_with_device(&t.store, "bob").await;
    let calls: Vec<_> = (0..50)
        .map(|i| {
            t.store
                .store_message(text("alice", alice, &["bob"], &i.to_string()), no_hook())
        })
        .collect();
    let mut ids = Vec::new();
    // The last call's future first.
    for call in calls.into_iter().rev() {
        ids.push(call.await.unwrap().id.expect("stored"));
    }
    ids.reverse();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids in call order: {ids:?}"
    );
}

async fn message_ids_increase_in_store_order<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let mut last = MessageId(0);
    for i in 0..20 {
        let id = t
            .store
            .store_message(text("alice", alice, &["bob"], &i.to_string()), no_hook())
            .await
            .unwrap()
            .id
            .expect("stored");
        assert!(id > last);
        last = id;
    }
}

async fn pending_messages_come_oldest_first_and_page_with_after_and_limit<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    for i in 0..5 {
        t.store
            .store_message(text("alice", alice, &["bob"], &format!("m{i}")), no_hook())
            .await
            .unwrap()
            .id
            .expect("stored");
    }
    let first = t
        .store
        .pending(&uid("bob"), bob, None, 2, usize::MAX)
        .await
        .unwrap();
    let bodies = |ms: &[vcom_store::PendingMessage]| -> Vec<String> {
        ms.iter()
            .map(|m| String::from_utf8(m.data.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(bodies(&first), ["m0", "m1"]);
    let rest = t
        .store
        .pending(&uid("bob"), bob, Some(first[1].id), 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!(bodies(&rest), ["m2", "m3", "m4"]);
    assert!(
        t.store
            .pending(&uid("bob"), bob, None, 0, usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_page_of_pending_messages_stops_at_its_byte_budget_but_never_comes_back_empty<
    S: Backend,
>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    for body in ["aaaa", "bbbb", "cccccccc", "dd"] {
        message_at(&t.store, alice, &["bob"], body, 0).await;
    }
    let page = |after, max_bytes| {
        let store = t.store.clone();
        async move {
            store
                .pending(&uid("bob"), bob, after, 100, max_bytes)
                .await
                .unwrap()
        }
    };
    let first = page(None, 9).await;
    assert_eq!(first.len(), 2, "4 + 4 bytes fit in 9, 4 + 4 + 8 do not");
    let second = page(Some(first[1].id), 4).await;
    assert_eq!(
        second.len(),
        1,
        "a message larger than the budget still comes alone"
    );
    assert_eq!(&second[0].data[..], b"cccccccc");
    let rest = page(Some(second[0].id), 4).await;
    assert_eq!(&rest[0].data[..], b"dd");
}

async fn a_message_is_pending_only_for_its_recipients<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let carol = user_with_device(&t.store, "carol").await;
    t.store
        .store_message(text("alice", alice, &["bob"], "for bob"), no_hook())
        .await
        .unwrap()
        .id
        .expect("stored");
    assert_eq!(pending_bodies(&t.store, "bob", bob).await, ["for bob"]);
    assert!(pending_bodies(&t.store, "carol", carol).await.is_empty());
    assert!(pending_bodies(&t.store, "alice", alice).await.is_empty());
}

async fn a_message_never_returns_to_its_origin_device<S: Backend>() {
    let t = store::<S>().await;
    let a1 = user_with_device(&t.store, "alice").await;
    let a2 = t.store.issue_device(&uid("alice"), ts(1)).await.unwrap();
    // A message to oneself reaches one's other devices.
    t.store
        .store_message(text("alice", a1, &["alice", "bob"], "hi group"), no_hook())
        .await
        .unwrap()
        .id
        .expect("stored");
    assert!(pending_bodies(&t.store, "alice", a1).await.is_empty());
    assert_eq!(pending_bodies(&t.store, "alice", a2).await, ["hi group"]);
}

async fn a_delivered_message_leaves_that_device_and_is_read_on_the_others<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let phone = user_with_device(&t.store, "bob").await;
    let laptop = t.store.issue_device(&uid("bob"), ts(1)).await.unwrap();
    let id = t
        .store
        .store_message(text("alice", alice, &["bob"], "hello"), no_hook())
        .await
        .unwrap()
        .id
        .expect("stored");

    let before = t
        .store
        .pending(&uid("bob"), laptop, None, 10, usize::MAX)
        .await
        .unwrap();
    assert!(!before[0].read, "nobody has it yet");

    t.store.advance_cursor(phone, id).await.unwrap();

    assert!(
        t.store
            .pending(&uid("bob"), phone, None, 10, usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    let after = t
        .store
        .pending(&uid("bob"), laptop, None, 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert!(after[0].read, "the phone already has it");

    t.store.advance_cursor(laptop, id).await.unwrap();
    assert!(
        t.store
            .pending(&uid("bob"), laptop, None, 10, usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn advancing_twice_is_harmless<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let id = t
        .store
        .store_message(text("alice", alice, &["bob"], "x"), no_hook())
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store.advance_cursor(bob, id).await.unwrap();
    t.store.advance_cursor(bob, id).await.unwrap();
    assert_eq!(t.store.stats().await.unwrap().pending_deliveries, 0);
}

async fn a_recipient_listed_twice_waits_once_and_is_counted_once<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let id = t
        .store
        .store_message(text("alice", alice, &["bob", "bob"], "x"), no_hook())
        .await
        .unwrap()
        .id
        .expect("stored");
    assert_eq!(t.store.stats().await.unwrap().pending_deliveries, 1);
    assert_eq!(pending_bodies(&t.store, "bob", bob).await, ["x"]);
    t.store.advance_cursor(bob, id).await.unwrap();
    assert_eq!(t.store.stats().await.unwrap().pending_deliveries, 0);
}

async fn a_new_device_starts_at_the_most_advanced_device_of_its_user<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let phone = user_with_device(&t.store, "bob").await;
    let seen = t
        .store
        .store_message(text("alice", alice, &["bob"], "seen by phone"), no_hook())
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store
        .store_message(text("alice", alice, &["bob"], "unseen"), no_hook())
        .await
        .unwrap();
    t.store.advance_cursor(phone, seen).await.unwrap();

    let tablet = t.store.issue_device(&uid("bob"), ts(4)).await.unwrap();
    t.store
        .store_message(text("alice", alice, &["bob"], "after issue"), no_hook())
        .await
        .unwrap();
    let read = |pending: Vec<vcom_store::PendingMessage>| -> Vec<(String, bool)> {
        pending
            .iter()
            .map(|m| (String::from_utf8(m.data.to_vec()).unwrap(), m.read))
            .collect()
    };
    assert_eq!(
        read(
            t.store
                .pending(&uid("bob"), tablet, None, 10, usize::MAX)
                .await
                .unwrap()
        ),
        [
            ("unseen".to_string(), false),
            ("after issue".to_string(), false)
        ],
        "what the phone holds is not replayed; what no device has yet is"
    );
    let last = t
        .store
        .pending(&uid("bob"), phone, None, 10, usize::MAX)
        .await
        .unwrap()[1]
        .id;
    t.store.advance_cursor(phone, last).await.unwrap();
    assert_eq!(
        read(
            t.store
                .pending(&uid("bob"), tablet, None, 10, usize::MAX)
                .await
                .unwrap()
        ),
        [
            ("unseen".to_string(), true),
            ("after issue".to_string(), true)
        ],
        "once the phone holds them they are read"
    );
}

async fn a_device_behind_another_gets_what_it_lacks_as_read<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let phone = user_with_device(&t.store, "bob").await;
    let id = t
        .store
        .store_message(text("alice", alice, &["bob"], "old"), no_hook())
        .await
        .unwrap()
        .id
        .expect("stored");
    let tablet = t.store.issue_device(&uid("bob"), ts(4)).await.unwrap();
    assert_eq!(pending_bodies(&t.store, "bob", tablet).await, ["old"]);
    t.store.advance_cursor(phone, id).await.unwrap();
    let pending = t
        .store
        .pending(&uid("bob"), tablet, None, 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].read);
    assert!(pending_bodies(&t.store, "bob", phone).await.is_empty());
}

async fn a_cursor_never_moves_back<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let first = message_at(&t.store, alice, &["bob"], "1", 0).await;
    let second = message_at(&t.store, alice, &["bob"], "2", 0).await;
    t.store.advance_cursor(bob, second).await.unwrap();
    t.store.advance_cursor(bob, first).await.unwrap();
    assert!(pending_bodies(&t.store, "bob", bob).await.is_empty());
    assert_eq!(t.store.stats().await.unwrap().pending_deliveries, 0);
}

async fn a_group_message_is_stored_once_and_read_by_members_since_they_joined<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let alice_laptop = t.store.issue_device(&uid("alice"), ts(1)).await.unwrap();
    let bob = user_with_device(&t.store, "bob").await;
    let carol = user_with_device(&t.store, "carol").await;
    let group = t
        .store
        .create_group("g", &[uid("alice"), uid("bob")], ts(1))
        .await
        .unwrap();
    let to_group = |body: &str| {
        let mut m = text("alice", alice, &[], body);
        m.group = Some(group);
        m
    };
    t.store
        .store_message(to_group("before carol"), no_hook())
        .await
        .unwrap();
    t.store
        .add_group_member(group, &uid("carol"))
        .await
        .unwrap();
    t.store
        .store_message(to_group("after carol"), no_hook())
        .await
        .unwrap();
    // dave blocks alice: her group messages never reach him.
    let dave = user_with_device(&t.store, "dave").await;
    t.store.add_group_member(group, &uid("dave")).await.unwrap();
    t.store
        .replace_list(&uid("dave"), ListKind::Blocks, vec![uid("alice")], ts(2))
        .await
        .unwrap();
    t.store
        .store_message(to_group("blocked"), no_hook())
        .await
        .unwrap();

    assert_eq!(
        t.store.stats().await.unwrap().messages,
        3,
        "stored once each"
    );
    assert_eq!(
        pending_bodies(&t.store, "bob", bob).await,
        ["before carol", "after carol", "blocked"]
    );
    assert_eq!(
        pending_bodies(&t.store, "carol", carol).await,
        ["after carol", "blocked"]
    );
    assert!(pending_bodies(&t.store, "dave", dave).await.is_empty());
    assert!(
        pending_bodies(&t.store, "alice", alice).await.is_empty(),
        "never back to the device it came from"
    );
    assert_eq!(
        pending_bodies(&t.store, "alice", alice_laptop).await.len(),
        3
    );
    let first = t
        .store
        .pending(&uid("bob"), bob, None, 1, usize::MAX)
        .await
        .unwrap();
    assert_eq!(first[0].group, Some(group));
}

async fn inbox_and_groups_merge_into_one_backlog_in_id_order_page_by_page<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let mut groups = Vec::new();
    for name in ["one", "two"] {
        groups.push(
            t.store
                .create_group(name, &[uid("alice"), uid("bob")], ts(1))
                .await
                .unwrap(),
        );
    }
    let mut sent = Vec::new();
    for i in 0..9 {
        let mut m = text("alice", alice, &["bob"], &format!("m{i}"));
        m.group = match i % 3 {
            0 => None,
            n => Some(groups[n - 1]),
        };
        sent.push(format!("m{i}"));
        t.store.store_message(m, no_hook()).await.unwrap();
    }
    let mut got = Vec::new();
    let mut after = None;
    loop {
        let page = t
            .store
            .pending(&uid("bob"), bob, after, 2, usize::MAX)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 2);
        after = Some(last.id);
        got.extend(
            page.iter()
                .map(|m| String::from_utf8(m.data.to_vec()).unwrap()),
        );
    }
    assert_eq!(got, sent);
}

async fn a_tagged_message_is_stored_once_per_device_and_tag<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let tagged = |tag| {
        let mut m = text("alice", alice, &["bob"], "once");
        m.tag = Some(tag);
        m
    };
    let first = t.store.store_message(tagged(7), no_hook()).await.unwrap();
    let again = t.store.store_message(tagged(7), no_hook()).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    let other = t.store.store_message(tagged(8), no_hook()).await.unwrap();
    assert!(!other.duplicate && other.id > first.id);
    assert_eq!(pending_bodies(&t.store, "bob", bob).await, ["once", "once"]);
}

async fn commit_hooks_run_once_each_in_commit_order_before_the_answer<S: Backend>() {
    use std::sync::{Arc, Mutex};
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let store = t.store.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let hook_seen = Arc::clone(&seen);
                let stored = store
                    .store_message(
                        text("alice", alice, &["bob"], &i.to_string()),
                        Box::new(move |r| {
                            hook_seen
                                .lock()
                                .unwrap()
                                .push(r.as_ref().unwrap().id.unwrap())
                        }),
                    )
                    .await
                    .unwrap();
                assert!(
                    seen.lock().unwrap().contains(&stored.id.unwrap()),
                    "the hook ran before the answer"
                );
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 50);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "in commit order: {seen:?}"
    );
}

async fn pending_for_a_device_of_another_user_is_not_found<S: Backend>() {
    let t = store::<S>().await;
    let _alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let err = t
        .store
        .pending(&uid("alice"), bob, None, 10, usize::MAX)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = t
        .store
        .pending(&uid("alice"), DeviceId(999), None, 10, usize::MAX)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

async fn advancing_an_unknown_device_is_not_found_and_past_unknown_messages_is_fine<S: Backend>() {
    let t = store::<S>().await;
    let bob = user_with_device(&t.store, "bob").await;
    let err = t
        .store
        .advance_cursor(DeviceId(999), MessageId(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    t.store
        .advance_cursor(bob, MessageId(424_242))
        .await
        .unwrap();
}

async fn a_full_inbox_refuses_new_messages_and_keeps_every_one_it_holds<S: Backend>() {
    let config = StoreConfig {
        pending_cap_per_user: Some(3),
        ..StoreConfig::default()
    };
    let t = store_with::<S>(config).await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let delivered = t
        .store
        .store_message(text("alice", alice, &["bob"], "delivered"), no_hook())
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store.advance_cursor(bob, delivered).await.unwrap();
    let mut outcomes = Vec::new();
    for i in 0..5 {
        let stored = t
            .store
            .store_message(text("alice", alice, &["bob"], &format!("m{i}")), no_hook())
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
        .pending(&uid("bob"), bob, None, 10, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    t.store
        .advance_cursor(bob, *ids.iter().max().unwrap())
        .await
        .unwrap();
    let again = t
        .store
        .store_message(text("alice", alice, &["bob"], "m5"), no_hook())
        .await
        .unwrap();
    assert!(again.id.is_some() && again.refused.is_empty());
}

async fn a_full_inbox_refuses_only_its_own_copy_of_a_message_for_several<S: Backend>() {
    let config = StoreConfig {
        pending_cap_per_user: Some(1),
        ..StoreConfig::default()
    };
    let t = store_with::<S>(config).await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let carol = user_with_device(&t.store, "carol").await;
    t.store
        .store_message(text("alice", alice, &["bob"], "bob only"), no_hook())
        .await
        .unwrap();
    let both = t
        .store
        .store_message(text("alice", alice, &["bob", "carol"], "both"), no_hook())
        .await
        .unwrap();
    assert!(both.id.is_some());
    assert_eq!(both.refused, [uid("bob")]);
    assert_eq!(pending_bodies(&t.store, "bob", bob).await, ["bob only"]);
    assert_eq!(pending_bodies(&t.store, "carol", carol).await, ["both"]);
}

async fn stats_count_every_kind_of_row<S: Backend>() {
    let t = store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    t.store
        .create_group("g", &[uid("alice")], ts(1))
        .await
        .unwrap();
    let id = t
        .store
        .store_message(text("alice", alice, &["bob", "carol"], "x"), no_hook())
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store
        .store_message(text("alice", alice, &["bob"], "y"), no_hook())
        .await
        .unwrap()
        .id
        .expect("stored");
    t.store.advance_cursor(bob, id).await.unwrap();
    let stats = t.store.stats().await.unwrap();
    assert_eq!(stats.users, 2);
    assert_eq!(stats.devices, 2);
    assert_eq!(stats.groups, 1);
    assert_eq!(stats.messages, 2);
    // carol for x, bob for y.
    assert_eq!(stats.pending_deliveries, 2);
    assert_eq!(stats.transfers, 0);
}

/// One sender cannot fill another user's inbox alone: past its share
/// (`pending_per_sender`) its messages to that user are refused, while other senders
/// still get through, and the share frees as the user receives what waits.
async fn a_sender_past_its_share_of_an_inbox_is_refused_and_others_still_get_through<S: Backend>() {
    let t = store_with::<S>(StoreConfig {
        pending_cap_per_user: None,
        pending_per_sender: Some(4),
        ..StoreConfig::default()
    })
    .await;
    let mallory = user_with_device(&t.store, "mallory").await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    let send = async |from: &str, device: DeviceId, body: &str| {
        let stored = t
            .store
            .store_message(text(from, device, &["bob"], body), no_hook())
            .await
            .unwrap();
        assert_eq!(stored.id.is_some(), stored.refused.is_empty());
        stored.id
    };
    let mut flood = Vec::new();
    for i in 0..10 {
        flood.push(send("mallory", mallory, &format!("flood {i}")).await);
    }
    assert_eq!(flood.iter().filter(|id| id.is_some()).count(), 4);
    assert!(flood[4..].iter().all(Option::is_none));
    for i in 0..3 {
        assert!(send("alice", alice, &format!("alice {i}")).await.is_some());
    }
    // Bob receives two of mallory's: two more of mallory's fit, then none.
    t.store
        .advance_cursor(bob, flood[1].expect("stored"))
        .await
        .unwrap();
    assert!(send("mallory", mallory, "again 0").await.is_some());
    assert!(send("mallory", mallory, "again 1").await.is_some());
    assert!(send("mallory", mallory, "again 2").await.is_none());
    assert_eq!(
        pending_bodies(&t.store, "bob", bob).await,
        [
            "flood 2", "flood 3", "alice 0", "alice 1", "alice 2", "again 0", "again 1"
        ]
    );
}

/// The per-sender shares against a model, over long random runs of sends from three
/// senders and receipts by the recipient: every message is refused exactly when its
/// sender already has `quota` messages waiting, whether the inbox is counted by sender
/// at that moment or not (counting starts at the quota and stops below half of it).
async fn per_sender_shares_match_a_model_over_random_runs<S: Backend>() {
    const QUOTA: usize = 6;
    for seed in 1..=4_u64 {
        let t = store_with::<S>(StoreConfig {
            pending_cap_per_user: None,
            pending_per_sender: Some(QUOTA as u64),
            ..StoreConfig::default()
        })
        .await;
        let senders = [
            ("s0", user_with_device(&t.store, "s0").await),
            ("s1", user_with_device(&t.store, "s1").await),
            ("s2", user_with_device(&t.store, "s2").await),
        ];
        let bob = user_with_device(&t.store, "bob").await;
        // Waiting for bob, oldest first: (id, sender index).
        let mut waiting: Vec<(MessageId, usize)> = Vec::new();
        let mut state = seed;
        let mut next = move |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        for step in 0..400 {
            if next(4) == 0 && !waiting.is_empty() {
                let upto = usize::try_from(next(waiting.len() as u64)).unwrap();
                let (through, _) = waiting[upto];
                t.store.advance_cursor(bob, through).await.unwrap();
                waiting.drain(..=upto);
            } else {
                // Mostly the first sender: it reaches its share again and again.
                let s = usize::try_from(next(5).saturating_sub(2)).unwrap();
                let (name, device) = senders[s];
                let stored = t
                    .store
                    .store_message(text(name, device, &["bob"], "x"), no_hook())
                    .await
                    .unwrap();
                let share = waiting.iter().filter(|(_, w)| *w == s).count();
                assert_eq!(
                    stored.id.is_none(),
                    share >= QUOTA,
                    "seed {seed} step {step}: {name} has {share} waiting"
                );
                if let Some(id) = stored.id {
                    waiting.push((id, s));
                }
            }
        }
    }
}

// Each test above, once per backend.
crate::on_both_backends!(
    tests: [
        message_data_is_stored_byte_exact,
        messages_commit_in_the_order_of_the_calls_whatever_order_their_futures_run,
        message_ids_increase_in_store_order,
        pending_messages_come_oldest_first_and_page_with_after_and_limit,
        a_page_of_pending_messages_stops_at_its_byte_budget_but_never_comes_back_empty,
        a_message_is_pending_only_for_its_recipients,
        a_message_never_returns_to_its_origin_device,
        a_delivered_message_leaves_that_device_and_is_read_on_the_others,
        advancing_twice_is_harmless,
        a_recipient_listed_twice_waits_once_and_is_counted_once,
        a_new_device_starts_at_the_most_advanced_device_of_its_user,
        a_device_behind_another_gets_what_it_lacks_as_read,
        a_cursor_never_moves_back,
        a_group_message_is_stored_once_and_read_by_members_since_they_joined,
        inbox_and_groups_merge_into_one_backlog_in_id_order_page_by_page,
        a_tagged_message_is_stored_once_per_device_and_tag,
        commit_hooks_run_once_each_in_commit_order_before_the_answer,
        pending_for_a_device_of_another_user_is_not_found,
        advancing_an_unknown_device_is_not_found_and_past_unknown_messages_is_fine,
        a_full_inbox_refuses_new_messages_and_keeps_every_one_it_holds,
        a_full_inbox_refuses_only_its_own_copy_of_a_message_for_several,
        stats_count_every_kind_of_row,
        a_sender_past_its_share_of_an_inbox_is_refused_and_others_still_get_through,
        per_sender_shares_match_a_model_over_random_runs,
    ],
);
