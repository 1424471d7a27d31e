//! The server's blacklist and whitelist.

use deadpool_postgres::GenericClient;

use super::statements::{execute, query};
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

pub(crate) async fn all(c: &impl GenericClient) -> StoreResult<Policy> {
    let rows = query(
        c,
        "SELECT list, kind, value FROM policy ORDER BY list, kind, value",
        &[],
    )
    .await?;
    let mut policy = Policy::default();
    for row in rows {
        let (list, kind, value): (i64, i64, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
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

pub(crate) async fn add(
    c: &impl GenericClient,
    list: PolicyList,
    entry: &PolicyEntry,
) -> StoreResult<bool> {
    let (kind, value) = entry_columns(entry);
    let added = execute(
        c,
        "INSERT INTO policy (list, kind, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&list_code(list), &kind, &value],
    )
    .await?;
    Ok(added == 1)
}

pub(crate) async fn remove(
    c: &impl GenericClient,
    list: PolicyList,
    entry: &PolicyEntry,
) -> StoreResult<bool> {
    let (kind, value) = entry_columns(entry);
    let removed = execute(
        c,
        "DELETE FROM policy WHERE list = $1 AND kind = $2 AND value = $3",
        &[&list_code(list), &kind, &value],
    )
    .await?;
    Ok(removed == 1)
}
