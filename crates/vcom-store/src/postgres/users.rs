//! Users and the key each identifier is bound to.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use vcom_protocol::{DeviceId, Timestamp, UserId};

use super::devices;
use super::statements::{execute, query, query_one, query_opt};
use crate::sqlite::records;
use crate::{Invite, InviteHash, KeyFingerprint, LoginRecord, StoreError, StoreResult, UserRecord};

fn record(row: &Row) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: records::user_id(row.try_get(0)?)?,
        key: records::key(row.try_get(1)?)?,
        created_at: Timestamp(row.try_get(2)?),
    })
}

pub(crate) async fn get(c: &impl GenericClient, user: &UserId) -> StoreResult<Option<UserRecord>> {
    query_opt(
        c,
        "SELECT id, key_sha256, created_at FROM users WHERE id = $1",
        &[&user.as_str()],
    )
    .await?
    .as_ref()
    .map(record)
    .transpose()
}

pub(crate) async fn register(
    c: &impl GenericClient,
    user: &UserId,
    key: Option<KeyFingerprint>,
    now: Timestamp,
) -> StoreResult<UserRecord> {
    let key = key.map(|k| k.0.to_vec());
    execute(
        c,
        "INSERT INTO users (id, key_sha256, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO NOTHING",
        &[&user.as_str(), &key, &now.0],
    )
    .await?;
    get(c, user)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("user {user} vanished after insert")))
}

pub(crate) async fn bind_key(
    c: &impl GenericClient,
    user: &UserId,
    key: KeyFingerprint,
) -> StoreResult<()> {
    let bound = execute(
        c,
        "UPDATE users SET key_sha256 = $2 WHERE id = $1 AND key_sha256 IS NULL",
        &[&user.as_str(), &&key.0[..]],
    )
    .await?;
    if bound == 1 {
        return Ok(());
    }
    match get(c, user).await? {
        None => Err(StoreError::NotFound(format!("user {user}"))),
        // Binding the key it already has is a no-op, so a retried login is harmless.
        Some(record) if record.key == Some(key) => Ok(()),
        // Two first logins raced with different keys: the first one won.
        Some(_) => Err(StoreError::Conflict(format!(
            "user {user} is already bound to another key"
        ))),
    }
}

/// One login's writes, in one transaction.
pub(crate) async fn record_login(
    c: &impl GenericClient,
    user: &UserId,
    key: Option<KeyFingerprint>,
    device: DeviceId,
    now: Timestamp,
    devices_per_user: Option<u64>,
    invite: Option<InviteHash>,
) -> StoreResult<LoginRecord> {
    if let Some(invite) = invite {
        // Admitted by an invitation: only a new user, and only while it has a use left.
        if get(c, user).await?.is_some() {
            return Ok(LoginRecord::InviteRefused);
        }
        let spent = execute(
            c,
            "UPDATE invites SET uses_left = uses_left - 1
             WHERE hash = $1 AND uses_left > 0 AND (expires_at = 0 OR expires_at > $2)",
            &[&&invite.0[..], &now.0],
        )
        .await?;
        if spent == 0 {
            return Ok(LoginRecord::InviteRefused);
        }
    }
    let record = register(c, user, key, now).await?;
    if let Some(key) = key {
        match record.key {
            Some(bound) if bound != key => return Ok(LoginRecord::KeyConflict),
            Some(_) => {}
            None => bind_key(c, user, key).await?,
        }
    }
    let (device, new_device, retired) = if device == DeviceId::NEW {
        let issued = devices::issue(c, user, now).await?;
        let retired = match devices_per_user {
            Some(cap) => devices::retire_beyond(c, user, issued, cap).await?,
            None => Vec::new(),
        };
        (issued, true, retired)
    } else {
        devices::touch(c, device, now).await?;
        (device, false, Vec::new())
    };
    Ok(LoginRecord::Recorded {
        device,
        new_device,
        retired,
    })
}

pub(crate) async fn reset_key(
    c: &impl GenericClient,
    user: &UserId,
    key: Option<KeyFingerprint>,
) -> StoreResult<bool> {
    let key = key.map(|k| k.0.to_vec());
    let changed = execute(
        c,
        "UPDATE users SET key_sha256 = $2 WHERE id = $1",
        &[&user.as_str(), &key],
    )
    .await?;
    Ok(changed == 1)
}

pub(crate) async fn all(c: &impl GenericClient) -> StoreResult<Vec<UserRecord>> {
    query(
        c,
        "SELECT id, key_sha256, created_at FROM users ORDER BY id",
        &[],
    )
    .await?
    .iter()
    .map(record)
    .collect()
}

/// Deletes `user` and everything of theirs (see `Store::remove_user`).
pub(crate) async fn remove(c: &impl GenericClient, user: &UserId) -> StoreResult<bool> {
    let u = user.as_str();
    // The message counter first, as the message writers take it: the user's rows and
    // the shares of its messages in other inboxes change with no message being stored
    // on any node, so the two never wait for each other's row locks.
    query_one(c, "SELECT last FROM message_counter FOR UPDATE", &[]).await?;
    execute(
        c,
        "DELETE FROM message_tags WHERE device_id IN (SELECT id FROM devices WHERE user_id = $1)",
        &[&u],
    )
    .await?;
    for statement in [
        "DELETE FROM devices WHERE user_id = $1",
        "DELETE FROM list_entries WHERE owner = $1",
        "DELETE FROM user_lists WHERE owner = $1",
        "DELETE FROM group_members WHERE user_id = $1",
        "DELETE FROM inbox WHERE user_id = $1",
        "DELETE FROM pending_counts WHERE user_id = $1",
        "DELETE FROM pending_from WHERE user_id = $1 OR sender = $1",
    ] {
        execute(c, statement, &[&u]).await?;
    }
    let removed = execute(c, "DELETE FROM users WHERE id = $1", &[&u]).await?;
    Ok(removed == 1)
}

pub(crate) async fn create_invite(
    c: &impl GenericClient,
    invite: InviteHash,
    uses: u32,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> StoreResult<()> {
    execute(
        c,
        "INSERT INTO invites (hash, uses_left, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        &[
            &&invite.0[..],
            &i64::from(uses),
            &expires_at.map_or(0, |t| t.0),
            &now.0,
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn invites(c: &impl GenericClient, now: Timestamp) -> StoreResult<Vec<Invite>> {
    let rows = query(
        c,
        "SELECT hash, uses_left, expires_at, created_at FROM invites
         WHERE uses_left > 0 AND (expires_at = 0 OR expires_at > $1)
         ORDER BY created_at, hash",
        &[&now.0],
    )
    .await?;
    rows.iter()
        .map(|row| {
            let hash: Vec<u8> = row.try_get(0)?;
            let uses_left: i64 = row.try_get(1)?;
            let expires_at: i64 = row.try_get(2)?;
            let hash: [u8; 32] = hash
                .try_into()
                .map_err(|_| StoreError::Corrupt("an invitation hash is not 32 bytes".into()))?;
            Ok(Invite {
                hash: InviteHash(hash),
                uses_left: u32::try_from(uses_left).unwrap_or(0),
                expires_at: (expires_at != 0).then_some(Timestamp(expires_at)),
                created_at: Timestamp(row.try_get(3)?),
            })
        })
        .collect()
}
