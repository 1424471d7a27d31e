//! Friend and block lists: ordered entries and the timestamp of the last change.

use rusqlite::{Connection, OptionalExtension, params};
use vcom_protocol::{Timestamp, UserId};

use super::records;
use crate::{Directory, ListKind, StoreError, StoreResult, UserList, UserLists};

fn code(kind: ListKind) -> i64 {
    match kind {
        ListKind::Friends => 0,
        ListKind::Blocks => 1,
    }
}

fn one(conn: &Connection, user: &UserId, kind: ListKind) -> StoreResult<UserList> {
    let timestamp = conn
        .prepare_cached("SELECT changed_at FROM user_lists WHERE owner = ?1 AND kind = ?2")?
        .query_row(params![user.as_str(), code(kind)], |r| r.get::<_, i64>(0))
        .optional()?;
    let Some(timestamp) = timestamp else {
        return Ok(UserList::default());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT entry FROM list_entries WHERE owner = ?1 AND kind = ?2 ORDER BY position",
    )?;
    let entries = stmt
        .query_map(params![user.as_str(), code(kind)], |r| {
            r.get::<_, String>(0)
        })?
        .map(|entry| records::user_id(entry?))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(UserList {
        timestamp: Timestamp(timestamp),
        entries,
    })
}

pub(crate) fn both(conn: &Connection, user: &UserId) -> StoreResult<UserLists> {
    Ok(UserLists {
        friends: one(conn, user, ListKind::Friends)?,
        blocks: one(conn, user, ListKind::Blocks)?,
    })
}

pub(crate) fn replace(
    conn: &Connection,
    user: &UserId,
    kind: ListKind,
    entries: &[UserId],
    now: Timestamp,
) -> StoreResult<Timestamp> {
    let known = conn
        .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
        .query_row([user.as_str()], |_| Ok(()))
        .optional()?;
    if known.is_none() {
        return Err(StoreError::NotFound(format!("user {user}")));
    }
    let previous = conn
        .prepare_cached("SELECT changed_at FROM user_lists WHERE owner = ?1 AND kind = ?2")?
        .query_row(params![user.as_str(), code(kind)], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(Timestamp::NEVER.0);
    // Strictly increasing, even when the clock stands still or steps back, so every
    // device sees each upload as newer than what it has.
    let stamp = now.0.max(previous.saturating_add(1));
    conn.prepare_cached(
        "INSERT INTO user_lists (owner, kind, changed_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (owner, kind) DO UPDATE SET changed_at = excluded.changed_at",
    )?
    .execute(params![user.as_str(), code(kind), stamp])?;
    conn.prepare_cached("DELETE FROM list_entries WHERE owner = ?1 AND kind = ?2")?
        .execute(params![user.as_str(), code(kind)])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO list_entries (owner, kind, position, entry) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (position, entry) in (0_i64..).zip(entries) {
        insert.execute(params![user.as_str(), code(kind), position, entry.as_str()])?;
    }
    Ok(Timestamp(stamp))
}

pub(crate) fn is_blocked(conn: &Connection, owner: &UserId, other: &UserId) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM list_entries WHERE owner = ?1 AND kind = ?2 AND entry = ?3 LIMIT 1",
        )?
        .query_row(
            params![owner.as_str(), code(ListKind::Blocks), other.as_str()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Every user, block list, group and device count, for the server's in-memory copy.
pub(crate) fn directory(conn: &Connection) -> StoreResult<Directory> {
    let users = conn
        .prepare_cached("SELECT id FROM users ORDER BY id")?
        .query_map([], |r| r.get::<_, String>(0))?
        .map(|id| records::user_id(id?))
        .collect::<StoreResult<Vec<_>>>()?;
    let mut blocks: Vec<(UserId, Vec<UserId>)> = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT owner, entry FROM list_entries WHERE kind = ?1 ORDER BY owner, position",
    )?;
    let rows = stmt.query_map([code(ListKind::Blocks)], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (owner, entry) = row?;
        let entry = records::user_id(entry)?;
        match blocks.last_mut() {
            Some((last, entries)) if last.as_str() == owner => entries.push(entry),
            _ => blocks.push((records::user_id(owner)?, vec![entry])),
        }
    }
    Ok(Directory {
        users,
        blocks,
        groups: super::groups::all(conn)?,
    })
}
