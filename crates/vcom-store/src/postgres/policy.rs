//! The server's blacklist and whitelist.

use deadpool_postgres::GenericClient;

use super::statements::{execute, query};
use crate::sqlite::records;
use crate::{Policy, PolicyEntry, PolicyList, StoreResult};

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
        records::policy_row(&mut policy, list, kind, value)?;
    }
    Ok(policy)
}

pub(crate) async fn add(
    c: &impl GenericClient,
    list: PolicyList,
    entry: &PolicyEntry,
) -> StoreResult<bool> {
    let (kind, value) = records::policy_entry(entry);
    let added = execute(
        c,
        "INSERT INTO policy (list, kind, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&records::policy_list(list), &kind, &value],
    )
    .await?;
    Ok(added == 1)
}

pub(crate) async fn remove(
    c: &impl GenericClient,
    list: PolicyList,
    entry: &PolicyEntry,
) -> StoreResult<bool> {
    let (kind, value) = records::policy_entry(entry);
    let removed = execute(
        c,
        "DELETE FROM policy WHERE list = $1 AND kind = $2 AND value = $3",
        &[&records::policy_list(list), &kind, &value],
    )
    .await?;
    Ok(removed == 1)
}
