//! Housekeeping: deleting delivered messages by age and count, and row counts.
//!
//! Retention never deletes a message some recipient user still waits for: "delivered"
//! means every recipient row is marked delivered (one device of each user has it).

use rusqlite::{Connection, params};
use vcom_protocol::Timestamp;

use super::config::StoreConfig;
use crate::{PruneReport, StoreResult, StoreStats};

pub(crate) fn prune(
    conn: &Connection,
    config: &StoreConfig,
    now: Timestamp,
) -> StoreResult<PruneReport> {
    let mut deleted = 0_u64;
    if let Some(age) = config.delivered_max_age {
        let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.0.saturating_sub(age);
        let n = conn
            .prepare_cached(
                "DELETE FROM messages WHERE received_at < ?1
                 AND NOT EXISTS (SELECT 1 FROM message_recipients AS r
                                 WHERE r.message_id = messages.id AND r.delivered = 0)",
            )?
            .execute(params![cutoff])?;
        deleted += n as u64;
    }
    if let Some(keep) = config.delivered_max_count {
        let n = conn
            .prepare_cached(
                "DELETE FROM messages WHERE id IN (
                     SELECT id FROM messages AS m
                     WHERE NOT EXISTS (SELECT 1 FROM message_recipients AS r
                                       WHERE r.message_id = m.id AND r.delivered = 0)
                     ORDER BY id DESC LIMIT -1 OFFSET ?1)",
            )?
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
