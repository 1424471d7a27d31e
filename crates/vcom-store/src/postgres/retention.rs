//! Housekeeping: deleting delivered messages, and row counts (as `sqlite::retention`).
//!
//! Retention never deletes a message some recipient user still waits for (no device of
//! that user holds it). What every device of every recipient holds goes at once; what
//! some device holds goes by age and count.

use deadpool_postgres::GenericClient;
use vcom_protocol::Timestamp;

use super::statements::{execute, query_one};
use crate::{PruneReport, StoreConfig, StoreResult, StoreStats};

/// True for a message some recipient still waits for (`messages` as `m`); see
/// `sqlite::retention`.
const WAITED_FOR: &str = "(EXISTS (SELECT 1 FROM inbox AS i WHERE i.message_id = m.id
        AND m.id > COALESCE((SELECT max(cursor) FROM devices AS d WHERE d.user_id = i.user_id), 0))
     OR (m.group_id IS NOT NULL AND EXISTS (SELECT 1 FROM group_members AS g
        WHERE g.group_id = m.group_id AND g.since < m.id
          AND m.id > COALESCE((SELECT max(cursor) FROM devices AS d WHERE d.user_id = g.user_id), 0))))";

/// Runs in a transaction that holds the message counter's lock: no message is stored
/// on any node while retention decides what nobody waits for.
pub(crate) async fn prune(
    c: &impl GenericClient,
    config: &StoreConfig,
    now: Timestamp,
) -> StoreResult<PruneReport> {
    query_one(c, "SELECT last FROM message_counter FOR UPDATE", &[]).await?;
    // Client message ids are kept for their own time, with or without their message.
    let tag_age = i64::try_from(crate::sqlite::TAG_MAX_AGE.as_millis()).unwrap_or(i64::MAX);
    execute(
        c,
        "DELETE FROM message_tags WHERE created_at < $1",
        &[&now.0.saturating_sub(tag_age)],
    )
    .await?;
    // What every device of every recipient holds is never sent again: it goes first.
    execute(
        c,
        "DELETE FROM inbox WHERE message_id <=
             (SELECT COALESCE(min(cursor), 0) FROM devices WHERE user_id = inbox.user_id)",
        &[],
    )
    .await?;
    let mut deleted = execute(
        c,
        "DELETE FROM messages WHERE group_id IS NULL
         AND NOT EXISTS (SELECT 1 FROM inbox WHERE message_id = messages.id)",
        &[],
    )
    .await?;
    deleted += execute(
        c,
        "DELETE FROM messages WHERE group_id IS NOT NULL AND id <=
             (SELECT COALESCE(min(d.cursor), 0) FROM group_members AS g
              JOIN devices AS d ON d.user_id = g.user_id
              WHERE g.group_id = messages.group_id)
         AND NOT EXISTS (SELECT 1 FROM group_members AS g
                         WHERE g.group_id = messages.group_id
                           AND NOT EXISTS (SELECT 1 FROM devices WHERE user_id = g.user_id))",
        &[],
    )
    .await?;
    if let Some(age) = config.delivered_max_age {
        let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.0.saturating_sub(age);
        deleted += execute(
            c,
            &format!(
                "DELETE FROM messages WHERE id IN (
                     SELECT id FROM messages AS m WHERE received_at < $1 AND NOT {WAITED_FOR})"
            ),
            &[&cutoff],
        )
        .await?;
    }
    if let Some(keep) = config.delivered_max_count {
        deleted += execute(
            c,
            &format!(
                "DELETE FROM messages WHERE id IN (
                     SELECT id FROM messages AS m WHERE NOT {WAITED_FOR}
                     ORDER BY id DESC OFFSET $1)"
            ),
            &[&i64::try_from(keep).unwrap_or(i64::MAX)],
        )
        .await?;
    }
    let mut transfers_deleted = 0_u64;
    if let Some(keep) = config.transfer_log_max {
        // `seq` numbers the log in order: everything below the newest `keep` goes.
        transfers_deleted = execute(
            c,
            "DELETE FROM transfers
             WHERE seq <= (SELECT COALESCE(max(seq), 0) FROM transfers) - $1",
            &[&i64::try_from(keep).unwrap_or(i64::MAX)],
        )
        .await?;
    }
    Ok(PruneReport {
        messages_deleted: deleted,
        transfers_deleted,
    })
}

pub(crate) async fn stats(c: &impl GenericClient) -> StoreResult<StoreStats> {
    let row = query_one(
        c,
        "SELECT (SELECT count(*) FROM users),
                (SELECT count(*) FROM devices),
                (SELECT count(*) FROM chat_groups),
                (SELECT count(*) FROM messages),
                (SELECT COALESCE(SUM(pending), 0)::BIGINT FROM pending_counts),
                (SELECT count(*) FROM transfers)",
        &[],
    )
    .await?;
    let mut counts = [0_u64; 6];
    for (i, count) in counts.iter_mut().enumerate() {
        *count = u64::try_from(row.try_get::<_, i64>(i)?).unwrap_or(0);
    }
    let [
        users,
        devices,
        groups,
        messages,
        pending_deliveries,
        transfers,
    ] = counts;
    Ok(StoreStats {
        users,
        devices,
        groups,
        messages,
        pending_deliveries,
        transfers,
    })
}
