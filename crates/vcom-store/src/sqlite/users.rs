//! Users and the key each identifier is bound to.

use rusqlite::{Connection, OptionalExtension, params};
use vcom_protocol::{DeviceId, Timestamp, UserId};

use super::{devices, records};
use crate::{KeyFingerprint, LoginRecord, StoreError, StoreResult, UserRecord};

type Row = (String, Option<Vec<u8>>, i64);

fn record((id, key, created_at): Row) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: records::user_id(id)?,
        key: records::key(key)?,
        created_at: Timestamp(created_at),
    })
}

pub(crate) fn get(conn: &Connection, user: &UserId) -> StoreResult<Option<UserRecord>> {
    conn.prepare_cached("SELECT id, key_sha256, created_at FROM users WHERE id = ?1")?
        .query_row([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .map(record)
        .transpose()
}

pub(crate) fn register(
    conn: &Connection,
    user: &UserId,
    key: Option<KeyFingerprint>,
    now: Timestamp,
) -> StoreResult<UserRecord> {
    conn.prepare_cached(
        "INSERT INTO users (id, key_sha256, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![user.as_str(), key.map(|k| k.0), now.0])?;
    get(conn, user)?
        .ok_or_else(|| StoreError::Corrupt(format!("user {user} vanished after insert")))
}

pub(crate) fn bind_key(conn: &Connection, user: &UserId, key: KeyFingerprint) -> StoreResult<()> {
    let bound = conn
        .prepare_cached("UPDATE users SET key_sha256 = ?2 WHERE id = ?1 AND key_sha256 IS NULL")?
        .execute(params![user.as_str(), key.0])?;
    if bound == 1 {
        return Ok(());
    }
    match get(conn, user)? {
        None => Err(StoreError::NotFound(format!("user {user}"))),
        // Binding the key it already has is a no-op, so a retried login is harmless.
        Some(record) if record.key == Some(key) => Ok(()),
        // Two first logins raced with different keys: the first one won.
        Some(_) => Err(StoreError::Conflict(format!(
            "user {user} is already bound to another key"
        ))),
    }
}

/// One login's writes, in the writer's transaction (so one commit per login).
pub(crate) fn record_login(
    conn: &Connection,
    user: &UserId,
    key: Option<KeyFingerprint>,
    device: DeviceId,
    now: Timestamp,
    devices_per_user: Option<u64>,
) -> StoreResult<LoginRecord> {
    let record = register(conn, user, key, now)?;
    if let Some(key) = key {
        match record.key {
            Some(bound) if bound != key => return Ok(LoginRecord::KeyConflict),
            Some(_) => {}
            None => bind_key(conn, user, key)?,
        }
    }
    let (device, new_device, retired) = if device == DeviceId::NEW {
        let issued = devices::issue(conn, user, now)?;
        let retired = match devices_per_user {
            Some(cap) => devices::retire_beyond(conn, user, issued, cap)?,
            None => Vec::new(),
        };
        (issued, true, retired)
    } else {
        devices::touch(conn, device, now)?;
        (device, false, Vec::new())
    };
    Ok(LoginRecord::Recorded {
        device,
        new_device,
        retired,
    })
}

pub(crate) fn reset_key(
    conn: &Connection,
    user: &UserId,
    key: Option<KeyFingerprint>,
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached("UPDATE users SET key_sha256 = ?2 WHERE id = ?1")?
        .execute(params![user.as_str(), key.map(|k| k.0)])?;
    Ok(changed == 1)
}

pub(crate) fn all(conn: &Connection) -> StoreResult<Vec<UserRecord>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, key_sha256, created_at FROM users ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.map(|row| record(row?)).collect()
}

/// Deletes `user` and everything of theirs (see `Store::remove_user`).
pub(crate) fn remove(conn: &Connection, user: &UserId) -> StoreResult<bool> {
    let u = user.as_str();
    conn.prepare_cached(
        "DELETE FROM message_tags WHERE device_id IN (SELECT id FROM devices WHERE user = ?1)",
    )?
    .execute([u])?;
    for statement in [
        "DELETE FROM devices WHERE user = ?1",
        "DELETE FROM list_entries WHERE owner = ?1",
        "DELETE FROM user_lists WHERE owner = ?1",
        "DELETE FROM group_members WHERE user = ?1",
        "DELETE FROM inbox WHERE user = ?1",
        "DELETE FROM pending_counts WHERE user = ?1",
        "DELETE FROM pending_from WHERE user = ?1 OR sender = ?1",
    ] {
        conn.prepare_cached(statement)?.execute([u])?;
    }
    let removed = conn
        .prepare_cached("DELETE FROM users WHERE id = ?1")?
        .execute([u])?;
    Ok(removed == 1)
}
