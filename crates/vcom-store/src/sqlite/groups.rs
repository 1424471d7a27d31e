//! Groups and their members.

use rusqlite::{Connection, OptionalExtension, params};
use vcom_protocol::{GroupId, Timestamp, UserId};

use super::records;
use crate::{Group, StoreError, StoreResult};

/// Adds a member who reads the group's messages stored from now on (`since`: the
/// highest message id assigned so far), not its history.
const ADD_MEMBER: &str = "INSERT INTO group_members (group_id, user, since)
     VALUES (?1, ?2, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0))
     ON CONFLICT DO NOTHING";

/// Creates a group, the administrator's (`owner` none) or a user's.
pub(crate) fn create(
    conn: &Connection,
    owner: Option<&UserId>,
    name: &str,
    members: &[UserId],
    now: Timestamp,
) -> StoreResult<GroupId> {
    conn.prepare_cached("INSERT INTO chat_groups (name, created_at, owner) VALUES (?1, ?2, ?3)")?
        .execute(params![name, now.0, owner.map(UserId::as_str)])?;
    let id = records::i32_id(conn.last_insert_rowid(), "group id")?;
    let mut add = conn.prepare_cached(ADD_MEMBER)?;
    for member in members {
        add.execute(params![id, member.as_str()])?;
    }
    Ok(GroupId(id))
}

fn require(conn: &Connection, group: GroupId) -> StoreResult<()> {
    conn.prepare_cached("SELECT 1 FROM chat_groups WHERE id = ?1")?
        .query_row([group.0], |_| Ok(()))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("group {group}")))
}

pub(crate) fn add_member(conn: &Connection, group: GroupId, user: &UserId) -> StoreResult<bool> {
    require(conn, group)?;
    let added = conn
        .prepare_cached(ADD_MEMBER)?
        .execute(params![group.0, user.as_str()])?;
    Ok(added == 1)
}

pub(crate) fn rename(conn: &Connection, group: GroupId, name: &str) -> StoreResult<()> {
    require(conn, group)?;
    conn.prepare_cached("UPDATE chat_groups SET name = ?2 WHERE id = ?1")?
        .execute(params![group.0, name])?;
    Ok(())
}

pub(crate) fn set_owner(conn: &Connection, group: GroupId, owner: &UserId) -> StoreResult<()> {
    require(conn, group)?;
    conn.prepare_cached("UPDATE chat_groups SET owner = ?2 WHERE id = ?1")?
        .execute(params![group.0, owner.as_str()])?;
    Ok(())
}

/// Deletes a group and its members (its messages go with retention, as any other).
pub(crate) fn delete(conn: &Connection, group: GroupId) -> StoreResult<bool> {
    let deleted = conn
        .prepare_cached("DELETE FROM chat_groups WHERE id = ?1")?
        .execute([group.0])?;
    Ok(deleted == 1)
}

pub(crate) fn remove_member(conn: &Connection, group: GroupId, user: &UserId) -> StoreResult<bool> {
    require(conn, group)?;
    let removed = conn
        .prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND user = ?2")?
        .execute(params![group.0, user.as_str()])?;
    Ok(removed == 1)
}

/// One row of a group query: group id, name, owner or NULL, member or NULL.
type Row = (i64, String, Option<String>, Option<String>);

/// Folds [`Row`]s, ordered by group then member.
fn fold(rows: impl Iterator<Item = rusqlite::Result<Row>>) -> StoreResult<Vec<Group>> {
    let mut groups: Vec<Group> = Vec::new();
    for row in rows {
        let (id, name, owner, member) = row?;
        let id = GroupId(records::i32_id(id, "group id")?);
        let group = match groups.last_mut() {
            Some(last) if last.id == id => last,
            _ => {
                groups.push(Group {
                    id,
                    name,
                    owner: owner.map(records::user_id).transpose()?,
                    members: Vec::new(),
                });
                let last = groups.len() - 1;
                &mut groups[last]
            }
        };
        if let Some(member) = member {
            group.members.push(records::user_id(member)?);
        }
    }
    Ok(groups)
}

pub(crate) fn get(conn: &Connection, group: GroupId) -> StoreResult<Option<Group>> {
    let mut stmt = conn.prepare_cached(
        "SELECT g.id, g.name, g.owner, m.user FROM chat_groups AS g
         LEFT JOIN group_members AS m ON m.group_id = g.id
         WHERE g.id = ?1 ORDER BY m.user",
    )?;
    let rows = stmt.query_map([group.0], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    Ok(fold(rows)?.pop())
}

pub(crate) fn all(conn: &Connection) -> StoreResult<Vec<Group>> {
    let mut stmt = conn.prepare_cached(
        "SELECT g.id, g.name, g.owner, m.user FROM chat_groups AS g
         LEFT JOIN group_members AS m ON m.group_id = g.id
         ORDER BY g.id, m.user",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    fold(rows)
}
