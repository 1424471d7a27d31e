//! The server's blacklist and whitelist.

use rusqlite::{Connection, params};

use super::records;
use crate::{Policy, PolicyEntry, PolicyList, StoreResult};

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
        records::policy_row(&mut policy, list, kind, value)?;
    }
    Ok(policy)
}

pub(crate) fn add(conn: &Connection, list: PolicyList, entry: &PolicyEntry) -> StoreResult<bool> {
    let (kind, value) = records::policy_entry(entry);
    let added = conn
        .prepare_cached(
            "INSERT INTO policy (list, kind, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute(params![records::policy_list(list), kind, value])?;
    Ok(added == 1)
}

pub(crate) fn remove(
    conn: &Connection,
    list: PolicyList,
    entry: &PolicyEntry,
) -> StoreResult<bool> {
    let (kind, value) = records::policy_entry(entry);
    let removed = conn
        .prepare_cached("DELETE FROM policy WHERE list = ?1 AND kind = ?2 AND value = ?3")?
        .execute(params![records::policy_list(list), kind, value])?;
    Ok(removed == 1)
}
