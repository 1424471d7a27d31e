//! Device identifiers: issued once, never reused, each with its delivery cursor.

use deadpool_postgres::GenericClient;
use vcom_protocol::{DeviceId, Timestamp, UserId};

use super::statements::{execute, query, query_one, query_opt};
use crate::sqlite::records;
use crate::{DeviceRecord, StoreError, StoreResult};

pub(crate) async fn issue(
    c: &impl GenericClient,
    user: &UserId,
    now: Timestamp,
) -> StoreResult<DeviceId> {
    // The user's row is locked until the commit: two logins of one user on two nodes
    // issue devices one after the other, so each starts at the cursor the other left and
    // the device cap counts both.
    let known = query_opt(
        c,
        "SELECT 1 FROM users WHERE id = $1 FOR UPDATE",
        &[&user.as_str()],
    )
    .await?;
    if known.is_none() {
        return Err(StoreError::NotFound(format!("user {user}")));
    }
    // A new device starts where the user's most advanced device is: it gets what no
    // device of the user has received yet, and everything stored from now on.
    let id: i64 = query_one(
        c,
        "INSERT INTO devices (user_id, created_at, last_seen, cursor)
         VALUES ($1, $2, $2,
                 (SELECT COALESCE(max(cursor), 0) FROM devices WHERE user_id = $1))
         RETURNING id",
        &[&user.as_str(), &now.0],
    )
    .await?
    .try_get(0)?;
    Ok(DeviceId(records::i32_id(id, "device id")?))
}

/// Retires the user's least recently seen devices, never `keep`, until it has at most
/// `cap` (at least one: `keep`), and returns the retired ones.
pub(crate) async fn retire_beyond(
    c: &impl GenericClient,
    user: &UserId,
    keep: DeviceId,
    cap: u64,
) -> StoreResult<Vec<DeviceId>> {
    let count: i64 = query_one(
        c,
        "SELECT count(*) FROM devices WHERE user_id = $1",
        &[&user.as_str()],
    )
    .await?
    .try_get(0)?;
    let excess = u64::try_from(count).unwrap_or(0).saturating_sub(cap.max(1));
    if excess == 0 {
        return Ok(Vec::new());
    }
    let rows = query(
        c,
        "SELECT id FROM devices WHERE user_id = $1 AND id <> $2
         ORDER BY last_seen, id LIMIT $3",
        &[
            &user.as_str(),
            &i64::from(keep.0),
            &i64::try_from(excess).unwrap_or(i64::MAX),
        ],
    )
    .await?;
    let mut retired = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get(0)?;
        execute(c, "DELETE FROM devices WHERE id = $1", &[&id]).await?;
        execute(c, "DELETE FROM message_tags WHERE device_id = $1", &[&id]).await?;
        retired.push(DeviceId(records::i32_id(id, "device id")?));
    }
    Ok(retired)
}

pub(crate) async fn owner(c: &impl GenericClient, device: DeviceId) -> StoreResult<Option<UserId>> {
    query_opt(
        c,
        "SELECT user_id FROM devices WHERE id = $1",
        &[&i64::from(device.0)],
    )
    .await?
    .map(|row| records::user_id(row.try_get(0)?))
    .transpose()
}

pub(crate) async fn touch(
    c: &impl GenericClient,
    device: DeviceId,
    now: Timestamp,
) -> StoreResult<()> {
    let changed = execute(
        c,
        "UPDATE devices SET last_seen = $2 WHERE id = $1",
        &[&i64::from(device.0), &now.0],
    )
    .await?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("device {device}")));
    }
    Ok(())
}

pub(crate) async fn of_user(
    c: &impl GenericClient,
    user: &UserId,
) -> StoreResult<Vec<DeviceRecord>> {
    query(
        c,
        "SELECT id, created_at, last_seen FROM devices WHERE user_id = $1 ORDER BY id",
        &[&user.as_str()],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(DeviceRecord {
            id: DeviceId(records::i32_id(row.try_get(0)?, "device id")?),
            user: user.clone(),
            created_at: Timestamp(row.try_get(1)?),
            last_seen: Timestamp(row.try_get(2)?),
        })
    })
    .collect()
}
