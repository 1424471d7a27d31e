//! The file-transfer log.

use vcom_protocol::TransferId;
use vcom_store::TransferRecord;

use crate::support::{Backend, store, ts, uid};

pub(crate) fn record(id: i32, abort_reason: Option<i32>) -> TransferRecord {
    TransferRecord {
        id: TransferId(id),
        sender: uid("alice"),
        recipient: uid("bob"),
        size: 4096,
        name: "photo.jpg".into(),
        bytes_relayed: 1024,
        started_at: ts(100),
        ended_at: ts(200),
        abort_reason,
    }
}

async fn max_transfer_id_is_zero_without_transfers<S: Backend>() {
    let t = store::<S>().await;
    assert_eq!(t.store.max_transfer_id().await.unwrap(), 0);
}

async fn logged_transfers_come_back_newest_first_and_set_the_max_id<S: Backend>() {
    let t = store::<S>().await;
    t.store.log_transfer(record(7, None)).await.unwrap();
    t.store.log_transfer(record(9, Some(3))).await.unwrap();
    t.store.log_transfer(record(8, Some(0))).await.unwrap();
    assert_eq!(t.store.max_transfer_id().await.unwrap(), 9);
    let recent = t.store.transfers(2).await.unwrap();
    assert_eq!(recent, [record(8, Some(0)), record(9, Some(3))]);
    assert_eq!(t.store.transfers(100).await.unwrap().len(), 3);
}

/// A file name is kept as the client sent it, control characters and all (PostgreSQL's
/// text would refuse a NUL).
async fn a_file_name_is_kept_byte_exact<S: Backend>() {
    let t = store::<S>().await;
    let odd = TransferRecord {
        name: "a\0b\n\u{1F600}.txt".into(),
        ..record(1, None)
    };
    t.store.log_transfer(odd.clone()).await.unwrap();
    assert_eq!(t.store.transfers(1).await.unwrap(), [odd]);
}

// Each test above, once per backend.
crate::on_both_backends!(
    tests: [
        max_transfer_id_is_zero_without_transfers,
        logged_transfers_come_back_newest_first_and_set_the_max_id,
        a_file_name_is_kept_byte_exact,
    ],
);
