//! Friend and block lists: ordered entries and the timestamp of the last change.

use deadpool_postgres::GenericClient;
use vcom_protocol::{Timestamp, UserId};

use super::statements::{execute, query, query_one, query_opt};
use crate::sqlite::records;
use crate::{Directory, ListKind, StoreError, StoreResult, UserList, UserLists};

fn code(kind: ListKind) -> i64 {
    match kind {
        ListKind::Friends => 0,
        ListKind::Blocks => 1,
    }
}

async fn one(c: &impl GenericClient, user: &UserId, kind: ListKind) -> StoreResult<UserList> {
    let timestamp = query_opt(
        c,
        "SELECT changed_at FROM user_lists WHERE owner = $1 AND kind = $2",
        &[&user.as_str(), &code(kind)],
    )
    .await?;
    let Some(timestamp) = timestamp else {
        return Ok(UserList::default());
    };
    let entries = query(
        c,
        "SELECT entry FROM list_entries WHERE owner = $1 AND kind = $2 ORDER BY position",
        &[&user.as_str(), &code(kind)],
    )
    .await?
    .iter()
    .map(|row| records::user_id(row.try_get(0)?))
    .collect::<StoreResult<Vec<_>>>()?;
    Ok(UserList {
        timestamp: Timestamp(timestamp.try_get(0)?),
        entries,
    })
}

/// Both lists, read in the caller's snapshot.
pub(crate) async fn both(c: &impl GenericClient, user: &UserId) -> StoreResult<UserLists> {
    Ok(UserLists {
        friends: one(c, user, ListKind::Friends).await?,
        blocks: one(c, user, ListKind::Blocks).await?,
    })
}

pub(crate) async fn replace(
    c: &impl GenericClient,
    user: &UserId,
    kind: ListKind,
    entries: &[UserId],
    now: Timestamp,
) -> StoreResult<Timestamp> {
    let known = query_opt(c, "SELECT 1 FROM users WHERE id = $1", &[&user.as_str()]).await?;
    if known.is_none() {
        return Err(StoreError::NotFound(format!("user {user}")));
    }
    // One statement reads the previous timestamp and locks the list's row until the
    // commit, so two nodes replacing the same list run one after the other. Strictly
    // increasing, even when the clock stands still or steps back, so every device sees
    // each upload as newer than what it has.
    let stamp: i64 = query_one(
        c,
        "INSERT INTO user_lists (owner, kind, changed_at) VALUES ($1, $2, GREATEST($3::BIGINT, $4::BIGINT))
         ON CONFLICT (owner, kind) DO UPDATE
             SET changed_at = GREATEST($3::BIGINT, user_lists.changed_at + 1)
         RETURNING changed_at",
        &[
            &user.as_str(),
            &code(kind),
            &now.0,
            &Timestamp::NEVER.0.saturating_add(1),
        ],
    )
    .await?
    .try_get(0)?;
    execute(
        c,
        "DELETE FROM list_entries WHERE owner = $1 AND kind = $2",
        &[&user.as_str(), &code(kind)],
    )
    .await?;
    if !entries.is_empty() {
        let entries: Vec<&str> = entries.iter().map(UserId::as_str).collect();
        execute(
            c,
            "INSERT INTO list_entries (owner, kind, position, entry)
             SELECT $1, $2, e.position - 1, e.entry
             FROM unnest($3::TEXT[]) WITH ORDINALITY AS e (entry, position)",
            &[&user.as_str(), &code(kind), &entries],
        )
        .await?;
    }
    Ok(Timestamp(stamp))
}

pub(crate) async fn is_blocked(
    c: &impl GenericClient,
    owner: &UserId,
    other: &UserId,
) -> StoreResult<bool> {
    Ok(query_opt(
        c,
        "SELECT 1 FROM list_entries WHERE owner = $1 AND kind = $2 AND entry = $3 LIMIT 1",
        &[&owner.as_str(), &code(ListKind::Blocks), &other.as_str()],
    )
    .await?
    .is_some())
}

/// Every user, block list and group, for the server's in-memory copy (read in the
/// caller's snapshot).
pub(crate) async fn directory(c: &impl GenericClient) -> StoreResult<Directory> {
    let users = query(c, "SELECT id FROM users ORDER BY id", &[])
        .await?
        .iter()
        .map(|row| records::user_id(row.try_get(0)?))
        .collect::<StoreResult<Vec<_>>>()?;
    let mut blocks: Vec<(UserId, Vec<UserId>)> = Vec::new();
    let rows = query(
        c,
        "SELECT owner, entry FROM list_entries WHERE kind = $1 ORDER BY owner, position",
        &[&code(ListKind::Blocks)],
    )
    .await?;
    for row in rows {
        let owner: String = row.try_get(0)?;
        let entry = records::user_id(row.try_get(1)?)?;
        match blocks.last_mut() {
            Some((last, entries)) if last.as_str() == owner => entries.push(entry),
            _ => blocks.push((records::user_id(owner)?, vec![entry])),
        }
    }
    Ok(Directory {
        users,
        blocks,
        groups: super::groups::all(c).await?,
    })
}
