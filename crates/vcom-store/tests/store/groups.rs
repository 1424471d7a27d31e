//! Groups and members.

use vcom_protocol::GroupId;
use vcom_store::{Store, StoreError};

use crate::support::{store, ts, uid};

#[tokio::test]
async fn created_groups_get_positive_unique_ids_and_members_ordered_by_identifier() {
    let t = store();
    let g1 = t
        .store
        .create_group("ops", &[uid("carol"), uid("alice"), uid("alice")], ts(1))
        .await
        .unwrap();
    let g2 = t.store.create_group("empty", &[], ts(1)).await.unwrap();
    assert!(g1.0 > 0 && g2.0 > 0 && g1 != g2);
    let group = t.store.group(g1).await.unwrap().unwrap();
    assert_eq!(group.name, "ops");
    assert_eq!(group.members, [uid("alice"), uid("carol")]);
    assert!(t.store.group(g2).await.unwrap().unwrap().members.is_empty());
}

#[tokio::test]
async fn adding_and_removing_members_report_whether_anything_changed() {
    let t = store();
    let g = t
        .store
        .create_group("g", &[uid("alice")], ts(1))
        .await
        .unwrap();
    assert!(t.store.add_group_member(g, &uid("bob")).await.unwrap());
    assert!(!t.store.add_group_member(g, &uid("bob")).await.unwrap());
    assert!(t.store.remove_group_member(g, &uid("alice")).await.unwrap());
    assert!(!t.store.remove_group_member(g, &uid("alice")).await.unwrap());
    assert_eq!(
        t.store.group(g).await.unwrap().unwrap().members,
        [uid("bob")]
    );
}

#[tokio::test]
async fn member_changes_on_an_unknown_group_are_not_found() {
    let t = store();
    let err = t
        .store
        .add_group_member(GroupId(42), &uid("bob"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = t
        .store
        .remove_group_member(GroupId(42), &uid("bob"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn an_unknown_group_is_none_and_groups_are_listed_by_identifier() {
    let t = store();
    assert_eq!(t.store.group(GroupId(1)).await.unwrap(), None);
    let a = t
        .store
        .create_group("a", &[uid("x"), uid("w")], ts(1))
        .await
        .unwrap();
    let b = t.store.create_group("b", &[], ts(1)).await.unwrap();
    let groups = t.store.groups().await.unwrap();
    assert_eq!(groups.iter().map(|g| g.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(groups[0].members, [uid("w"), uid("x")]);
}
