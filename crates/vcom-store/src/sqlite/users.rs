//! Users and the key each identifier is bound to.

use rusqlite::{Connection, OptionalExtension, params};
use vcom_protocol::{DeviceId, Timestamp, UserId};

use super::{devices, records};
use crate::{Invite, InviteHash, KeyFingerprint, LoginRecord, StoreError, StoreResult, UserRecord};

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
    invite: Option<InviteHash>,
) -> StoreResult<LoginRecord> {
    if let Some(invite) = invite {
        // Admitted by an invitation: only a new user, and only while it has a use left.
        if get(conn, user)?.is_some() {
            return Ok(LoginRecord::InviteRefused);
        }
        let spent = conn
            .prepare_cached(
                "UPDATE invites SET uses_left = uses_left - 1
                 WHERE hash = ?1 AND uses_left > 0 AND (expires_at = 0 OR expires_at > ?2)",
            )?
            .execute(params![&invite.0[..], now.0])?;
        if spent == 0 {
            return Ok(LoginRecord::InviteRefused);
        }
    }
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

pub(crate) fn create_invite(
    conn: &Connection,
    invite: InviteHash,
    uses: u32,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO invites (hash, uses_left, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        &invite.0[..],
        uses,
        expires_at.map_or(0, |t| t.0),
        now.0
    ])?;
    Ok(())
}

pub(crate) fn invites(conn: &Connection, now: Timestamp) -> StoreResult<Vec<Invite>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hash, uses_left, expires_at, created_at FROM invites
         WHERE uses_left > 0 AND (expires_at = 0 OR expires_at > ?1)
         ORDER BY created_at, hash",
    )?;
    let rows = stmt.query_map([now.0], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    rows.map(|row| {
        let (hash, uses_left, expires_at, created_at) = row?;
        let hash: [u8; 32] = hash
            .try_into()
            .map_err(|_| StoreError::Corrupt("an invitation hash is not 32 bytes".into()))?;
        Ok(Invite {
            hash: InviteHash(hash),
            uses_left: u32::try_from(uses_left).unwrap_or(0),
            expires_at: (expires_at != 0).then_some(Timestamp(expires_at)),
            created_at: Timestamp(created_at),
        })
    })
    .collect()
}
