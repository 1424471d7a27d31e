//! Stored messages and delivery by sequence number, as in `sqlite::messages`.
//!
//! A message's id is its sequence number, taken from `message_counter` by the message
//! writer while it holds that row's lock, so ids grow in commit order across every node.
//! A direct message is one `messages` row and one `inbox` row per recipient user; a
//! group message is one `messages` row, read by every member through `group_members`.
//! Each device has one cursor: it holds every message through it.
//!
//! Several nodes write at once, so what SQLite's single writer gets for free is taken
//! with row locks here: a message and a cursor move of the same user lock that user's
//! `pending_counts` row (so the counts and the per-sender shares stay exact), and two
//! cursor moves of one user lock the user's devices.

use bytes::Bytes;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use vcom_protocol::{DeviceId, GroupId, MessageKind, Timestamp, UserId};

use super::statements::{execute, query, query_one, query_opt};
use crate::quota::{Full, Quotas, Verdict};
use crate::sqlite::records;
use crate::{MessageId, NewMessage, PendingMessage, StoreError, StoreResult, Stored};

/// Stores one message under the id `id` (the next one, which the caller holds the
/// counter's lock for). `Stored::id` is `Some(id)` only when this message took it.
pub(crate) async fn store(
    c: &impl GenericClient,
    message: &NewMessage,
    quotas: Quotas,
    id: i64,
) -> StoreResult<Stored> {
    let origin = i64::from(message.origin_device.0);
    if let Some(tag) = message.tag {
        let known = query_opt(
            c,
            "SELECT message_id FROM message_tags WHERE device_id = $1 AND client_id = $2",
            &[&origin, &tag],
        )
        .await?;
        if let Some(known) = known {
            return Ok(Stored {
                id: Some(MessageId(known.try_get(0)?)),
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
            match admit(c, recipient, &message.sender, quotas).await? {
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
    execute(
        c,
        "INSERT INTO messages (id, sender, origin_device, group_id, sent_at, received_at,
                               is_text, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &id,
            &message.sender.as_str(),
            &origin,
            &message.group.map(|g| i64::from(g.0)),
            &message.sent_at.0,
            &message.received_at.0,
            &message.kind.is_text(),
            &&message.data[..],
        ],
    )
    .await?;
    for (recipient, tracked) in accepted {
        execute(
            c,
            "INSERT INTO inbox (user_id, message_id) VALUES ($1, $2)",
            &[&recipient.as_str(), &id],
        )
        .await?;
        execute(
            c,
            "INSERT INTO pending_counts (user_id, pending) VALUES ($1, 1)
             ON CONFLICT (user_id) DO UPDATE SET pending = pending_counts.pending + 1",
            &[&recipient.as_str()],
        )
        .await?;
        if tracked {
            execute(
                c,
                "INSERT INTO pending_from (user_id, sender, pending) VALUES ($1, $2, 1)
                 ON CONFLICT (user_id, sender) DO UPDATE SET pending = pending_from.pending + 1",
                &[&recipient.as_str(), &message.sender.as_str()],
            )
            .await?;
        }
    }
    if let Some(tag) = message.tag {
        execute(
            c,
            "INSERT INTO message_tags (device_id, client_id, message_id, created_at)
             VALUES ($1, $2, $3, $4)",
            &[&origin, &tag, &id, &message.received_at.0],
        )
        .await?;
    }
    Ok(Stored {
        id: Some(MessageId(id)),
        refused,
        duplicate: false,
    })
}

/// Whether `recipient`'s inbox takes one more message from `sender`: `Ok(tracked)`
/// when it does (`tracked`: the sender's share is counted), or which quota is full.
async fn admit(
    c: &impl GenericClient,
    recipient: &UserId,
    sender: &UserId,
    quotas: Quotas,
) -> StoreResult<Result<bool, Full>> {
    if quotas.off() {
        return Ok(Ok(false));
    }
    let (pending, tracked) = pending_of(c, recipient.as_str()).await?;
    let track_first = match quotas.inbox(pending, tracked) {
        Verdict::Done(verdict) => return Ok(verdict),
        Verdict::CountSender { track } => track,
    };
    if track_first {
        track(c, recipient).await?;
    }
    let from_sender: i64 = query_opt(
        c,
        "SELECT pending FROM pending_from WHERE user_id = $1 AND sender = $2",
        &[&recipient.as_str(), &sender.as_str()],
    )
    .await?
    .map(|row| row.try_get(0))
    .transpose()?
    .unwrap_or(0);
    Ok(quotas.by_sender(from_sender))
}

/// Starts counting `user`'s waiting messages by sender: once, when they reach the
/// per-sender quota, from the inbox above the user's highest cursor.
async fn track(c: &impl GenericClient, user: &UserId) -> StoreResult<()> {
    let held = highest_cursor(c, user.as_str(), None).await?;
    execute(
        c,
        "DELETE FROM pending_from WHERE user_id = $1",
        &[&user.as_str()],
    )
    .await?;
    execute(
        c,
        "INSERT INTO pending_from (user_id, sender, pending)
         SELECT i.user_id, m.sender, count(*) FROM inbox AS i
         JOIN messages AS m ON m.id = i.message_id
         WHERE i.user_id = $1 AND i.message_id > $2
         GROUP BY i.user_id, m.sender",
        &[&user.as_str(), &held],
    )
    .await?;
    execute(
        c,
        "UPDATE pending_counts SET tracked = TRUE WHERE user_id = $1",
        &[&user.as_str()],
    )
    .await?;
    Ok(())
}

/// How many messages wait for `user`, and whether they are counted by sender. Locks
/// the user's count until the commit (see the module's comment).
async fn pending_of(c: &impl GenericClient, user: &str) -> StoreResult<(u64, bool)> {
    let row = query_opt(
        c,
        "SELECT pending, tracked FROM pending_counts WHERE user_id = $1 FOR UPDATE",
        &[&user],
    )
    .await?;
    let (pending, tracked): (i64, bool) = match row {
        Some(row) => (row.try_get(0)?, row.try_get(1)?),
        None => (0, false),
    };
    Ok((u64::try_from(pending).unwrap_or(0), tracked))
}

/// The owner and cursor of a device, `NotFound` when it is unknown.
async fn owner_and_cursor(c: &impl GenericClient, device: DeviceId) -> StoreResult<(String, i64)> {
    let row = query_opt(
        c,
        "SELECT user_id, cursor FROM devices WHERE id = $1",
        &[&i64::from(device.0)],
    )
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("device {device}")))?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// The highest cursor among the user's devices, `except` one (0 when none).
async fn highest_cursor(
    c: &impl GenericClient,
    user: &str,
    except: Option<DeviceId>,
) -> StoreResult<i64> {
    Ok(query_one(
        c,
        "SELECT COALESCE(max(cursor), 0) FROM devices WHERE user_id = $1 AND id <> $2",
        &[&user, &except.map_or(0, |d| i64::from(d.0))],
    )
    .await?
    .try_get(0)?)
}

/// Moves the device's cursor up to `through` (never down): one row written, whatever
/// the number of messages it covers.
pub(crate) async fn advance(
    c: &impl GenericClient,
    device: DeviceId,
    through: MessageId,
    per_sender: Option<u64>,
) -> StoreResult<()> {
    let (owner, cursor) = owner_and_cursor(c, device).await?;
    if through.0 <= cursor {
        return Ok(());
    }
    // Two moves of the same user's cursors (devices on two nodes) run one after the
    // other, and after any message being stored for the user: both read the highest
    // cursor and change the user's counts from it.
    query(
        c,
        "SELECT id FROM devices WHERE user_id = $1 ORDER BY id FOR UPDATE",
        &[&owner],
    )
    .await?;
    pending_of(c, &owner).await?;
    let highest_before = highest_cursor(c, &owner, None).await?;
    execute(
        c,
        "UPDATE devices SET cursor = GREATEST(cursor, $2) WHERE id = $1",
        &[&i64::from(device.0), &through.0],
    )
    .await?;
    if through.0 > highest_before {
        // Inbox messages now held by a device of the user no longer wait.
        let now_held: i64 = query_one(
            c,
            "SELECT count(*) FROM inbox
             WHERE user_id = $1 AND message_id > $2 AND message_id <= $3",
            &[&owner, &highest_before, &through.0],
        )
        .await?
        .try_get(0)?;
        if now_held > 0 {
            execute(
                c,
                "UPDATE pending_counts SET pending = GREATEST(pending - $2, 0) WHERE user_id = $1",
                &[&owner, &now_held],
            )
            .await?;
            untrack_held(c, &owner, highest_before, through.0, per_sender).await?;
        }
    }
    Ok(())
}

/// Takes the messages in `(from, through]` off their senders' shares of `owner`'s inbox
/// if it is tracked, and stops tracking once fewer than half the quota wait.
async fn untrack_held(
    c: &impl GenericClient,
    owner: &str,
    from: i64,
    through: i64,
    per_sender: Option<u64>,
) -> StoreResult<()> {
    let row = query_one(
        c,
        "SELECT pending, tracked FROM pending_counts WHERE user_id = $1",
        &[&owner],
    )
    .await?;
    let (pending, tracked): (i64, bool) = (row.try_get(0)?, row.try_get(1)?);
    if !tracked {
        return Ok(());
    }
    let half = per_sender.map_or(0, |q| q / 2);
    if u64::try_from(pending).unwrap_or(0) < half || per_sender.is_none() {
        execute(c, "DELETE FROM pending_from WHERE user_id = $1", &[&owner]).await?;
        execute(
            c,
            "UPDATE pending_counts SET tracked = FALSE WHERE user_id = $1",
            &[&owner],
        )
        .await?;
        return Ok(());
    }
    execute(
        c,
        "UPDATE pending_from SET pending = GREATEST(pending_from.pending - held.n, 0)
         FROM (SELECT m.sender AS sender, count(*) AS n
               FROM inbox AS i JOIN messages AS m ON m.id = i.message_id
               WHERE i.user_id = $1 AND i.message_id > $2 AND i.message_id <= $3
               GROUP BY m.sender) AS held
         WHERE pending_from.user_id = $1 AND pending_from.sender = held.sender",
        &[&owner, &from, &through],
    )
    .await?;
    Ok(())
}

/// A page of what `device` of `user` should still receive; the caller runs it in one
/// snapshot (a repeatable-read transaction), for the reason `sqlite::messages::pending`
/// gives.
pub(crate) async fn pending(
    c: &impl GenericClient,
    user: &UserId,
    device: DeviceId,
    after: Option<MessageId>,
    limit: usize,
    max_bytes: usize,
) -> StoreResult<Vec<PendingMessage>> {
    let (owner, cursor) = owner_and_cursor(c, device).await?;
    if owner != user.as_str() {
        return Err(StoreError::NotFound(format!(
            "device {device} of user {user}"
        )));
    }
    let from = cursor.max(after.map_or(0, |a| a.0));
    // Another device of the user holds everything through this: `read`.
    let read_through = highest_cursor(c, &owner, Some(device)).await?;
    let limit_sql = records::limit(limit);
    let device_sql = i64::from(device.0);

    // The first messages of the inbox above the cursor, and of each group since the
    // user joined (from senders it does not block), each read in index order and only
    // up to the page's limits, then merged by id (see `sqlite::messages::pending`).
    let mut candidates: Vec<Candidate> = Vec::new();
    let rows = query(
        c,
        "SELECT i.message_id, m.sender, m.group_id, m.sent_at, m.is_text, m.data
         FROM inbox AS i JOIN messages AS m ON m.id = i.message_id
         WHERE i.user_id = $1 AND i.message_id > $2 AND m.origin_device <> $3
         ORDER BY i.message_id
         LIMIT $4",
        &[&user.as_str(), &from, &device_sql, &limit_sql],
    )
    .await?;
    take_within(&rows, max_bytes, &mut candidates)?;
    let groups = query(
        c,
        "SELECT group_id, since FROM group_members WHERE user_id = $1",
        &[&user.as_str()],
    )
    .await?;
    for group in groups {
        let (group, since): (i64, i64) = (group.try_get(0)?, group.try_get(1)?);
        let rows = query(
            c,
            "SELECT m.id, m.sender, m.group_id, m.sent_at, m.is_text, m.data
             FROM messages AS m
             WHERE m.group_id = $1 AND m.id > $2 AND m.origin_device <> $3
               AND NOT EXISTS (SELECT 1 FROM list_entries AS b
                               WHERE b.owner = $4 AND b.kind = 1 AND b.entry = m.sender)
             ORDER BY m.id
             LIMIT $5",
            &[
                &group,
                &from.max(since),
                &device_sql,
                &user.as_str(),
                &limit_sql,
            ],
        )
        .await?;
        take_within(&rows, max_bytes, &mut candidates)?;
    }
    candidates.sort_unstable_by_key(|r| r.id);

    // The page: in id order, within both limits (at least one message).
    let mut page = Vec::new();
    let mut bytes = 0usize;
    for candidate in candidates {
        let size = candidate.data.len();
        if page.len() == limit || (!page.is_empty() && bytes.saturating_add(size) > max_bytes) {
            break;
        }
        bytes = bytes.saturating_add(size);
        page.push(PendingMessage {
            id: MessageId(candidate.id),
            sender: records::user_id(candidate.sender)?,
            group: candidate
                .group
                .map(|g| records::i32_id(g, "group id").map(GroupId))
                .transpose()?,
            sent_at: Timestamp(candidate.sent_at),
            kind: MessageKind::from_is_text(candidate.is_text),
            data: Bytes::from(candidate.data),
            read: candidate.id <= read_through,
        });
    }
    Ok(page)
}

/// One message that may belong in a page.
struct Candidate {
    id: i64,
    sender: String,
    group: Option<i64>,
    sent_at: i64,
    is_text: bool,
    data: Vec<u8>,
}

/// Takes rows of one stream until their bytes pass `max_bytes` (the first always).
fn take_within(rows: &[Row], max_bytes: usize, into: &mut Vec<Candidate>) -> StoreResult<()> {
    let mut bytes = 0usize;
    for row in rows {
        let data: Vec<u8> = row.try_get(5)?;
        if bytes > 0 && bytes.saturating_add(data.len()) > max_bytes {
            break;
        }
        bytes = bytes.saturating_add(data.len()).max(1);
        into.push(Candidate {
            id: row.try_get(0)?,
            sender: row.try_get(1)?,
            group: row.try_get(2)?,
            sent_at: row.try_get(3)?,
            is_text: row.try_get(4)?,
            data,
        });
    }
    Ok(())
}
