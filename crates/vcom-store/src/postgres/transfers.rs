//! The file-transfer log (metadata only; file data is never stored).

use deadpool_postgres::GenericClient;
use vcom_protocol::{Timestamp, TransferId};

use super::statements::{execute, query, query_one};
use crate::sqlite::records;
use crate::{StoreResult, TransferRecord};

pub(crate) async fn log(c: &impl GenericClient, record: &TransferRecord) -> StoreResult<()> {
    execute(
        c,
        "INSERT INTO transfers (transfer_id, sender, recipient, size, name, bytes_relayed,
                                started_at, ended_at, abort_reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &i64::from(record.id.0),
            &record.sender.as_str(),
            &record.recipient.as_str(),
            &record.size,
            &record.name.as_bytes(),
            &record.bytes_relayed,
            &record.started_at.0,
            &record.ended_at.0,
            &record.abort_reason,
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn max_id(c: &impl GenericClient) -> StoreResult<i32> {
    let max: i64 = query_one(
        c,
        "SELECT COALESCE(MAX(transfer_id), 0) FROM transfers",
        &[],
    )
    .await?
    .try_get(0)?;
    records::i32_id(max, "transfer id")
}

pub(crate) async fn recent(
    c: &impl GenericClient,
    limit: usize,
) -> StoreResult<Vec<TransferRecord>> {
    query(
        c,
        "SELECT transfer_id, sender, recipient, size, name, bytes_relayed,
                started_at, ended_at, abort_reason
         FROM transfers ORDER BY seq DESC LIMIT $1",
        &[&records::limit(limit)],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(TransferRecord {
            id: TransferId(records::i32_id(row.try_get(0)?, "transfer id")?),
            sender: records::user_id(row.try_get(1)?)?,
            recipient: records::user_id(row.try_get(2)?)?,
            size: row.try_get(3)?,
            name: records::text(row.try_get(4)?, "file name")?,
            bytes_relayed: row.try_get(5)?,
            started_at: Timestamp(row.try_get(6)?),
            ended_at: Timestamp(row.try_get(7)?),
            abort_reason: row.try_get(8)?,
        })
    })
    .collect()
}
