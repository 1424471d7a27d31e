//! The file-transfer log (metadata only; file data is never stored).

use rusqlite::{Connection, params};
use vcom_protocol::{Timestamp, TransferId};

use super::records;
use crate::{StoreResult, TransferRecord};

pub(crate) fn log(conn: &Connection, record: &TransferRecord) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO transfers (transfer_id, sender, recipient, size, name, bytes_relayed,
                                started_at, ended_at, abort_reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        record.id.0,
        record.sender.as_str(),
        record.recipient.as_str(),
        record.size,
        record.name,
        record.bytes_relayed,
        record.started_at.0,
        record.ended_at.0,
        record.abort_reason,
    ])?;
    Ok(())
}

pub(crate) fn max_id(conn: &Connection) -> StoreResult<i32> {
    let max: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(transfer_id), 0) FROM transfers")?
        .query_row([], |r| r.get(0))?;
    records::i32_id(max, "transfer id")
}

type Row = (i64, String, String, i64, String, i64, i64, i64, Option<i32>);

pub(crate) fn recent(conn: &Connection, limit: usize) -> StoreResult<Vec<TransferRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT transfer_id, sender, recipient, size, name, bytes_relayed,
                started_at, ended_at, abort_reason
         FROM transfers ORDER BY seq DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([records::limit(limit)], |r| -> rusqlite::Result<Row> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
        ))
    })?;
    rows.map(|row| {
        let (id, sender, recipient, size, name, bytes_relayed, started_at, ended_at, abort_reason) =
            row?;
        Ok(TransferRecord {
            id: TransferId(records::i32_id(id, "transfer id")?),
            sender: records::user_id(sender)?,
            recipient: records::user_id(recipient)?,
            size,
            name,
            bytes_relayed,
            started_at: Timestamp(started_at),
            ended_at: Timestamp(ended_at),
            abort_reason,
        })
    })
    .collect()
}
