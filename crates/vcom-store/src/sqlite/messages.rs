//! Stored messages: who still waits for each one, and which devices have it.
//!
//! A message is one `messages` row, one `message_recipients` row per recipient user
//! (`delivered` once any device of that user has it) and one `deliveries` row per
//! device that received it. Data is stored as a BLOB, byte for byte.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use vcom_protocol::{DeviceId, GroupId, MessageKind, Timestamp, UserId};

use super::{devices, records};
use crate::{MessageId, NewMessage, PendingMessage, StoreError, StoreResult};

pub(crate) fn store(
    conn: &Connection,
    message: &NewMessage,
    pending_cap: Option<u64>,
) -> StoreResult<MessageId> {
    conn.prepare_cached(
        "INSERT INTO messages (sender, origin_device, group_id, sent_at, received_at, is_text, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        message.sender.as_str(),
        message.origin_device.0,
        message.group.map(|g| g.0),
        message.sent_at.0,
        message.received_at.0,
        message.kind.is_text(),
        &message.data[..],
    ])?;
    let id = conn.last_insert_rowid();
    let mut add = conn.prepare_cached(
        "INSERT INTO message_recipients (user, message_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?;
    for recipient in &message.recipients {
        // A duplicate recipient adds no row, so nothing more waits (schema version 2:
        // this statement, not a trigger, keeps the count).
        if add.execute(params![recipient.as_str(), id])? == 1 {
            conn.prepare_cached(
                "INSERT INTO pending_counts (user, pending) VALUES (?1, 1)
                 ON CONFLICT (user) DO UPDATE SET pending = pending + 1",
            )?
            .execute([recipient.as_str()])?;
        }
        if let Some(cap) = pending_cap {
            enforce_pending_cap(conn, recipient, cap)?;
        }
    }
    Ok(MessageId(id))
}

/// Drops `user`'s oldest waiting messages beyond `cap`, so one user who never logs in
/// cannot fill the disk.
///
/// The oldest waiting rows are found by walking the user's rows in id order, stepping
/// over delivered ones. A partial index of waiting rows would make that direct, but it
/// doubled the scattered index pages every commit writes (measured: group-commit
/// throughput halved); eviction is rare and retention keeps the delivered rows short.
fn enforce_pending_cap(conn: &Connection, user: &UserId, cap: u64) -> StoreResult<()> {
    let pending: i64 = conn
        .prepare_cached("SELECT pending FROM pending_counts WHERE user = ?1")?
        .query_row([user.as_str()], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let excess = u64::try_from(pending).unwrap_or(0).saturating_sub(cap);
    if excess == 0 {
        return Ok(());
    }
    let oldest: Vec<i64> = conn
        .prepare_cached(
            "SELECT message_id FROM message_recipients
             WHERE user = ?1 AND delivered = 0 ORDER BY message_id LIMIT ?2",
        )?
        .query_map(
            params![user.as_str(), i64::try_from(excess).unwrap_or(i64::MAX)],
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut drop_row =
        conn.prepare_cached("DELETE FROM message_recipients WHERE user = ?1 AND message_id = ?2")?;
    // A message nobody else is listed for has no reason to stay.
    let mut drop_orphan = conn.prepare_cached(
        "DELETE FROM messages WHERE id = ?1
         AND NOT EXISTS (SELECT 1 FROM message_recipients WHERE message_id = ?1)",
    )?;
    for id in &oldest {
        drop_row.execute(params![user.as_str(), id])?;
        drop_orphan.execute([id])?;
    }
    tracing::warn!(
        user = %user,
        dropped = oldest.len(),
        cap,
        "store: pending cap reached; dropped {} oldest undelivered message(s) for user {user}",
        oldest.len()
    );
    Ok(())
}

pub(crate) fn mark_delivered(
    conn: &Connection,
    device: DeviceId,
    messages: &[MessageId],
    now: Timestamp,
) -> StoreResult<()> {
    let (owner, _) = devices::owner_and_watermark(conn, device)?;
    // A message pruned or dropped meanwhile is skipped: there is nothing left to mark.
    let mut record = conn.prepare_cached(
        "INSERT INTO deliveries (message_id, device_id, delivered_at)
         SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM messages WHERE id = ?1)
         ON CONFLICT DO NOTHING",
    )?;
    let mut flag = conn.prepare_cached(
        "UPDATE message_recipients SET delivered = 1
         WHERE user = ?1 AND message_id = ?2 AND delivered = 0",
    )?;
    for id in messages {
        record.execute(params![id.0, device.0, now.0])?;
        // Only a row that was waiting and is no more changes the count (schema version
        // 2: this statement, not a trigger, keeps it).
        if flag.execute(params![owner, id.0])? == 1 {
            conn.prepare_cached("UPDATE pending_counts SET pending = pending - 1 WHERE user = ?1")?
                .execute([&owner])?;
        }
    }
    Ok(())
}

type Row = (i64, String, Option<i64>, i64, bool, Vec<u8>, bool);

pub(crate) fn pending(
    conn: &Connection,
    user: &UserId,
    device: DeviceId,
    after: Option<MessageId>,
    limit: usize,
) -> StoreResult<Vec<PendingMessage>> {
    let (owner, watermark) = devices::owner_and_watermark(conn, device)?;
    if owner != user.as_str() {
        return Err(StoreError::NotFound(format!(
            "device {device} of user {user}"
        )));
    }
    // Walks the user's rows of `message_recipients` in id order (its primary key).
    // A row is for this device unless the device sent it or already has it; at or below
    // the watermark (stored before the device existed) only while no device of the user
    // has it. `delivered` of a row this device lacks means another device has it: `read`.
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, m.sender, m.group_id, m.sent_at, m.is_text, m.data, r.delivered
         FROM message_recipients AS r
         JOIN messages AS m ON m.id = r.message_id
         WHERE r.user = ?1
           AND r.message_id > ?2
           AND (r.delivered = 0 OR r.message_id > ?4)
           AND m.origin_device <> ?3
           AND NOT EXISTS (SELECT 1 FROM deliveries AS d
                           WHERE d.message_id = r.message_id AND d.device_id = ?3)
         ORDER BY r.message_id
         LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![
            user.as_str(),
            after.map_or(0, |a| a.0),
            device.0,
            watermark,
            records::limit(limit)
        ],
        |r| -> rusqlite::Result<Row> {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        },
    )?;
    rows.map(|row| {
        let (id, sender, group, sent_at, is_text, data, read) = row?;
        Ok(PendingMessage {
            id: MessageId(id),
            sender: records::user_id(sender)?,
            group: group
                .map(|g| records::i32_id(g, "group id").map(GroupId))
                .transpose()?,
            sent_at: Timestamp(sent_at),
            kind: MessageKind::from_is_text(is_text),
            data: Bytes::from(data),
            read,
        })
    })
    .collect()
}
