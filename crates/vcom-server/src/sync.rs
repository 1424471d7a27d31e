//! Friend and block list sync (259-262), `docs/protocol.md`.
//!
//! The rules are a pure function of the packet ([`plan`]); `on_lists_sync` carries the
//! plan out against the store and the registry.
//!
//! The client answers 259 with a flag per list: in sync, "send me yours" (answered with
//! 261/262), or an upload. An upload is stored with timestamp `max(now, previous + 1)`,
//! and every online device of the user, the uploader included, gets a fresh 259.

use std::collections::HashSet;

use vcom_protocol::{BlockList, FriendList, ListSync, RequestUserListsSync, UserId, UserListsSync};
use vcom_store::{ListKind, Store};

use crate::connection::{Close, Conn};
use crate::session::Outbound;

/// Drops repeated entries, keeping the first occurrence's position.
fn dedup(entries: Vec<UserId>) -> Vec<UserId> {
    let mut seen = HashSet::with_capacity(entries.len());
    entries
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect()
}

/// What one list of a 260 asks of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Send the server's list (261 or 262).
    Send(ListKind),
    /// Store the uploaded list (its repeated entries dropped).
    Store(ListKind, Vec<UserId>),
}

/// A 260 decided without IO: what to do for each list, friends first, and whether every
/// online device of the user then gets a fresh 259 (after any upload, so the other
/// devices see the newer list and the uploader adopts the new timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) effects: Vec<Effect>,
    pub(crate) announce: bool,
}

/// The list sync rules as a pure function of the packet.
pub(crate) fn plan(p: UserListsSync) -> Plan {
    let mut effects = Vec::new();
    for (block, kind) in [(p.friends, ListKind::Friends), (p.blocks, ListKind::Blocks)] {
        match block {
            ListSync::InSync => {}
            ListSync::SendServerList => effects.push(Effect::Send(kind)),
            ListSync::Upload(entries) => effects.push(Effect::Store(kind, dedup(entries))),
        }
    }
    let announce = effects.iter().any(|e| matches!(e, Effect::Store(..)));
    Plan { effects, announce }
}

/// Carries out a 260's [`Plan`]: the IO shell.
pub(crate) async fn on_lists_sync<S: Store>(conn: &Conn<S>, p: UserListsSync) -> Result<(), Close> {
    let store = &conn.shared.store;
    let user = conn.user().clone();
    let plan = plan(p);
    for effect in plan.effects {
        match effect {
            Effect::Send(ListKind::Friends) => {
                let entries = store.lists(&user).await?.friends.entries;
                conn.reply(FriendList { entries }).await?
            }
            Effect::Send(ListKind::Blocks) => {
                let entries = store.lists(&user).await?.blocks.entries;
                conn.reply(BlockList { entries }).await?
            }
            Effect::Store(kind, entries) => {
                let ts = store
                    .replace_list(&user, kind, entries.clone(), crate::now())
                    .await?;
                if kind == ListKind::Blocks {
                    conn.shared.directory.set_blocks(&user, &entries);
                }
                tracing::debug!(%user, ?kind, timestamp = %ts, "list uploaded");
            }
        }
    }
    if plan.announce {
        let lists = store.lists(&user).await?;
        let request = RequestUserListsSync {
            friends: lists.friends.timestamp,
            blocks: lists.blocks.timestamp,
        };
        for session in conn.shared.sessions.of_user(&user) {
            session.push(Outbound::packet(request.clone()));
        }
        // The user's devices on other nodes too; they re-read the block list as well.
        conn.shared.cluster.notify(crate::cluster::Notice::Lists {
            user: user.as_str().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    #[test]
    fn every_pair_of_flags_has_its_effects_friends_first() {
        use ListSync::{InSync, SendServerList, Upload};
        let up = |names: &[&str]| Upload(names.iter().map(|n| uid(n)).collect());
        let cases = [
            (InSync, InSync, vec![], false),
            (
                SendServerList,
                InSync,
                vec![Effect::Send(ListKind::Friends)],
                false,
            ),
            (
                SendServerList,
                SendServerList,
                vec![
                    Effect::Send(ListKind::Friends),
                    Effect::Send(ListKind::Blocks),
                ],
                false,
            ),
            (
                up(&["bob"]),
                SendServerList,
                vec![
                    Effect::Store(ListKind::Friends, vec![uid("bob")]),
                    Effect::Send(ListKind::Blocks),
                ],
                true,
            ),
            (
                InSync,
                up(&["eve", "eve", "mallory"]),
                vec![Effect::Store(
                    ListKind::Blocks,
                    vec![uid("eve"), uid("mallory")],
                )],
                true,
            ),
            (
                up(&[]),
                InSync,
                vec![Effect::Store(ListKind::Friends, vec![])],
                true,
            ),
        ];
        for (friends, blocks, effects, announce) in cases {
            let packet = UserListsSync { friends, blocks };
            assert_eq!(
                plan(packet.clone()),
                Plan { effects, announce },
                "{packet:?}"
            );
        }
    }

    #[test]
    fn repeated_entries_are_dropped_keeping_order() {
        let ids = |v: &[&str]| {
            v.iter()
                .map(|s| UserId::new(*s).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            dedup(ids(&["b", "a", "b", "c", "a"])),
            ids(&["b", "a", "c"])
        );
    }
}
