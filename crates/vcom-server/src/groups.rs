//! Client-side groups (518-526, extended mode only): a user creates a group and owns
//! it, the owner names it and adds and removes members, any member leaves, and every
//! member's devices are told what the group now is.
//!
//! [`decide`] is the rules alone: a request, what the directory knows and the limits go
//! in, the change to make (or the refusal) comes out, with no store, socket or clock
//! inside. [`on_request`] carries a change out: the store first, then the in-memory
//! directory, then the notices (525 to every member's online devices, 526 to whoever is
//! no longer one). Changes run one at a time (`Shared::group_changes`), the
//! administrator's too, so a limit checked is a limit kept and notices go out in the
//! order of the changes.

use std::collections::BTreeSet;
use vcom_protocol::{
    ClientPacket, GroupExit, GroupId, GroupInfo, GroupList, GroupName, GroupOutcome, GroupRemoved,
    GroupResult, ServerPacket, UserId,
};
use vcom_store::Store;

use crate::connection::{Close, Conn};
use crate::directory::GroupEntry;
use crate::server::Shared;
use crate::session::Outbound;

/// A group request (518-522), as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// 518.
    Create { name: String, members: Vec<UserId> },
    /// 519-522: a change to an existing group.
    Change(GroupId, Action),
}

/// What a request asks of an existing group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// 519.
    Rename(String),
    /// 520.
    Add(UserId),
    /// 521.
    Remove(UserId),
    /// 522.
    Leave,
}

impl Request {
    /// The request in a client packet, with the client's request id; `None` for any
    /// other packet.
    pub(crate) fn from_packet(packet: ClientPacket) -> Option<(i64, Request)> {
        Some(match packet {
            ClientPacket::GroupCreate(p) => (
                p.request,
                Request::Create {
                    name: p.name,
                    members: p.members,
                },
            ),
            ClientPacket::GroupRename(p) => {
                (p.request, Request::Change(p.group, Action::Rename(p.name)))
            }
            ClientPacket::GroupAddMember(p) => {
                (p.request, Request::Change(p.group, Action::Add(p.user)))
            }
            ClientPacket::GroupRemoveMember(p) => {
                (p.request, Request::Change(p.group, Action::Remove(p.user)))
            }
            ClientPacket::GroupLeave(p) => (p.request, Request::Change(p.group, Action::Leave)),
            _ => return None,
        })
    }

    /// Which request it is, for the log (never its name or members).
    fn kind(&self) -> &'static str {
        match self {
            Request::Create { .. } => "create",
            Request::Change(_, Action::Rename(_)) => "rename",
            Request::Change(_, Action::Add(_)) => "add",
            Request::Change(_, Action::Remove(_)) => "remove",
            Request::Change(_, Action::Leave) => "leave",
        }
    }

    /// The group it concerns (0 for a new one).
    fn group(&self) -> GroupId {
        match self {
            Request::Create { .. } => GroupId(0),
            Request::Change(group, _) => *group,
        }
    }
}

/// What the rules need to know of the server's state.
pub(crate) trait Facts {
    /// A group as it is now.
    fn group(&self, group: GroupId) -> Option<GroupEntry>;
    /// Whether the user is known to the server.
    fn knows(&self, user: &UserId) -> bool;
    /// How many groups the user owns.
    fn owned_by(&self, user: &UserId) -> usize;
}

/// The bounds on client-side groups (`max_groups_per_user`, `max_group_members`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Groups one user may own.
    pub(crate) groups_per_user: usize,
    /// Members one group may have.
    pub(crate) members: usize,
}

/// A change the rules allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A new group owned by the requester, with these members (the owner included).
    Create {
        name: GroupName,
        members: Vec<UserId>,
    },
    Rename {
        group: GroupId,
        name: GroupName,
    },
    Add {
        group: GroupId,
        user: UserId,
    },
    /// `user` is no longer a member (left, or removed); when the group loses its owner,
    /// `next_owner` takes it on, and a user's group left with no member is deleted.
    Remove {
        group: GroupId,
        user: UserId,
        exit: GroupExit,
        next_owner: Option<UserId>,
        delete: bool,
    },
    /// Done already: nothing changes (adding a member, removing one who is not).
    Nothing,
}

/// The rules: what `requester` may do with `request`.
///
/// Checked in this order: the group exists (else 3), the requester is a member (else
/// 2; leaving needs nothing else), the group is a user's (else 5), the requester owns
/// it (else 1), then what the change itself needs: a valid name (6), known users (4),
/// room for them (8), and for a new group room among the groups the requester owns (7).
pub(crate) fn decide(
    requester: &UserId,
    request: Request,
    facts: &impl Facts,
    bounds: Bounds,
) -> Result<Change, GroupOutcome> {
    let (group, action) = match request {
        Request::Create { name, members } => {
            return create(requester, &name, &members, facts, bounds);
        }
        Request::Change(group, action) => (group, action),
    };
    let entry = facts.group(group).ok_or(GroupOutcome::UnknownGroup)?;
    if !entry.members.contains(requester) {
        return Err(GroupOutcome::NotAMember);
    }
    if action == Action::Leave {
        return Ok(leave(group, &entry, requester, GroupExit::Left));
    }
    match &entry.owner {
        None => return Err(GroupOutcome::AdminGroup),
        Some(owner) if owner != requester => return Err(GroupOutcome::NotOwner),
        Some(_) => {}
    }
    match action {
        Action::Leave => Ok(leave(group, &entry, requester, GroupExit::Left)),
        Action::Rename(name) => Ok(Change::Rename {
            group,
            name: GroupName::new(name).map_err(|_| GroupOutcome::InvalidName)?,
        }),
        Action::Add(user) => {
            if !facts.knows(&user) {
                Err(GroupOutcome::UnknownUser)
            } else if entry.members.contains(&user) {
                Ok(Change::Nothing)
            } else if entry.members.len() >= bounds.members {
                Err(GroupOutcome::TooManyMembers)
            } else {
                Ok(Change::Add { group, user })
            }
        }
        Action::Remove(user) if user == *requester => {
            Ok(leave(group, &entry, requester, GroupExit::Left))
        }
        Action::Remove(user) if entry.members.contains(&user) => {
            Ok(leave(group, &entry, &user, GroupExit::Removed))
        }
        Action::Remove(user) if !facts.knows(&user) => Err(GroupOutcome::UnknownUser),
        Action::Remove(_) => Ok(Change::Nothing),
    }
}

/// A new group: a valid name, known members, within the bounds.
fn create(
    requester: &UserId,
    name: &str,
    members: &[UserId],
    facts: &impl Facts,
    bounds: Bounds,
) -> Result<Change, GroupOutcome> {
    let name = GroupName::new(name).map_err(|_| GroupOutcome::InvalidName)?;
    if members.iter().any(|m| !facts.knows(m)) {
        return Err(GroupOutcome::UnknownUser);
    }
    let members: BTreeSet<UserId> = members.iter().cloned().chain([requester.clone()]).collect();
    if members.len() > bounds.members {
        return Err(GroupOutcome::TooManyMembers);
    }
    if facts.owned_by(requester) >= bounds.groups_per_user {
        return Err(GroupOutcome::TooManyGroups);
    }
    Ok(Change::Create {
        name,
        members: members.into_iter().collect(),
    })
}

/// `user` leaves (or is removed from) the group: an owner who leaves hands the group to
/// the remaining member first by identifier; a user's group with nobody left is deleted.
fn leave(group: GroupId, entry: &GroupEntry, user: &UserId, exit: GroupExit) -> Change {
    let rest = entry.members.iter().filter(|m| *m != user);
    let owner_leaves = entry.owner.as_ref() == Some(user);
    let next_owner = if owner_leaves {
        rest.clone().min().cloned()
    } else {
        None
    };
    Change::Remove {
        group,
        user: user.clone(),
        exit,
        next_owner: next_owner.clone(),
        delete: owner_leaves && next_owner.is_none(),
    }
}

/// The answer to a group request, then the change made and announced.
pub(crate) async fn on_request<S: Store>(
    conn: &Conn<S>,
    request_id: i64,
    request: Request,
) -> Result<(), Close> {
    let shared = &conn.shared;
    let (kind, group) = (request.kind(), request.group());
    let (outcome, group) = {
        let _one_at_a_time = shared.group_changes.lock().await;
        match decide(conn.user(), request, &shared.directory, bounds(shared)) {
            Err(outcome) => {
                tracing::info!(user = %conn.user(), %group, request = kind, %outcome, "group request refused");
                (outcome, group)
            }
            Ok(change) => {
                let group = apply(shared, conn.user(), change).await?.unwrap_or(group);
                (GroupOutcome::Done, group)
            }
        }
    };
    // Answered without the lock: a client slow to read its answers holds up only its
    // own requests, never another user's change.
    conn.reply(GroupResult {
        request: request_id,
        outcome,
        group,
    })
    .await
}

fn bounds<S>(shared: &Shared<S>) -> Bounds {
    Bounds {
        groups_per_user: shared.config.max_groups_per_user,
        // Every member must fit in the 525 a client decodes.
        members: shared
            .config
            .max_group_members
            .min(shared.limits.max_list_len),
    }
}

/// Makes a change in the store, then in memory, then tells the members; the group it
/// concerns (for a new group, its identifier).
async fn apply<S: Store>(
    shared: &Shared<S>,
    requester: &UserId,
    change: Change,
) -> Result<Option<GroupId>, Close> {
    let store = &shared.store;
    let now = crate::now();
    let group = match change {
        Change::Nothing => return Ok(None),
        Change::Create { name, members } => {
            let group = store
                .create_owned_group(requester, name.as_str(), &members, now)
                .await?;
            tracing::info!(user = %requester, %group, "group created");
            group
        }
        Change::Rename { group, name } => {
            store.rename_group(group, name.as_str()).await?;
            group
        }
        Change::Add { group, user } => {
            store.add_group_member(group, &user).await?;
            group
        }
        Change::Remove {
            group,
            user,
            exit,
            next_owner,
            delete,
        } => {
            store.remove_group_member(group, &user).await?;
            if let Some(owner) = &next_owner {
                store.set_group_owner(group, owner).await?;
            }
            if delete {
                store.delete_group(group).await?;
                shared.directory.remove_group(group);
            }
            tell_removed(shared, group, &user, exit);
            shared.cluster.notify(crate::cluster::Notice::Group {
                group: group.0,
                removed: Some(user.as_str().to_owned()),
                exit: exit.code(),
            });
            group
        }
    };
    if let Some(current) = store.group(group).await? {
        shared.directory.set_group(&current);
        announce(shared, &current);
    }
    // The other nodes re-read it (a deleted group is found gone) and tell theirs.
    shared.cluster.notify(crate::cluster::Notice::Group {
        group: group.0,
        removed: None,
        exit: 0,
    });
    Ok(Some(group))
}

/// The 525 that describes a group as it is.
pub(crate) fn info(group: GroupId, entry: &GroupEntry) -> GroupInfo {
    GroupInfo {
        group,
        name: entry.name.clone(),
        owner: entry.owner.clone(),
        members: entry.members.to_vec(),
    }
}

/// Sends a group as it now is to every online device (with the extension set) of each
/// of its members.
pub(crate) fn announce<S>(shared: &Shared<S>, group: &vcom_store::Group) {
    let packet = ServerPacket::from(GroupInfo {
        group: group.id,
        name: group.name.clone(),
        owner: group.owner.clone(),
        members: group.members.clone(),
    });
    for member in &group.members {
        push_ext(shared, member, &packet);
    }
}

/// Tells every online device (with the extension set) of `user` that it is no longer a
/// member of `group`.
pub(crate) fn tell_removed<S>(shared: &Shared<S>, group: GroupId, user: &UserId, exit: GroupExit) {
    let packet = ServerPacket::from(GroupRemoved {
        group,
        reason: exit,
    });
    push_ext(shared, user, &packet);
}

fn push_ext<S>(shared: &Shared<S>, user: &UserId, packet: &ServerPacket) {
    for session in shared.sessions.of_user(user) {
        if session.ext {
            session.push(Outbound::Packet(Box::new(packet.clone())));
        }
    }
}

/// What a device logging in with the extension set is told first: the groups its user
/// is a member of (524), then each of them (525).
pub(crate) fn at_login<S>(shared: &Shared<S>, user: &UserId) -> Vec<ServerPacket> {
    let groups = shared.directory.groups_of(user);
    let mut packets = Vec::with_capacity(groups.len() + 1);
    packets.push(ServerPacket::from(GroupList {
        groups: groups.iter().map(|(id, _)| *id).collect(),
    }));
    packets.extend(
        groups
            .iter()
            .map(|(id, entry)| ServerPacket::from(info(*id, entry))),
    );
    packets
}

/// The administrator changed a group's members (`admin group create/add/remove`):
/// its members hear of it as they would of an owner's change.
pub(crate) fn admin_changed<S>(
    shared: &Shared<S>,
    group: &vcom_store::Group,
    removed: Option<&UserId>,
) {
    if let Some(user) = removed {
        tell_removed(shared, group.id, user, GroupExit::Removed);
    }
    announce(shared, group);
}

/// The lock every group change holds (see the module).
pub(crate) type ChangeLock = tokio::sync::Mutex<()>;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;

    fn uid(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    #[derive(Default)]
    struct World {
        users: Vec<UserId>,
        groups: HashMap<GroupId, GroupEntry>,
    }

    impl Facts for World {
        fn group(&self, group: GroupId) -> Option<GroupEntry> {
            self.groups.get(&group).cloned()
        }
        fn knows(&self, user: &UserId) -> bool {
            self.users.contains(user)
        }
        fn owned_by(&self, user: &UserId) -> usize {
            self.groups
                .values()
                .filter(|g| g.owner.as_ref() == Some(user))
                .count()
        }
    }

    const BOUNDS: Bounds = Bounds {
        groups_per_user: 2,
        members: 3,
    };

    /// alice owns group 1 (alice, bob); the administrator's group 2 has alice and bob;
    /// carol and dave are known and in neither.
    fn world() -> World {
        let mut w = World {
            users: ["alice", "bob", "carol", "dave"].map(uid).to_vec(),
            ..World::default()
        };
        w.groups.insert(
            GroupId(1),
            GroupEntry {
                name: "team".into(),
                owner: Some(uid("alice")),
                members: Arc::from(vec![uid("alice"), uid("bob")]),
            },
        );
        w.groups.insert(
            GroupId(2),
            GroupEntry {
                name: "staff".into(),
                owner: None,
                members: Arc::from(vec![uid("alice"), uid("bob")]),
            },
        );
        w
    }

    fn ask(who: &str, request: Request) -> Result<Change, GroupOutcome> {
        decide(&uid(who), request, &world(), BOUNDS)
    }

    fn add(group: i32, user: &str) -> Request {
        Request::Change(GroupId(group), Action::Add(uid(user)))
    }

    fn remove(group: i32, user: &str) -> Request {
        Request::Change(GroupId(group), Action::Remove(uid(user)))
    }

    fn leave_(group: i32) -> Request {
        Request::Change(GroupId(group), Action::Leave)
    }

    fn rename(group: i32, name: &str) -> Request {
        Request::Change(GroupId(group), Action::Rename(name.into()))
    }

    fn create(name: &str, members: &[&str]) -> Request {
        Request::Create {
            name: name.into(),
            members: members.iter().map(|m| uid(m)).collect(),
        }
    }

    #[test]
    fn a_user_creates_a_group_of_known_users_and_is_its_first_member() {
        assert_eq!(
            ask("carol", create("book club", &["dave", "dave"])),
            Ok(Change::Create {
                name: GroupName::new("book club").unwrap(),
                members: vec![uid("carol"), uid("dave")],
            })
        );
        assert_eq!(
            ask("carol", create("x", &["nobody"])),
            Err(GroupOutcome::UnknownUser)
        );
        for bad in ["", "  ", "a\nb", &"x".repeat(65)] {
            assert_eq!(
                ask("carol", create(bad, &[])),
                Err(GroupOutcome::InvalidName),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn creating_is_bounded_by_groups_owned_and_members() {
        assert_eq!(
            ask("carol", create("big", &["alice", "bob", "dave"])),
            Err(GroupOutcome::TooManyMembers)
        );
        let mut w = world();
        w.groups.insert(
            GroupId(3),
            GroupEntry {
                name: "second".into(),
                owner: Some(uid("alice")),
                members: Arc::from(vec![uid("alice")]),
            },
        );
        assert_eq!(
            decide(&uid("alice"), create("third", &[]), &w, BOUNDS),
            Err(GroupOutcome::TooManyGroups)
        );
    }

    #[test]
    fn only_the_owner_names_adds_and_removes() {
        assert_eq!(
            ask("alice", add(1, "carol")),
            Ok(Change::Add {
                group: GroupId(1),
                user: uid("carol")
            })
        );
        assert_eq!(ask("bob", add(1, "carol")), Err(GroupOutcome::NotOwner));
        assert_eq!(ask("bob", remove(1, "alice")), Err(GroupOutcome::NotOwner));
        assert_eq!(ask("bob", rename(1, "mine")), Err(GroupOutcome::NotOwner));
        assert_eq!(
            ask("alice", rename(1, "ours")),
            Ok(Change::Rename {
                group: GroupId(1),
                name: GroupName::new("ours").unwrap()
            })
        );
        assert_eq!(
            ask("alice", remove(1, "bob")),
            Ok(Change::Remove {
                group: GroupId(1),
                user: uid("bob"),
                exit: GroupExit::Removed,
                next_owner: None,
                delete: false,
            })
        );
    }

    #[test]
    fn a_non_member_is_refused_and_an_unknown_group_is_said_so() {
        assert_eq!(ask("carol", add(1, "dave")), Err(GroupOutcome::NotAMember));
        assert_eq!(ask("carol", leave_(1)), Err(GroupOutcome::NotAMember));
        assert_eq!(
            ask("alice", add(9, "dave")),
            Err(GroupOutcome::UnknownGroup)
        );
    }

    #[test]
    fn the_administrators_group_is_refused_to_clients_but_members_may_leave_it() {
        assert_eq!(ask("alice", add(2, "carol")), Err(GroupOutcome::AdminGroup));
        assert_eq!(
            ask("alice", remove(2, "bob")),
            Err(GroupOutcome::AdminGroup)
        );
        assert_eq!(
            ask("bob", leave_(2)),
            Ok(Change::Remove {
                group: GroupId(2),
                user: uid("bob"),
                exit: GroupExit::Left,
                next_owner: None,
                delete: false,
            })
        );
    }

    #[test]
    fn an_owner_who_leaves_hands_the_group_on_and_the_last_one_out_deletes_it() {
        assert_eq!(
            ask("alice", leave_(1)),
            Ok(Change::Remove {
                group: GroupId(1),
                user: uid("alice"),
                exit: GroupExit::Left,
                next_owner: Some(uid("bob")),
                delete: false,
            })
        );
        let mut w = world();
        w.groups.insert(
            GroupId(1),
            GroupEntry {
                name: "team".into(),
                owner: Some(uid("alice")),
                members: Arc::from(vec![uid("alice")]),
            },
        );
        assert_eq!(
            decide(&uid("alice"), remove(1, "alice"), &w, BOUNDS),
            Ok(Change::Remove {
                group: GroupId(1),
                user: uid("alice"),
                exit: GroupExit::Left,
                next_owner: None,
                delete: true,
            })
        );
    }

    #[test]
    fn adding_a_member_or_removing_a_stranger_changes_nothing_and_members_are_bounded() {
        assert_eq!(ask("alice", add(1, "bob")), Ok(Change::Nothing));
        assert_eq!(ask("alice", remove(1, "carol")), Ok(Change::Nothing));
        assert_eq!(
            ask("alice", add(1, "nobody")),
            Err(GroupOutcome::UnknownUser)
        );
        let full = Bounds {
            members: 2,
            ..BOUNDS
        };
        assert_eq!(
            decide(&uid("alice"), add(1, "carol"), &world(), full),
            Err(GroupOutcome::TooManyMembers)
        );
    }
}
