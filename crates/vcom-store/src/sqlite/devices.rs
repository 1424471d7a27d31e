//! Device identifiers: issued once, never reused, each with its delivery cursor.

use rusqlite::{Connection, OptionalExtension, params};
use vcom_protocol::{DeviceId, Timestamp, UserId};

use super::records;
use crate::{DeviceRecord, StoreError, StoreResult};

pub(crate) fn issue(conn: &Connection, user: &UserId, now: Timestamp) -> StoreResult<DeviceId> {
    let known = conn
        .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
        .query_row([user.as_str()], |_| Ok(()))
        .optional()?;
    if known.is_none() {
        return Err(StoreError::NotFound(format!("user {user}")));
    }
    // A new device starts where the user's most advanced device is: it gets what no
    // device of the user has received yet, and everything stored from now on.
    conn.prepare_cached(
        "INSERT INTO devices (user, created_at, last_seen, cursor)
         VALUES (?1, ?2, ?2,
                 (SELECT COALESCE(max(cursor), 0) FROM devices WHERE user = ?1))",
    )?
    .execute(params![user.as_str(), now.0])?;
    Ok(DeviceId(records::i32_id(
        conn.last_insert_rowid(),
        "device id",
    )?))
}

/// Retires the user's least recently seen devices, never `keep`, until it has at most
/// `cap` (at least one: `keep`), and returns the retired ones. Cursors need no repair:
/// `keep` was just issued at the user's highest cursor, so what waits for the user stays
/// the same.
pub(crate) fn retire_beyond(
    conn: &Connection,
    user: &UserId,
    keep: DeviceId,
    cap: u64,
) -> StoreResult<Vec<DeviceId>> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM devices WHERE user = ?1")?
        .query_row([user.as_str()], |r| r.get(0))?;
    let excess = u64::try_from(count).unwrap_or(0).saturating_sub(cap.max(1));
    if excess == 0 {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM devices WHERE user = ?1 AND id <> ?2
             ORDER BY last_seen, id LIMIT ?3",
        )?
        .query_map(
            params![
                user.as_str(),
                keep.0,
                i64::try_from(excess).unwrap_or(i64::MAX)
            ],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    let mut retired = Vec::with_capacity(ids.len());
    for id in ids {
        conn.prepare_cached("DELETE FROM devices WHERE id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM message_tags WHERE device_id = ?1")?
            .execute([id])?;
        retired.push(DeviceId(records::i32_id(id, "device id")?));
    }
    Ok(retired)
}

pub(crate) fn owner(conn: &Connection, device: DeviceId) -> StoreResult<Option<UserId>> {
    conn.prepare_cached("SELECT user FROM devices WHERE id = ?1")?
        .query_row([device.0], |r| r.get::<_, String>(0))
        .optional()?
        .map(records::user_id)
        .transpose()
}

pub(crate) fn touch(conn: &Connection, device: DeviceId, now: Timestamp) -> StoreResult<()> {
    let changed = conn
        .prepare_cached("UPDATE devices SET last_seen = ?2 WHERE id = ?1")?
        .execute(params![device.0, now.0])?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("device {device}")));
    }
    Ok(())
}

pub(crate) fn of_user(conn: &Connection, user: &UserId) -> StoreResult<Vec<DeviceRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, created_at, last_seen FROM devices WHERE user = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([user.as_str()], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    rows.map(|row| {
        let (id, created_at, last_seen) = row?;
        Ok(DeviceRecord {
            id: DeviceId(records::i32_id(id, "device id")?),
            user: user.clone(),
            created_at: Timestamp(created_at),
            last_seen: Timestamp(last_seen),
        })
    })
    .collect()
}
