//! The file-transfer log.

use vcom_protocol::TransferId;
use vcom_store::{Store, TransferRecord};

use crate::support::{store, ts, uid};

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

#[tokio::test]
async fn max_transfer_id_is_zero_without_transfers() {
    let t = store();
    assert_eq!(t.store.max_transfer_id().await.unwrap(), 0);
}

#[tokio::test]
async fn logged_transfers_come_back_newest_first_and_set_the_max_id() {
    let t = store();
    t.store.log_transfer(record(7, None)).await.unwrap();
    t.store.log_transfer(record(9, Some(3))).await.unwrap();
    t.store.log_transfer(record(8, Some(0))).await.unwrap();
    assert_eq!(t.store.max_transfer_id().await.unwrap(), 9);
    let recent = t.store.transfers(2).await.unwrap();
    assert_eq!(recent, [record(8, Some(0)), record(9, Some(3))]);
    assert_eq!(t.store.transfers(100).await.unwrap().len(), 3);
}
