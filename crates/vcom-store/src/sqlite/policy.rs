//! The server's blacklist and whitelist.

use rusqlite::{Connection, params};

use crate::{Policy, PolicyEntry, PolicyList, StoreError, StoreResult};

fn list_code(list: PolicyList) -> i64 {
    match list {
        PolicyList::Blacklist => 0,
        PolicyList::Whitelist => 1,
    }
}

/// `(kind, value)`: kind 0 is a user, 1 an address; the order matches `PolicyEntry`'s.
fn entry_columns(entry: &PolicyEntry) -> (i64, &str) {
    match entry {
        PolicyEntry::User(user) => (0, user),
        PolicyEntry::Ip(ip) => (1, ip),
    }
}

pub(crate) fn all(conn: &Connection) -> StoreResult<Policy> {
    let mut stmt =
        conn.prepare_cached("SELECT list, kind, value FROM policy ORDER BY list, kind, value")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut policy = Policy::default();
    for row in rows {
        let (list, kind, value) = row?;
        let entry = match kind {
            0 => PolicyEntry::User(value),
            1 => PolicyEntry::Ip(value),
            other => return Err(StoreError::Corrupt(format!("policy entry kind {other}"))),
        };
        match list {
            0 => policy.blacklist.push(entry),
            1 => policy.whitelist.push(entry),
            other => return Err(StoreError::Corrupt(format!("policy list {other}"))),
        }
    }
    Ok(policy)
}

pub(crate) fn add(conn: &Connection, list: PolicyList, entry: &PolicyEntry) -> StoreResult<bool> {
    let (kind, value) = entry_columns(entry);
    let added = conn
        .prepare_cached(
            "INSERT INTO policy (list, kind, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute(params![list_code(list), kind, value])?;
    Ok(added == 1)
}

pub(crate) fn remove(
    conn: &Connection,
    list: PolicyList,
    entry: &PolicyEntry,
) -> StoreResult<bool> {
    let (kind, value) = entry_columns(entry);
    let removed = conn
        .prepare_cached("DELETE FROM policy WHERE list = ?1 AND kind = ?2 AND value = ?3")?
        .execute(params![list_code(list), kind, value])?;
    Ok(removed == 1)
}
