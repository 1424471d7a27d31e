//! Stored messages and delivery by sequence number.
//!
//! A message's id is its sequence number, assigned in the commit. A direct message is one
//! `messages` row and one `inbox` row per recipient user; a group message is one
//! `messages` row, read by every member through `group_members` (from the member's
//! `since` on). Each device has one cursor: it holds every message through it. Data is
//! stored as a BLOB, byte for byte. A recipient whose inbox is full (the pending cap)
//! refuses new direct messages; none it holds is dropped.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use vcom_protocol::{DeviceId, GroupId, MessageKind, Timestamp, UserId};

use super::records;
use crate::quota::{Full, Quotas, Verdict};
use crate::{MessageId, NewMessage, PendingMessage, StoreError, StoreResult, Stored};

pub(crate) fn store(
    conn: &Connection,
    message: &NewMessage,
    quotas: Quotas,
) -> StoreResult<Stored> {
    if let Some(tag) = message.tag {
        let known: Option<i64> = conn
            .prepare_cached(
                "SELECT message_id FROM message_tags WHERE device_id = ?1 AND client_id = ?2",
            )?
            .query_row(params![message.origin_device.0, tag], |r| r.get(0))
            .optional()?;
        if let Some(id) = known {
            return Ok(Stored {
                id: Some(MessageId(id)),
                refused: Vec::new(),
                duplicate: true,
            });
        }
    }
    // A group message is stored once, for the members to read; only a direct message
    // goes into inboxes, and a full inbox refuses it while what it holds stays.
    let mut refused = Vec::new();
    let mut accepted: Vec<(&UserId, bool)> = Vec::new();
    if message.group.is_none() {
        for recipient in &message.recipients {
            if accepted.iter().any(|(r, _)| *r == recipient) || refused.contains(recipient) {
                continue;
            }
            match admit(conn, recipient, &message.sender, quotas)? {
                Ok(tracked) => accepted.push((recipient, tracked)),
                Err(full) => {
                    full.log(&message.sender, recipient, quotas);
                    refused.push(recipient.clone());
                }
            }
        }
        if accepted.is_empty() && !message.recipients.is_empty() {
            return Ok(Stored {
                id: None,
                refused,
                duplicate: false,
            });
        }
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
    for (recipient, tracked) in accepted {
        conn.prepare_cached("INSERT INTO inbox (user, message_id) VALUES (?1, ?2)")?
            .execute(params![recipient.as_str(), id])?;
        conn.prepare_cached(
            "INSERT INTO pending_counts (user, pending) VALUES (?1, 1)
             ON CONFLICT (user) DO UPDATE SET pending = pending + 1",
        )?
        .execute([recipient.as_str()])?;
        if tracked {
            conn.prepare_cached(
                "INSERT INTO pending_from (user, sender, pending) VALUES (?1, ?2, 1)
                 ON CONFLICT (user, sender) DO UPDATE SET pending = pending + 1",
            )?
            .execute([recipient.as_str(), message.sender.as_str()])?;
        }
    }
    if let Some(tag) = message.tag {
        conn.prepare_cached(
            "INSERT INTO message_tags (device_id, client_id, message_id, created_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            message.origin_device.0,
            tag,
            id,
            message.received_at.0
        ])?;
    }
    Ok(Stored {
        id: Some(MessageId(id)),
        refused,
        duplicate: false,
    })
}

/// Whether `recipient`'s inbox takes one more message from `sender`: `Ok(tracked)`
/// when it does (`tracked`: the sender's share is counted, see schema version 4), or
/// which quota is full.
fn admit(
    conn: &Connection,
    recipient: &UserId,
    sender: &UserId,
    quotas: Quotas,
) -> StoreResult<Result<bool, Full>> {
    if quotas.off() {
        return Ok(Ok(false));
    }
    let (pending, tracked) = pending_of(conn, recipient)?;
    let track_first = match quotas.inbox(pending, tracked) {
        Verdict::Done(verdict) => return Ok(verdict),
        Verdict::CountSender { track } => track,
    };
    if track_first {
        track(conn, recipient)?;
    }
    let from_sender: i64 = conn
        .prepare_cached("SELECT pending FROM pending_from WHERE user = ?1 AND sender = ?2")?
        .query_row([recipient.as_str(), sender.as_str()], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    Ok(quotas.by_sender(from_sender))
}

/// Starts counting `user`'s waiting messages by sender: once, when they reach the
/// per-sender quota, from the inbox above the user's highest cursor.
fn track(conn: &Connection, user: &UserId) -> StoreResult<()> {
    let held = highest_cursor(conn, user.as_str(), None)?;
    conn.prepare_cached("DELETE FROM pending_from WHERE user = ?1")?
        .execute([user.as_str()])?;
    conn.prepare_cached(
        "INSERT INTO pending_from (user, sender, pending)
         SELECT i.user, m.sender, count(*) FROM inbox AS i JOIN messages AS m ON m.id = i.message_id
         WHERE i.user = ?1 AND i.message_id > ?2
         GROUP BY m.sender",
    )?
    .execute(params![user.as_str(), held])?;
    conn.prepare_cached("UPDATE pending_counts SET tracked = 1 WHERE user = ?1")?
        .execute([user.as_str()])?;
    Ok(())
}

/// How many messages wait for `user` (in its inbox above every device's cursor), and
/// whether they are counted by sender.
fn pending_of(conn: &Connection, user: &UserId) -> StoreResult<(u64, bool)> {
    let (pending, tracked): (i64, bool) = conn
        .prepare_cached("SELECT pending, tracked FROM pending_counts WHERE user = ?1")?
        .query_row([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, false));
    Ok((u64::try_from(pending).unwrap_or(0), tracked))
}

/// The owner and cursor of a device, `NotFound` when it is unknown.
fn owner_and_cursor(conn: &Connection, device: DeviceId) -> StoreResult<(String, i64)> {
    conn.prepare_cached("SELECT user, cursor FROM devices WHERE id = ?1")?
        .query_row([device.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("device {device}")))
}

/// The highest cursor among the user's devices, `except` one (0 when none).
pub(crate) fn highest_cursor(
    conn: &Connection,
    user: &str,
    except: Option<DeviceId>,
) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(max(cursor), 0) FROM devices WHERE user = ?1 AND id <> ?2",
        )?
        .query_row(params![user, except.map_or(0, |d| d.0)], |r| r.get(0))?)
}

/// Moves the device's cursor up to `through` (never down): one row written, whatever
/// the number of messages it covers.
pub(crate) fn advance(
    conn: &Connection,
    device: DeviceId,
    through: MessageId,
    per_sender: Option<u64>,
) -> StoreResult<()> {
    let (owner, cursor) = owner_and_cursor(conn, device)?;
    if through.0 <= cursor {
        return Ok(());
    }
    let highest_before = highest_cursor(conn, &owner, None)?;
    conn.prepare_cached("UPDATE devices SET cursor = ?2 WHERE id = ?1")?
        .execute(params![device.0, through.0])?;
    if through.0 > highest_before {
        // Inbox messages now held by a device of the user no longer wait.
        let now_held: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM inbox WHERE user = ?1 AND message_id > ?2 AND message_id <= ?3",
            )?
            .query_row(params![owner, highest_before, through.0], |r| r.get(0))?;
        if now_held > 0 {
            conn.prepare_cached(
                "UPDATE pending_counts SET pending = max(pending - ?2, 0) WHERE user = ?1",
            )?
            .execute(params![owner, now_held])?;
            untrack_held(conn, &owner, highest_before, through.0, per_sender)?;
        }
    }
    Ok(())
}

/// Takes the messages in `(from, through]` off their senders' shares of `owner`'s inbox
/// if it is tracked, and stops tracking once fewer than half the quota wait (so a
/// user's shares are counted afresh at most once per half a quota of deliveries).
fn untrack_held(
    conn: &Connection,
    owner: &str,
    from: i64,
    through: i64,
    per_sender: Option<u64>,
) -> StoreResult<()> {
    let (pending, tracked): (i64, bool) = conn
        .prepare_cached("SELECT pending, tracked FROM pending_counts WHERE user = ?1")?
        .query_row([owner], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if !tracked {
        return Ok(());
    }
    let half = per_sender.map_or(0, |q| q / 2);
    if u64::try_from(pending).unwrap_or(0) < half || per_sender.is_none() {
        conn.prepare_cached("DELETE FROM pending_from WHERE user = ?1")?
            .execute([owner])?;
        conn.prepare_cached("UPDATE pending_counts SET tracked = 0 WHERE user = ?1")?
            .execute([owner])?;
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE pending_from SET pending = max(pending - held.n, 0)
         FROM (SELECT m.sender AS sender, count(*) AS n
               FROM inbox AS i JOIN messages AS m ON m.id = i.message_id
               WHERE i.user = ?1 AND i.message_id > ?2 AND i.message_id <= ?3
               GROUP BY m.sender) AS held
         WHERE pending_from.user = ?1 AND pending_from.sender = held.sender",
    )?
    .execute(params![owner, from, through])?;
    Ok(())
}

pub(crate) fn pending(
    conn: &Connection,
    user: &UserId,
    device: DeviceId,
    after: Option<MessageId>,
    limit: usize,
    max_bytes: usize,
) -> StoreResult<Vec<PendingMessage>> {
    // One snapshot for every statement below (a read transaction, ended when it is
    // dropped). Read statement by statement, a direct message committed between the
    // inbox's read and the groups' could be missing from a page that ends with a later
    // group message: the page's last id, which the caller reads on from and skips queued
    // messages up to, would pass it, and the device's receipt with it.
    let snapshot = conn.unchecked_transaction()?;
    let conn: &Connection = &snapshot;
    let (owner, cursor) = owner_and_cursor(conn, device)?;
    if owner != user.as_str() {
        return Err(StoreError::NotFound(format!(
            "device {device} of user {user}"
        )));
    }
    let from = cursor.max(after.map_or(0, |a| a.0));
    // Another device of the user holds everything through this: `read`.
    let read_through = highest_cursor(conn, &owner, Some(device))?;
    let limit_sql = records::limit(limit);

    // The first messages of the user's inbox above the cursor, and of each of its
    // groups since the user joined (from senders it does not block, kind 1). Each
    // stream is read in index order, so a page costs the same at the start of a backlog
    // of millions as at its end, and only up to the page's limits: a message of one
    // stream can only be in the page if every earlier one of that stream is, so a
    // stream stops at `limit` messages or once its bytes pass `max_bytes`. The streams
    // are then merged by id.
    let mut candidates: Vec<Row> = Vec::new();
    {
        let mut inbox = conn.prepare_cached(
            "SELECT i.message_id, m.sender, m.group_id, m.sent_at, m.is_text, m.data
             FROM inbox AS i JOIN messages AS m ON m.id = i.message_id
             WHERE i.user = ?1 AND i.message_id > ?2 AND m.origin_device <> ?3
             ORDER BY i.message_id
             LIMIT ?4",
        )?;
        let rows = inbox.query_map(params![user.as_str(), from, device.0, limit_sql], row)?;
        take_within(rows, max_bytes, &mut candidates)?;
    }
    let groups: Vec<(i64, i64)> = conn
        .prepare_cached("SELECT group_id, since FROM group_members WHERE user = ?1")?
        .query_map([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (group, since) in groups {
        let mut stmt = conn.prepare_cached(
            "SELECT m.id, m.sender, m.group_id, m.sent_at, m.is_text, m.data
             FROM messages AS m
             WHERE m.group_id = ?1 AND m.id > ?2 AND m.origin_device <> ?3
               AND NOT EXISTS (SELECT 1 FROM list_entries AS b
                               WHERE b.owner = ?4 AND b.kind = 1 AND b.entry = m.sender)
             ORDER BY m.id
             LIMIT ?5",
        )?;
        let rows = stmt.query_map(
            params![group, from.max(since), device.0, user.as_str(), limit_sql],
            row,
        )?;
        take_within(rows, max_bytes, &mut candidates)?;
    }
    candidates.sort_unstable_by_key(|r| r.0);

    // The page: in id order, within both limits (at least one message).
    let mut page = Vec::new();
    let mut bytes = 0usize;
    for (id, sender, group, sent_at, is_text, data) in candidates {
        if page.len() == limit || (!page.is_empty() && bytes.saturating_add(data.len()) > max_bytes)
        {
            break;
        }
        bytes = bytes.saturating_add(data.len());
        page.push(PendingMessage {
            id: MessageId(id),
            sender: records::user_id(sender)?,
            group: group
                .map(|g| records::i32_id(g, "group id").map(GroupId))
                .transpose()?,
            sent_at: Timestamp(sent_at),
            kind: MessageKind::from_is_text(is_text),
            data: Bytes::from(data),
            read: id <= read_through,
        });
    }
    Ok(page)
}

type Row = (i64, String, Option<i64>, i64, bool, Vec<u8>);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

/// Takes rows of one stream until their bytes pass `max_bytes` (the first always).
fn take_within(
    rows: impl Iterator<Item = rusqlite::Result<Row>>,
    max_bytes: usize,
    into: &mut Vec<Row>,
) -> StoreResult<()> {
    let mut bytes = 0usize;
    for row in rows {
        let row = row?;
        if bytes > 0 && bytes.saturating_add(row.5.len()) > max_bytes {
            break;
        }
        bytes = bytes.saturating_add(row.5.len()).max(1);
        into.push(row);
    }
    Ok(())
}
