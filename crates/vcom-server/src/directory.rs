//! What the message path must know without asking the store: which users exist, whom
//! each user blocks, each group's members (and its name and owner, for the group
//! extension).
//!
//! Loaded once at start (one store read), then kept in step by the code that changes
//! the store (login, list sync, admin), always *after* the store write succeeded, so the
//! copy never claims more than the store holds. A message is then checked against memory
//! and goes straight to the store's writer: no blocking-pool read per message.
//!
//! Its size follows the store's: one entry per user, per block-list entry, per group
//! member.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use vcom_protocol::{GroupId, UserId};
use vcom_store::{Group, Store, StoreResult};

#[derive(Debug, Default)]
struct Inner {
    users: HashSet<UserId>,
    blocks: HashMap<UserId, HashSet<UserId>>,
    groups: HashMap<GroupId, GroupEntry>,
}

/// A group as the server keeps it in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupEntry {
    /// Its name.
    pub(crate) name: String,
    /// The user who owns it; `None` for the administrator's.
    pub(crate) owner: Option<UserId>,
    /// Its members, ordered by identifier (shared with every message on its way).
    pub(crate) members: Arc<[UserId]>,
}

impl From<&Group> for GroupEntry {
    fn from(g: &Group) -> Self {
        GroupEntry {
            name: g.name.clone(),
            owner: g.owner.clone(),
            members: Arc::from(g.members.clone()),
        }
    }
}

/// The in-memory directory of users, block lists and groups.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    inner: RwLock<Inner>,
    /// Counts every change, so that a re-read from the store (a cluster node's, see
    /// `cluster`) never replaces a change made while it was reading.
    changes: AtomicU64,
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
                .map(|g| (g.id, GroupEntry::from(&g)))
                .collect(),
        };
        Ok(Directory {
            inner: RwLock::new(inner),
            changes: AtomicU64::new(0),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Every writer below leaves the maps whole before anything that could panic.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// How many changes were made so far: read before a re-read from the store, for
    /// [`Directory::replace`].
    pub(crate) fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
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
        self.read()
            .groups
            .get(&group)
            .map(|g| Arc::clone(&g.members))
    }

    /// The groups `user` is a member of, ordered by identifier.
    pub(crate) fn groups_of(&self, user: &UserId) -> Vec<(GroupId, GroupEntry)> {
        let mut groups: Vec<(GroupId, GroupEntry)> = self
            .read()
            .groups
            .iter()
            .filter(|(_, g)| g.members.contains(user))
            .map(|(id, g)| (*id, g.clone()))
            .collect();
        groups.sort_by_key(|(id, _)| *id);
        groups
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
        for group in inner.groups.values_mut() {
            if group.members.contains(user) {
                group.members = group
                    .members
                    .iter()
                    .filter(|m| *m != user)
                    .cloned()
                    .collect();
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

    /// A group was created or changed (name, owner, members).
    pub(crate) fn set_group(&self, group: &Group) {
        self.write()
            .groups
            .insert(group.id, GroupEntry::from(group));
    }

    /// A group was deleted.
    pub(crate) fn remove_group(&self, group: GroupId) {
        self.write().groups.remove(&group);
    }

    /// Takes everything from a directory read afresh from the store (a cluster node's
    /// periodic re-read, see `cluster`), unless something changed since
    /// [`Directory::changes`] said `seen` (that change may be missing from what was
    /// read; the next re-read takes it). Returns whether it replaced.
    pub(crate) fn replace(&self, fresh: Directory, seen: u64) -> bool {
        let fresh = fresh.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if self.changes.load(Ordering::Acquire) != seen {
            return false;
        }
        *inner = fresh;
        true
    }
}

impl crate::groups::Facts for Directory {
    fn group(&self, group: GroupId) -> Option<GroupEntry> {
        self.read().groups.get(&group).cloned()
    }

    fn knows(&self, user: &UserId) -> bool {
        Directory::knows(self, user)
    }

    fn owned_by(&self, user: &UserId) -> usize {
        self.read()
            .groups
            .values()
            .filter(|g| g.owner.as_ref() == Some(user))
            .count()
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
            owner: Some(uid("alice")),
            members: vec![uid("alice"), uid("bob")],
        });
        assert_eq!(d.group(GroupId(1)).map(|m| m.len()), Some(2));
        assert_eq!(d.groups_of(&uid("bob")).len(), 1);
        assert!(d.groups_of(&uid("carol")).is_empty());
        d.remove_group(GroupId(1));
        assert!(d.group(GroupId(1)).is_none());
    }
}
