//! Housekeeping: deleting delivered messages, and row counts.
//!
//! Retention never deletes a message some recipient user still waits for (no device of
//! that user holds it). What every device of every recipient holds goes at once; what
//! some device holds goes by age and count.

use rusqlite::{Connection, params};
use vcom_protocol::Timestamp;

use super::config::StoreConfig;
use crate::{PruneReport, StoreResult, StoreStats};

/// True for a message some recipient still waits for (`messages` as `m`): a direct
/// message in the inbox of a user none of whose devices holds it (a user without a
/// device waits for its first login), or a group message stored after a member joined
/// that no device of that member holds.
const WAITED_FOR: &str = "(EXISTS (SELECT 1 FROM inbox AS i WHERE i.message_id = m.id
        AND m.id > COALESCE((SELECT max(cursor) FROM devices AS d WHERE d.user = i.user), 0))
     OR (m.group_id IS NOT NULL AND EXISTS (SELECT 1 FROM group_members AS g
        WHERE g.group_id = m.group_id AND g.since < m.id
          AND m.id > COALESCE((SELECT max(cursor) FROM devices AS d WHERE d.user = g.user), 0))))";

pub(crate) fn prune(
    conn: &Connection,
    config: &StoreConfig,
    now: Timestamp,
) -> StoreResult<PruneReport> {
    // Client message ids are kept for their own time, with or without their message
    // (see schema version 6).
    let tag_age = i64::try_from(super::schema::TAG_MAX_AGE.as_millis()).unwrap_or(i64::MAX);
    conn.prepare_cached("DELETE FROM message_tags WHERE created_at < ?1")?
        .execute([now.0.saturating_sub(tag_age)])?;
    // What every device of every recipient holds is never sent again: it goes first.
    // An inbox row below the lowest cursor of its user's devices, then a direct message
    // left in no inbox, then a group message below the lowest cursor of every device of
    // every member.
    conn.prepare_cached(
        "DELETE FROM inbox WHERE message_id <=
             (SELECT COALESCE(min(cursor), 0) FROM devices WHERE user = inbox.user)",
    )?
    .execute([])?;
    let mut deleted = conn
        .prepare_cached(
            "DELETE FROM messages WHERE group_id IS NULL
             AND NOT EXISTS (SELECT 1 FROM inbox WHERE message_id = messages.id)",
        )?
        .execute([])? as u64;
    deleted += conn
        .prepare_cached(
            "DELETE FROM messages WHERE group_id IS NOT NULL AND id <=
                 (SELECT COALESCE(min(d.cursor), 0) FROM group_members AS g
                  JOIN devices AS d ON d.user = g.user
                  WHERE g.group_id = messages.group_id)
             AND NOT EXISTS (SELECT 1 FROM group_members AS g
                             WHERE g.group_id = messages.group_id
                               AND NOT EXISTS (SELECT 1 FROM devices WHERE user = g.user))",
        )?
        .execute([])? as u64;
    if let Some(age) = config.delivered_max_age {
        let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.0.saturating_sub(age);
        let n = conn
            .prepare_cached(&format!(
                "DELETE FROM messages WHERE id IN (
                     SELECT id FROM messages AS m WHERE received_at < ?1 AND NOT {WAITED_FOR})"
            ))?
            .execute(params![cutoff])?;
        deleted += n as u64;
    }
    if let Some(keep) = config.delivered_max_count {
        let n = conn
            .prepare_cached(&format!(
                "DELETE FROM messages WHERE id IN (
                     SELECT id FROM messages AS m WHERE NOT {WAITED_FOR}
                     ORDER BY id DESC LIMIT -1 OFFSET ?1)"
            ))?
            .execute(params![i64::try_from(keep).unwrap_or(i64::MAX)])?;
        deleted += n as u64;
    }
    let mut transfers_deleted = 0_u64;
    if let Some(keep) = config.transfer_log_max {
        // `seq` numbers the log in order: everything below the newest `keep` goes.
        let n = conn
            .prepare_cached(
                "DELETE FROM transfers
                 WHERE seq <= (SELECT COALESCE(max(seq), 0) FROM transfers) - ?1",
            )?
            .execute(params![i64::try_from(keep).unwrap_or(i64::MAX)])?;
        transfers_deleted = n as u64;
    }
    Ok(PruneReport {
        messages_deleted: deleted,
        transfers_deleted,
    })
}

pub(crate) fn stats(conn: &Connection) -> StoreResult<StoreStats> {
    let counts = conn
        .prepare_cached(
            "SELECT (SELECT count(*) FROM users),
                    (SELECT count(*) FROM devices),
                    (SELECT count(*) FROM chat_groups),
                    (SELECT count(*) FROM messages),
                    (SELECT COALESCE(SUM(pending), 0) FROM pending_counts),
                    (SELECT count(*) FROM transfers)",
        )?
        .query_row([], |r| {
            Ok([
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ])
        })?;
    let [
        users,
        devices,
        groups,
        messages,
        pending_deliveries,
        transfers,
    ] = counts.map(|n| u64::try_from(n).unwrap_or(0));
    Ok(StoreStats {
        users,
        devices,
        groups,
        messages,
        pending_deliveries,
        transfers,
    })
}
