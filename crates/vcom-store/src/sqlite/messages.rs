//! Stored messages: who still waits for each one, and which devices have it.
//!
//! A message is one `messages` row, one `message_recipients` row per recipient user
//! (`delivered` once any device of that user has it) and one `deliveries` row per
//! device that received it. Data is stored as a BLOB, byte for byte. A recipient whose
//! inbox is full (the pending cap) refuses new messages; none it holds is dropped.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use vcom_protocol::{DeviceId, GroupId, MessageKind, Timestamp, UserId};

use super::{devices, records};
use crate::{MessageId, NewMessage, PendingMessage, StoreError, StoreResult, Stored};

pub(crate) fn store(
    conn: &Connection,
    message: &NewMessage,
    pending_cap: Option<u64>,
) -> StoreResult<Stored> {
    // A full inbox refuses the new message; what it already holds stays.
    let mut refused = Vec::new();
    let mut accepted: Vec<&UserId> = Vec::with_capacity(message.recipients.len());
    for recipient in &message.recipients {
        match pending_cap {
            Some(cap) if pending_of(conn, recipient)? >= cap => refused.push(recipient.clone()),
            _ => accepted.push(recipient),
        }
    }
    if !refused.is_empty() {
        tracing::warn!(
            from = %message.sender,
            refused = ?refused.iter().map(UserId::as_str).collect::<Vec<_>>(),
            cap = pending_cap.unwrap_or(0),
            "store: a message was refused for recipients whose inbox is full \
             (retention.pending_per_user undelivered messages); nothing they had was dropped"
        );
    }
    if accepted.is_empty() && !message.recipients.is_empty() {
        return Ok(Stored { id: None, refused });
    }
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
    for recipient in accepted {
        // A duplicate recipient adds no row, so nothing more waits (schema version 2:
        // this statement, not a trigger, keeps the count).
        if add.execute(params![recipient.as_str(), id])? == 1 {
            conn.prepare_cached(
                "INSERT INTO pending_counts (user, pending) VALUES (?1, 1)
                 ON CONFLICT (user) DO UPDATE SET pending = pending + 1",
            )?
            .execute([recipient.as_str()])?;
        }
    }
    Ok(Stored {
        id: Some(MessageId(id)),
        refused,
    })
}

/// How many messages wait for `user` (no device has them yet).
fn pending_of(conn: &Connection, user: &UserId) -> StoreResult<u64> {
    let pending: i64 = conn
        .prepare_cached("SELECT pending FROM pending_counts WHERE user = ?1")?
        .query_row([user.as_str()], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    Ok(u64::try_from(pending).unwrap_or(0))
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
