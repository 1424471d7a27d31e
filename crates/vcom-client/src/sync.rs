//! Friend and block list synchronisation (packets 259-262): the decisions, with no IO.
//!
//! [`ListsState`] is the local view of both lists plus what is in flight: uploads whose
//! new server timestamp has not been seen yet, and downloads asked for but not yet
//! received. The session feeds it packets and sends what it returns; tests drive it
//! directly. See `docs/protocol.md`.

use std::collections::VecDeque;

use vcom_protocol::{ListSync, RequestUserListsSync, Timestamp, UserId, UserListsSync};

/// One list (friends or blocked users) and when it last changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserList {
    /// The user identifiers, in order, without duplicates.
    pub entries: Vec<UserId>,
    /// When the list last changed, in milliseconds since the epoch
    /// ([`Timestamp::NEVER`] when it never has).
    pub timestamp: Timestamp,
}

/// Both lists of the logged-in user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    /// The friend list.
    pub friends: UserList,
    /// The block list.
    pub blocks: UserList,
}

/// Which of the two lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// The friend list (261).
    Friends,
    /// The block list (262).
    Blocks,
}

/// What is in flight for one list.
#[derive(Debug, Default, Clone)]
struct InFlight {
    /// Uploads (flag 2) sent whose answering 259 has not arrived yet.
    uploads: u32,
    /// For each download asked for (flag 1), the server timestamp to adopt with it.
    downloads: VecDeque<Timestamp>,
}

/// The local lists and the sync bookkeeping; pure state, no IO.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListsState {
    lists: Lists,
    friends: InFlight,
    blocks: InFlight,
}

/// The decision for one list given both timestamps: flag 0, 1 or 2.
pub(crate) fn decide(local: &UserList, server: Timestamp) -> ListSync {
    use std::cmp::Ordering;
    match local.timestamp.cmp(&server) {
        Ordering::Equal => ListSync::InSync,
        Ordering::Less => ListSync::SendServerList,
        Ordering::Greater => ListSync::Upload(local.entries.clone()),
    }
}

/// The timestamp for a local change: `max(now, previous + 1)`, so it always moves
/// forward even when the clock does not.
pub(crate) fn next_timestamp(previous: Timestamp, now: Timestamp) -> Timestamp {
    Timestamp(now.0.max(previous.0.saturating_add(1)))
}

impl ListsState {
    /// Starts from the lists stored in the profile.
    pub(crate) fn new(lists: Lists) -> Self {
        ListsState {
            lists,
            ..Default::default()
        }
    }

    /// The current lists.
    pub(crate) fn lists(&self) -> &Lists {
        &self.lists
    }

    fn parts(&mut self, kind: ListKind) -> (&mut UserList, &mut InFlight) {
        match kind {
            ListKind::Friends => (&mut self.lists.friends, &mut self.friends),
            ListKind::Blocks => (&mut self.lists.blocks, &mut self.blocks),
        }
    }

    /// Answers a RequestUserListsSync (259).
    ///
    /// A list with an upload in flight adopts the server's timestamp first: that 259 is
    /// the server's answer to the upload (it stamps stored lists itself). Then each list
    /// is compared: equal is flag 0, a newer server list is asked for (flag 1, its
    /// timestamp adopted when 261/262 arrives), a newer local list is uploaded (flag 2).
    pub(crate) fn on_sync_request(&mut self, request: &RequestUserListsSync) -> UserListsSync {
        let friends = self.answer(ListKind::Friends, request.friends);
        let blocks = self.answer(ListKind::Blocks, request.blocks);
        UserListsSync { friends, blocks }
    }

    fn answer(&mut self, kind: ListKind, server: Timestamp) -> ListSync {
        let (list, in_flight) = self.parts(kind);
        if in_flight.uploads > 0 {
            in_flight.uploads -= 1;
            list.timestamp = server;
        }
        let decision = decide(list, server);
        match &decision {
            ListSync::InSync => {}
            ListSync::SendServerList => in_flight.downloads.push_back(server),
            ListSync::Upload(_) => in_flight.uploads += 1,
        }
        decision
    }

    /// Takes a FriendList (261) or BlockList (262): replaces the local list and adopts
    /// the server timestamp of the 259 that asked for it.
    ///
    /// Returns `false` (and changes nothing) when no download was asked for: the server
    /// sent a list nobody requested.
    pub(crate) fn on_server_list(&mut self, kind: ListKind, entries: Vec<UserId>) -> bool {
        let (list, in_flight) = self.parts(kind);
        let Some(timestamp) = in_flight.downloads.pop_front() else {
            return false;
        };
        list.entries = dedup(entries);
        list.timestamp = timestamp;
        true
    }

    /// Applies a local change to one list and returns the 260 to send ("initiative
    /// send"): flag 2 with the new entries for that list, flag 0 for the other.
    ///
    /// Returns `None` when the change changes nothing (adding a present entry,
    /// removing an absent one): no timestamp moves and nothing is sent.
    pub(crate) fn change(
        &mut self,
        kind: ListKind,
        user: &UserId,
        add: bool,
        now: Timestamp,
    ) -> Option<UserListsSync> {
        let (list, in_flight) = self.parts(kind);
        let present = list.entries.contains(user);
        match (add, present) {
            (true, true) | (false, false) => return None,
            (true, false) => list.entries.push(user.clone()),
            (false, true) => list.entries.retain(|u| u != user),
        }
        list.timestamp = next_timestamp(list.timestamp, now);
        in_flight.uploads += 1;
        let upload = ListSync::Upload(list.entries.clone());
        Some(match kind {
            ListKind::Friends => UserListsSync {
                friends: upload,
                blocks: ListSync::InSync,
            },
            ListKind::Blocks => UserListsSync {
                friends: ListSync::InSync,
                blocks: upload,
            },
        })
    }
}

/// Drops repeated entries, keeping the first of each.
fn dedup(entries: Vec<UserId>) -> Vec<UserId> {
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|u| seen.insert(u.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn list(ts: i64, entries: &[&str]) -> UserList {
        UserList {
            entries: entries.iter().map(|s| user(s)).collect(),
            timestamp: Timestamp(ts),
        }
    }

    fn request(friends: i64, blocks: i64) -> RequestUserListsSync {
        RequestUserListsSync {
            friends: Timestamp(friends),
            blocks: Timestamp(blocks),
        }
    }

    #[test]
    fn equal_timestamps_are_in_sync() {
        assert_eq!(decide(&list(5, &["a"]), Timestamp(5)), ListSync::InSync);
    }

    #[test]
    fn a_newer_server_list_is_asked_for() {
        assert_eq!(
            decide(&list(5, &["a"]), Timestamp(6)),
            ListSync::SendServerList
        );
    }

    #[test]
    fn a_newer_local_list_is_uploaded_with_its_entries() {
        assert_eq!(
            decide(&list(7, &["a", "b"]), Timestamp(6)),
            ListSync::Upload(vec![user("a"), user("b")])
        );
    }

    #[test]
    fn a_fresh_profile_and_a_fresh_server_are_in_sync() {
        let mut state = ListsState::default();
        let answer = state.on_sync_request(&request(0, 0));
        assert_eq!(answer.friends, ListSync::InSync);
        assert_eq!(answer.blocks, ListSync::InSync);
    }

    #[test]
    fn a_downloaded_list_replaces_the_local_one_with_the_server_timestamp() {
        let mut state = ListsState::new(Lists {
            friends: list(1, &["old"]),
            blocks: list(3, &[]),
        });
        let answer = state.on_sync_request(&request(10, 3));
        assert_eq!(answer.friends, ListSync::SendServerList);
        assert_eq!(answer.blocks, ListSync::InSync);
        assert!(state.on_server_list(ListKind::Friends, vec![user("x"), user("y")]));
        assert_eq!(state.lists().friends, list(10, &["x", "y"]));
        assert_eq!(state.lists().blocks, list(3, &[]));
    }

    #[test]
    fn an_unrequested_server_list_is_rejected() {
        let mut state = ListsState::default();
        assert!(!state.on_server_list(ListKind::Blocks, vec![user("x")]));
        assert_eq!(state.lists(), &Lists::default());
    }

    #[test]
    fn the_uploader_adopts_the_timestamp_of_the_next_sync_request() {
        let mut state = ListsState::new(Lists {
            friends: list(20, &["a"]),
            blocks: list(0, &[]),
        });
        let answer = state.on_sync_request(&request(10, 0));
        assert_eq!(answer.friends, ListSync::Upload(vec![user("a")]));
        // The server stamps the stored list itself (here earlier than the local clock).
        let answer = state.on_sync_request(&request(15, 0));
        assert_eq!(answer.friends, ListSync::InSync);
        assert_eq!(answer.blocks, ListSync::InSync);
        assert_eq!(state.lists().friends.timestamp, Timestamp(15));
    }

    #[test]
    fn a_local_change_uploads_only_that_list_with_a_newer_timestamp() {
        let mut state = ListsState::new(Lists {
            friends: list(100, &["a"]),
            blocks: list(0, &[]),
        });
        let sent = state.change(ListKind::Blocks, &user("spam"), true, Timestamp(50));
        assert_eq!(
            sent,
            Some(UserListsSync {
                friends: ListSync::InSync,
                blocks: ListSync::Upload(vec![user("spam")]),
            })
        );
        // The clock (50) is behind the previous timestamp (0 + 1 = 1): now wins.
        assert_eq!(state.lists().blocks.timestamp, Timestamp(50));
        let sent = state.change(ListKind::Friends, &user("a"), false, Timestamp(50));
        assert!(sent.is_some());
        // The clock is behind the previous timestamp: previous + 1 wins.
        assert_eq!(state.lists().friends, list(101, &[]));
    }

    #[test]
    fn a_change_that_changes_nothing_sends_nothing() {
        let mut state = ListsState::new(Lists {
            friends: list(5, &["a"]),
            blocks: list(0, &[]),
        });
        assert_eq!(
            state.change(ListKind::Friends, &user("a"), true, Timestamp(9)),
            None
        );
        assert_eq!(
            state.change(ListKind::Blocks, &user("b"), false, Timestamp(9)),
            None
        );
        assert_eq!(state.lists().friends.timestamp, Timestamp(5));
    }

    #[test]
    fn two_quick_changes_adopt_both_answers_and_stay_in_sync() {
        let mut state = ListsState::default();
        assert!(
            state
                .change(ListKind::Friends, &user("a"), true, Timestamp(1000))
                .is_some()
        );
        assert!(
            state
                .change(ListKind::Friends, &user("b"), true, Timestamp(1000))
                .is_some()
        );
        let first = state.on_sync_request(&request(2000, 0));
        assert_eq!(first.friends, ListSync::InSync);
        let second = state.on_sync_request(&request(2001, 0));
        assert_eq!(second.friends, ListSync::InSync);
        assert_eq!(state.lists().friends, list(2001, &["a", "b"]));
        // With nothing in flight, a later newer list is downloaded again.
        assert_eq!(
            state.on_sync_request(&request(3000, 0)).friends,
            ListSync::SendServerList
        );
    }

    #[test]
    fn another_devices_upload_is_downloaded() {
        // Device B holds the state both devices agreed on; device A then uploads.
        let mut b = ListsState::new(Lists {
            friends: list(10, &["a"]),
            blocks: list(10, &[]),
        });
        let answer = b.on_sync_request(&request(11, 10));
        assert_eq!(answer.friends, ListSync::SendServerList);
        assert_eq!(answer.blocks, ListSync::InSync);
        assert!(b.on_server_list(ListKind::Friends, vec![user("a"), user("c")]));
        assert_eq!(b.lists().friends, list(11, &["a", "c"]));
    }

    #[test]
    fn two_downloads_in_flight_adopt_their_timestamps_in_order() {
        let mut state = ListsState::default();
        assert_eq!(
            state.on_sync_request(&request(5, 0)).friends,
            ListSync::SendServerList
        );
        assert_eq!(
            state.on_sync_request(&request(6, 0)).friends,
            ListSync::SendServerList
        );
        assert!(state.on_server_list(ListKind::Friends, vec![user("x")]));
        assert_eq!(state.lists().friends.timestamp, Timestamp(5));
        assert!(state.on_server_list(ListKind::Friends, vec![user("x"), user("y")]));
        assert_eq!(state.lists().friends, list(6, &["x", "y"]));
    }

    #[test]
    fn duplicate_entries_from_the_server_are_dropped() {
        let mut state = ListsState::default();
        state.on_sync_request(&request(0, 4));
        assert!(state.on_server_list(ListKind::Blocks, vec![user("x"), user("x")]));
        assert_eq!(state.lists().blocks, list(4, &["x"]));
    }

    #[test]
    fn next_timestamp_never_goes_backwards() {
        assert_eq!(next_timestamp(Timestamp(10), Timestamp(5)), Timestamp(11));
        assert_eq!(next_timestamp(Timestamp(10), Timestamp(50)), Timestamp(50));
        assert_eq!(
            next_timestamp(Timestamp(i64::MAX), Timestamp(0)),
            Timestamp(i64::MAX)
        );
    }
}
