//! Client-side groups (extended mode, 518-526): what this device knows of the groups its
//! user is a member of, and the requests waiting for the server's answer.
//!
//! Pure state, no IO: the session feeds it the server's packets and saves
//! [`GroupsState::list`] in the profile when something changed, so the groups (with
//! their names) are known before the next login, and survive a restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::sync::oneshot;
use vcom_protocol::{
    ClientPacket, GroupAddMember, GroupCreate, GroupId, GroupInfo, GroupLeave, GroupOutcome,
    GroupRemoveMember, GroupRename, GroupResult, UserId,
};

use crate::ClientError;

/// A group this user is a member of, as the server last described it (GroupInfo, 525).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its identifier.
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// The user who owns it and alone changes it; `None` for a group the server's
    /// administrator made (and alone changes).
    pub owner: Option<UserId>,
    /// Its members, ordered by identifier.
    pub members: Vec<UserId>,
}

impl From<GroupInfo> for Group {
    fn from(info: GroupInfo) -> Self {
        Group {
            id: info.group,
            name: info.name,
            owner: info.owner,
            members: info.members,
        }
    }
}

/// A group request, before the session gives it its request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupRequest {
    Create { name: String, members: Vec<UserId> },
    Rename { group: GroupId, name: String },
    Add { group: GroupId, user: UserId },
    Remove { group: GroupId, user: UserId },
    Leave { group: GroupId },
}

impl GroupRequest {
    /// The packet that carries it.
    pub(crate) fn packet(self, request: i64) -> ClientPacket {
        match self {
            GroupRequest::Create { name, members } => GroupCreate {
                request,
                name,
                members,
            }
            .into(),
            GroupRequest::Rename { group, name } => GroupRename {
                request,
                group,
                name,
            }
            .into(),
            GroupRequest::Add { group, user } => GroupAddMember {
                request,
                group,
                user,
            }
            .into(),
            GroupRequest::Remove { group, user } => GroupRemoveMember {
                request,
                group,
                user,
            }
            .into(),
            GroupRequest::Leave { group } => GroupLeave { request, group }.into(),
        }
    }
}

/// Who waits for the answer to a group request.
pub(crate) type GroupReply = oneshot::Sender<Result<GroupId, ClientError>>;

/// The groups known to this device and the requests in flight.
#[derive(Debug, Default)]
pub(crate) struct GroupsState {
    groups: BTreeMap<GroupId, Group>,
    waiting: HashMap<i64, GroupReply>,
    next_request: i64,
}

impl GroupsState {
    /// The groups saved in the profile.
    pub(crate) fn new(saved: Vec<Group>) -> Self {
        GroupsState {
            groups: saved.into_iter().map(|g| (g.id, g)).collect(),
            ..GroupsState::default()
        }
    }

    /// Every known group, by identifier.
    pub(crate) fn list(&self) -> Vec<Group> {
        self.groups.values().cloned().collect()
    }

    /// GroupList (524), at login: forgets the groups it does not name (the user left or
    /// was removed while this device was away). True when something was forgotten.
    pub(crate) fn on_list(&mut self, ids: &[GroupId]) -> bool {
        let keep: BTreeSet<GroupId> = ids.iter().copied().collect();
        let before = self.groups.len();
        self.groups.retain(|id, _| keep.contains(id));
        self.groups.len() != before
    }

    /// GroupInfo (525): the group as it now is. `None` when nothing changed.
    pub(crate) fn on_info(&mut self, info: GroupInfo) -> Option<Group> {
        let group = Group::from(info);
        if self.groups.get(&group.id) == Some(&group) {
            return None;
        }
        self.groups.insert(group.id, group.clone());
        Some(group)
    }

    /// GroupRemoved (526): true when the group was known.
    pub(crate) fn on_removed(&mut self, group: GroupId) -> bool {
        self.groups.remove(&group).is_some()
    }

    /// A request about to be sent: its id, with whom to answer.
    pub(crate) fn start(&mut self, reply: GroupReply) -> i64 {
        self.next_request = self.next_request.wrapping_add(1);
        self.waiting.insert(self.next_request, reply);
        self.next_request
    }

    /// GroupResult (523): answers the request it names (an answer nobody waits for is
    /// ignored).
    pub(crate) fn on_result(&mut self, result: &GroupResult) {
        if let Some(reply) = self.waiting.remove(&result.request) {
            let answer = match result.outcome {
                GroupOutcome::Done => Ok(result.group),
                refused => Err(ClientError::GroupRefused(refused)),
            };
            let _ = reply.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    fn info(id: i32, name: &str) -> GroupInfo {
        GroupInfo {
            group: GroupId(id),
            name: name.into(),
            owner: Some(uid("alice")),
            members: vec![uid("alice"), uid("bob")],
        }
    }

    #[test]
    fn a_login_list_forgets_the_groups_it_does_not_name() {
        let mut state = GroupsState::new(vec![info(1, "a").into(), info(2, "b").into()]);
        assert!(!state.on_list(&[GroupId(1), GroupId(2)]));
        assert!(state.on_list(&[GroupId(2)]));
        assert_eq!(state.list(), vec![Group::from(info(2, "b"))]);
    }

    #[test]
    fn an_info_replaces_the_group_and_says_whether_it_changed() {
        let mut state = GroupsState::default();
        assert!(state.on_info(info(1, "a")).is_some());
        assert!(state.on_info(info(1, "a")).is_none());
        assert_eq!(
            state.on_info(info(1, "b")).map(|g| g.name),
            Some("b".into())
        );
        assert!(state.on_removed(GroupId(1)));
        assert!(!state.on_removed(GroupId(1)));
        assert!(state.list().is_empty());
    }

    #[test]
    fn a_result_answers_its_request_with_the_group_or_the_refusal() {
        let mut state = GroupsState::default();
        let (tx, mut rx) = oneshot::channel();
        let id = state.start(tx);
        let (tx2, mut rx2) = oneshot::channel();
        let id2 = state.start(tx2);
        assert_ne!(id, id2);
        state.on_result(&GroupResult {
            request: id2,
            outcome: GroupOutcome::NotOwner,
            group: GroupId(4),
        });
        state.on_result(&GroupResult {
            request: id,
            outcome: GroupOutcome::Done,
            group: GroupId(3),
        });
        assert_eq!(rx.try_recv().unwrap().unwrap(), GroupId(3));
        assert!(matches!(
            rx2.try_recv().unwrap(),
            Err(ClientError::GroupRefused(GroupOutcome::NotOwner))
        ));
    }
}
