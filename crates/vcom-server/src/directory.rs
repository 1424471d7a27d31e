//! What the message path must know without asking the store: which users exist, whom
//! each user blocks, each group's members.
//!
//! Loaded once at start (one store read), then kept in step by the code that changes
//! the store (login, list sync, admin), always *after* the store write succeeded, so the
//! copy never claims more than the store holds. A message is then checked against memory
//! and goes straight to the store's writer: no blocking-pool read per message.
//!
//! Its size follows the store's: one entry per user, per block-list entry, per group
//! member.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use vcom_protocol::{GroupId, UserId};
use vcom_store::{Group, Store, StoreResult};

#[derive(Debug, Default)]
struct Inner {
    users: HashSet<UserId>,
    blocks: HashMap<UserId, HashSet<UserId>>,
    groups: HashMap<GroupId, Arc<[UserId]>>,
}

/// The in-memory directory of users, block lists and groups.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    inner: RwLock<Inner>,
}

impl Directory {
    /// Reads the whole directory from the store.
    pub(crate) async fn load<S: Store>(store: &S) -> StoreResult<Directory> {
        let records = store.directory().await?;
        let inner = Inner {
            users: records.users.into_iter().collect(),
            blocks: records
                .blocks
                .into_iter()
                .map(|(owner, entries)| (owner, entries.into_iter().collect()))
                .collect(),
            groups: records
                .groups
                .into_iter()
                .map(|g| (g.id, Arc::from(g.members)))
                .collect(),
        };
        Ok(Directory {
            inner: RwLock::new(inner),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Every writer below leaves the maps whole before anything that could panic.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the user has ever logged in.
    pub(crate) fn knows(&self, user: &UserId) -> bool {
        self.read().users.contains(user)
    }

    /// Whether `owner` blocks `other`.
    pub(crate) fn blocks(&self, owner: &UserId, other: &UserId) -> bool {
        self.read()
            .blocks
            .get(owner)
            .is_some_and(|blocked| blocked.contains(other))
    }

    /// A group's members, if the group exists.
    pub(crate) fn group(&self, group: GroupId) -> Option<Arc<[UserId]>> {
        self.read().groups.get(&group).cloned()
    }

    /// A login registered the user (it may have been known already).
    pub(crate) fn add_user(&self, user: &UserId) {
        let mut inner = self.write();
        if !inner.users.contains(user) {
            inner.users.insert(user.clone());
        }
    }

    /// The administrator removed the user: unknown from now on, with no block list and
    /// in no group.
    pub(crate) fn remove_user(&self, user: &UserId) {
        let mut inner = self.write();
        inner.users.remove(user);
        inner.blocks.remove(user);
        for members in inner.groups.values_mut() {
            if members.contains(user) {
                *members = members.iter().filter(|m| *m != user).cloned().collect();
            }
        }
    }

    /// The user uploaded a new block list.
    pub(crate) fn set_blocks(&self, owner: &UserId, entries: &[UserId]) {
        let mut inner = self.write();
        if entries.is_empty() {
            inner.blocks.remove(owner);
        } else {
            inner
                .blocks
                .insert(owner.clone(), entries.iter().cloned().collect());
        }
    }

    /// A group was created or its members changed.
    pub(crate) fn set_group(&self, group: &Group) {
        self.write()
            .groups
            .insert(group.id, Arc::from(group.members.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    #[test]
    fn a_block_list_upload_replaces_the_previous_one() {
        let d = Directory::default();
        d.set_blocks(&uid("bob"), &[uid("mallory"), uid("eve")]);
        assert!(d.blocks(&uid("bob"), &uid("eve")));
        d.set_blocks(&uid("bob"), &[uid("eve")]);
        assert!(!d.blocks(&uid("bob"), &uid("mallory")));
        d.set_blocks(&uid("bob"), &[]);
        assert!(!d.blocks(&uid("bob"), &uid("eve")));
        assert!(!d.blocks(&uid("alice"), &uid("eve")));
    }

    #[test]
    fn users_and_groups_are_remembered() {
        let d = Directory::default();
        assert!(!d.knows(&uid("alice")));
        d.add_user(&uid("alice"));
        d.add_user(&uid("alice"));
        assert!(d.knows(&uid("alice")));
        assert!(d.group(GroupId(1)).is_none());
        d.set_group(&Group {
            id: GroupId(1),
            name: "team".into(),
            members: vec![uid("alice"), uid("bob")],
        });
        assert_eq!(d.group(GroupId(1)).map(|m| m.len()), Some(2));
    }
}
