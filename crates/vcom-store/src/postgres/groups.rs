//! Groups and their members.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use vcom_protocol::{GroupId, Timestamp, UserId};

use super::statements::{execute, query, query_one, query_opt};
use crate::sqlite::records;
use crate::{Group, StoreError, StoreResult};

/// Adds a member who reads the group's messages stored from now on (`since`: the
/// highest message id committed so far), not its history.
const ADD_MEMBER: &str = "INSERT INTO group_members (group_id, user_id, since)
     VALUES ($1, $2, (SELECT last FROM message_counter))
     ON CONFLICT DO NOTHING";

/// Creates a group, the administrator's (`owner` none) or a user's.
pub(crate) async fn create(
    c: &impl GenericClient,
    owner: Option<&UserId>,
    name: &str,
    members: &[UserId],
    now: Timestamp,
) -> StoreResult<GroupId> {
    let id: i64 = query_one(
        c,
        "INSERT INTO chat_groups (name, created_at, owner) VALUES ($1, $2, $3) RETURNING id",
        &[&name.as_bytes(), &now.0, &owner.map(UserId::as_str)],
    )
    .await?
    .try_get(0)?;
    let group = records::i32_id(id, "group id")?;
    for member in members {
        execute(c, ADD_MEMBER, &[&id, &member.as_str()]).await?;
    }
    Ok(GroupId(group))
}

async fn require(c: &impl GenericClient, group: GroupId) -> StoreResult<()> {
    query_opt(
        c,
        "SELECT 1 FROM chat_groups WHERE id = $1",
        &[&i64::from(group.0)],
    )
    .await?
    .map(|_| ())
    .ok_or_else(|| StoreError::NotFound(format!("group {group}")))
}

pub(crate) async fn add_member(
    c: &impl GenericClient,
    group: GroupId,
    user: &UserId,
) -> StoreResult<bool> {
    require(c, group).await?;
    let added = execute(c, ADD_MEMBER, &[&i64::from(group.0), &user.as_str()]).await?;
    Ok(added == 1)
}

pub(crate) async fn rename(c: &impl GenericClient, group: GroupId, name: &str) -> StoreResult<()> {
    require(c, group).await?;
    execute(
        c,
        "UPDATE chat_groups SET name = $2 WHERE id = $1",
        &[&i64::from(group.0), &name.as_bytes()],
    )
    .await?;
    Ok(())
}

pub(crate) async fn set_owner(
    c: &impl GenericClient,
    group: GroupId,
    owner: &UserId,
) -> StoreResult<()> {
    require(c, group).await?;
    execute(
        c,
        "UPDATE chat_groups SET owner = $2 WHERE id = $1",
        &[&i64::from(group.0), &owner.as_str()],
    )
    .await?;
    Ok(())
}

/// Deletes a group and its members (its messages go with retention, as any other).
pub(crate) async fn delete(c: &impl GenericClient, group: GroupId) -> StoreResult<bool> {
    let deleted = execute(
        c,
        "DELETE FROM chat_groups WHERE id = $1",
        &[&i64::from(group.0)],
    )
    .await?;
    Ok(deleted == 1)
}

pub(crate) async fn remove_member(
    c: &impl GenericClient,
    group: GroupId,
    user: &UserId,
) -> StoreResult<bool> {
    require(c, group).await?;
    let removed = execute(
        c,
        "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2",
        &[&i64::from(group.0), &user.as_str()],
    )
    .await?;
    Ok(removed == 1)
}

/// Folds `(group id, name, member or NULL, owner or NULL)` rows, ordered by group then
/// member.
fn fold(rows: &[Row]) -> StoreResult<Vec<Group>> {
    let mut groups: Vec<Group> = Vec::new();
    for row in rows {
        let id = GroupId(records::i32_id(row.try_get(0)?, "group id")?);
        let member: Option<String> = row.try_get(2)?;
        if groups.last().is_none_or(|last| last.id != id) {
            let owner: Option<String> = row.try_get(3)?;
            groups.push(Group {
                id,
                name: records::text(row.try_get(1)?, "group name")?,
                owner: owner.map(records::user_id).transpose()?,
                members: Vec::new(),
            });
        }
        if let (Some(member), Some(group)) = (member, groups.last_mut()) {
            group.members.push(records::user_id(member)?);
        }
    }
    Ok(groups)
}

pub(crate) async fn get(c: &impl GenericClient, group: GroupId) -> StoreResult<Option<Group>> {
    let rows = query(
        c,
        "SELECT g.id, g.name, m.user_id, g.owner FROM chat_groups AS g
         LEFT JOIN group_members AS m ON m.group_id = g.id
         WHERE g.id = $1 ORDER BY m.user_id",
        &[&i64::from(group.0)],
    )
    .await?;
    Ok(fold(&rows)?.pop())
}

pub(crate) async fn all(c: &impl GenericClient) -> StoreResult<Vec<Group>> {
    let rows = query(
        c,
        "SELECT g.id, g.name, m.user_id, g.owner FROM chat_groups AS g
         LEFT JOIN group_members AS m ON m.group_id = g.id
         ORDER BY g.id, m.user_id",
        &[],
    )
    .await?;
    fold(&rows)
}
