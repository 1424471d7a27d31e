//! Friend and block lists.

use vcom_store::{ListKind, StoreError, UserLists};

use crate::support::{Backend, store, ts, uid};

async fn lists_never_set_are_empty_with_timestamp_zero<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), None, ts(1))
        .await
        .unwrap();
    assert_eq!(
        t.store.lists(&uid("alice")).await.unwrap(),
        UserLists::default()
    );
}

async fn a_replaced_list_keeps_its_entry_order_and_gets_the_current_time<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), None, ts(1))
        .await
        .unwrap();
    let entries = vec![uid("zed"), uid("bob"), uid("mallory")];
    let stamp = t
        .store
        .replace_list(&uid("alice"), ListKind::Friends, entries.clone(), ts(500))
        .await
        .unwrap();
    assert_eq!(stamp, ts(500));
    let lists = t.store.lists(&uid("alice")).await.unwrap();
    assert_eq!(lists.friends.entries, entries);
    assert_eq!(lists.friends.timestamp, ts(500));
    assert_eq!(lists.blocks.timestamp, ts(0));
}

async fn a_list_timestamp_is_previous_plus_one_when_the_clock_lags<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), None, ts(1))
        .await
        .unwrap();
    let first = t
        .store
        .replace_list(&uid("alice"), ListKind::Blocks, vec![], ts(1_000))
        .await
        .unwrap();
    let second = t
        .store
        .replace_list(&uid("alice"), ListKind::Blocks, vec![uid("bob")], ts(900))
        .await
        .unwrap();
    let third = t
        .store
        .replace_list(&uid("alice"), ListKind::Blocks, vec![], ts(1_001))
        .await
        .unwrap();
    assert_eq!((first, second, third), (ts(1_000), ts(1_001), ts(1_002)));
}

async fn replacing_a_list_drops_the_old_entries<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), None, ts(1))
        .await
        .unwrap();
    t.store
        .replace_list(
            &uid("alice"),
            ListKind::Friends,
            vec![uid("a"), uid("b")],
            ts(1),
        )
        .await
        .unwrap();
    t.store
        .replace_list(&uid("alice"), ListKind::Friends, vec![uid("c")], ts(2))
        .await
        .unwrap();
    assert_eq!(
        t.store.lists(&uid("alice")).await.unwrap().friends.entries,
        [uid("c")]
    );
}

async fn blocked_user_is_reported_blocked<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), None, ts(1))
        .await
        .unwrap();
    t.store
        .replace_list(&uid("alice"), ListKind::Blocks, vec![uid("mallory")], ts(1))
        .await
        .unwrap();
    t.store
        .replace_list(&uid("alice"), ListKind::Friends, vec![uid("bob")], ts(1))
        .await
        .unwrap();
    assert!(
        t.store
            .is_blocked(&uid("alice"), &uid("mallory"))
            .await
            .unwrap()
    );
    assert!(
        !t.store
            .is_blocked(&uid("alice"), &uid("bob"))
            .await
            .unwrap()
    );
    assert!(
        !t.store
            .is_blocked(&uid("mallory"), &uid("alice"))
            .await
            .unwrap()
    );
}

async fn replacing_a_list_of_an_unknown_user_is_not_found<S: Backend>() {
    let t = store::<S>().await;
    let err = t
        .store
        .replace_list(&uid("nobody"), ListKind::Friends, vec![], ts(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

// Each test above, once per backend.
crate::on_both_backends!(
    tests: [
        lists_never_set_are_empty_with_timestamp_zero,
        a_replaced_list_keeps_its_entry_order_and_gets_the_current_time,
        a_list_timestamp_is_previous_plus_one_when_the_clock_lags,
        replacing_a_list_drops_the_old_entries,
        blocked_user_is_reported_blocked,
        replacing_a_list_of_an_unknown_user_is_not_found,
    ],
);
