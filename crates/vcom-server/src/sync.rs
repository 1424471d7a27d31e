//! Friend and block list sync (259-262), `docs/protocol.md`.
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

pub(crate) async fn on_lists_sync<S: Store>(conn: &Conn<S>, p: UserListsSync) -> Result<(), Close> {
    let store = &conn.shared.store;
    let user = conn.user().clone();
    let mut uploaded = false;
    for (block, kind) in [(p.friends, ListKind::Friends), (p.blocks, ListKind::Blocks)] {
        match block {
            ListSync::InSync => {}
            ListSync::SendServerList => {
                let lists = store.lists(&user).await?;
                match kind {
                    ListKind::Friends => {
                        conn.reply(FriendList {
                            entries: lists.friends.entries,
                        })
                        .await?
                    }
                    ListKind::Blocks => {
                        conn.reply(BlockList {
                            entries: lists.blocks.entries,
                        })
                        .await?
                    }
                }
            }
            ListSync::Upload(entries) => {
                let entries = dedup(entries);
                let ts = store
                    .replace_list(&user, kind, entries.clone(), crate::now())
                    .await?;
                if kind == ListKind::Blocks {
                    conn.shared.directory.set_blocks(&user, &entries);
                }
                tracing::debug!(%user, ?kind, timestamp = %ts, "list uploaded");
                uploaded = true;
            }
        }
    }
    if uploaded {
        let lists = store.lists(&user).await?;
        let request = RequestUserListsSync {
            friends: lists.friends.timestamp,
            blocks: lists.blocks.timestamp,
        };
        for session in conn.shared.sessions.of_user(&user) {
            session.push(Outbound::Packet(request.clone().into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
