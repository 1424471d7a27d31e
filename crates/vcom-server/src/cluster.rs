//! Several nodes on one PostgreSQL database (`[cluster] nats_url`): NATS carries small
//! notices between them ("these users have new messages", "this user's lists changed",
//! a broadcast, an administrator's change), and each node acts on one by re-reading the
//! store, which holds the one record.
//!
//! NATS never holds the only copy of anything: a lost notice delays a delivery, never
//! loses it. Messages reach a session on a cluster node only through the store (the
//! session's writer catches up, as a session that fell behind does), so a device's
//! cursor never passes a message another node committed first; a sweep wakes every
//! local session now and then, and the directory and the login policy are re-read
//! periodically, so whatever a lost notice would have said arrives late, not never.
//! Without NATS (unreachable at start or later) a node keeps serving its own users,
//! logs a warning and retries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use vcom_protocol::{GroupExit, GroupId, RequestUserListsSync, ServerPacket, UserId};
use vcom_store::Store;

use crate::config::ClusterConfig;
use crate::inbound::Message;
use crate::server::Shared;
use crate::session::Outbound;

/// How often the sweep wakes local sessions to read what a lost notice did not announce.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Sessions woken per sweep, at most: the sweep costs a bounded number of store reads
/// per second, and a node with more sessions covers them over several sweeps.
const SWEEP_BATCH: usize = 256;
/// How often the directory and the login policy are re-read whole, whatever notices
/// said (a lost group, list or policy notice is made good by then).
const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// Notices waiting to be published; beyond it they are dropped (the sweep and the
/// periodic re-read make good what they would have said).
const OUTGOING: usize = 4096;
/// Users named in one wake-up notice, at most.
const WAKE_BATCH: usize = 512;
/// How long a publish may wait for the NATS client's buffer (full while NATS is away).
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);

/// Something other nodes must hear about. Each says what changed, not what the store
/// holds: a node that hears it re-reads the store. (A broadcast, which is not stored,
/// carries its text.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Notice {
    /// These users have new messages in the store.
    Wake { users: Vec<String> },
    /// The user's friend or block list changed: its devices get a fresh 259.
    Lists { user: String },
    /// The user exists now (a first login, the administrator's `user add`).
    User { user: String },
    /// The group changed (or was deleted); `removed`, if any, is told 526 with `exit`.
    Group {
        group: i32,
        removed: Option<String>,
        exit: i8,
    },
    /// The user was removed: unknown from now on, its sessions ended.
    UserRemoved { user: String },
    /// The user's key was reset: its sessions end.
    KeyReset { user: String },
    /// The blacklist or whitelist changed.
    Policy,
    /// A broadcast (263) to every online device.
    Broadcast { text: String },
}

/// A notice on the wire, with the node it came from (a node ignores its own).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(flatten)]
    notice: Notice,
}

/// This node's part in a cluster; inert on a single node.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// `None`: a single node.
    nats_url: Option<String>,
    node: Mutex<String>,
    subject: String,
    outgoing: Option<mpsc::Sender<Notice>>,
    incoming: Mutex<Option<mpsc::Receiver<Notice>>>,
    /// Whether this node hears the others (connected to NATS and subscribed).
    connected: tokio::sync::watch::Sender<bool>,
}

/// Whether a node hears the other nodes of its cluster: see [`Server::cluster_status`].
///
/// [`Server::cluster_status`]: crate::Server::cluster_status
#[derive(Debug, Clone)]
pub struct ClusterStatus(tokio::sync::watch::Receiver<bool>);

impl ClusterStatus {
    /// Whether the node is connected to NATS and subscribed to the cluster's notices
    /// (always false on a single node).
    pub fn is_connected(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the node is connected (for ever on a single node, or while NATS is
    /// away: bound it with a timeout).
    pub async fn connected(&mut self) {
        let _ = self.0.wait_for(|c| *c).await;
    }
}

impl Cluster {
    /// The cluster part of a node configured with `config`.
    pub(crate) fn new(config: &ClusterConfig) -> Cluster {
        let (outgoing, incoming) = match config.nats_url {
            Some(_) => {
                let (tx, rx) = mpsc::channel(OUTGOING);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        Cluster {
            nats_url: config.nats_url.clone(),
            node: Mutex::new(config.node_name.clone().unwrap_or_default()),
            subject: format!("{}.cluster", config.subject_prefix),
            outgoing,
            incoming: Mutex::new(incoming),
            connected: tokio::sync::watch::Sender::new(false),
        }
    }

    /// A view of whether this node hears the others.
    pub(crate) fn status(&self) -> ClusterStatus {
        ClusterStatus(self.connected.subscribe())
    }

    /// Whether this node is part of a cluster.
    pub(crate) fn enabled(&self) -> bool {
        self.outgoing.is_some()
    }

    /// Names the node after its host and port, unless the configuration named it.
    pub(crate) fn name_default(&self, port: u16) {
        let mut node = self.node.lock().unwrap_or_else(|p| p.into_inner());
        if node.is_empty() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "vcom".to_owned());
            *node = format!("{host}:{port}");
        }
    }

    fn node(&self) -> String {
        self.node.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Tells the other nodes, without waiting; a notice that finds the queue full is
    /// dropped (see the module: it costs a delay, not a loss).
    pub(crate) fn notify(&self, notice: Notice) {
        if let Some(tx) = &self.outgoing
            && tx.try_send(notice).is_err()
        {
            tracing::debug!("cluster notice queue full: notice dropped (the sweep covers it)");
        }
    }
}

/// What a message needs from the store before the directory can check it on a cluster
/// node: a recipient or a group that another node may have created since this node last
/// read the directory.
pub(crate) enum Lookup {
    User(UserId),
    Group(GroupId),
}

/// Whether the directory must learn something from the store before it checks
/// `message` (cluster nodes only: alone, the directory is never behind the store).
pub(crate) fn lookup_for<S>(
    shared: &Shared<S>,
    sender: &UserId,
    message: &Message,
) -> Option<Lookup> {
    if !shared.cluster.enabled() {
        return None;
    }
    match message {
        Message::Direct(p) if !shared.directory.knows(&p.recipient) => {
            Some(Lookup::User(p.recipient.clone()))
        }
        Message::Group(p)
            if !shared
                .directory
                .group(p.group)
                .is_some_and(|members| members.contains(sender)) =>
        {
            Some(Lookup::Group(p.group))
        }
        _ => None,
    }
}

/// Whether the directory must look `user` up in the store before it answers for it
/// (cluster nodes only).
pub(crate) fn lookup_user<S>(shared: &Shared<S>, user: &UserId) -> Option<Lookup> {
    (shared.cluster.enabled() && !shared.directory.knows(user)).then(|| Lookup::User(user.clone()))
}

/// Reads what [`lookup_for`] asked for into the directory. A store error leaves the
/// directory as it was (the message is then checked against what it holds).
pub(crate) async fn look_up<S: Store>(shared: &Shared<S>, lookup: Lookup) {
    match lookup {
        Lookup::User(user) => match shared.store.user(&user).await {
            Ok(Some(_)) => shared.directory.add_user(&user),
            Ok(None) => {}
            Err(e) => tracing::warn!(%user, error = %e, "could not look a recipient up"),
        },
        Lookup::Group(group) => {
            refresh_group(shared, group).await;
        }
    }
}

async fn refresh_group<S: Store>(shared: &Shared<S>, group: GroupId) -> Option<vcom_store::Group> {
    match shared.store.group(group).await {
        Ok(Some(g)) => {
            shared.directory.set_group(&g);
            Some(g)
        }
        Ok(None) => {
            shared.directory.remove_group(group);
            None
        }
        Err(e) => {
            tracing::warn!(%group, error = %e, "could not re-read a group");
            None
        }
    }
}

/// Wakes the local sessions of these users (but connection `except`) and tells the
/// other nodes: stored messages wait for them in the store.
pub(crate) fn wake<S>(shared: &Shared<S>, users: &[UserId], except: u64) {
    shared.sessions.catch_up(users, except);
    shared.cluster.notify(Notice::Wake {
        users: users.iter().map(|u| u.as_str().to_owned()).collect(),
    });
}

/// Connects to NATS (retrying with backoff for as long as the node runs), publishes this
/// node's notices, acts on the others', and runs the sweep and the periodic re-read.
/// Returns at shutdown.
pub(crate) async fn run<S: Store>(shared: Arc<Shared<S>>) {
    let cluster = &shared.cluster;
    let Some(url) = cluster.nats_url.clone() else {
        return;
    };
    let Some(mut outgoing) = cluster
        .incoming
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    else {
        return;
    };
    let node = cluster.node();
    let (events_tx, mut events) = mpsc::channel::<async_nats::Event>(16);
    let options = async_nats::ConnectOptions::new()
        .name(&node)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            // 100 ms doubling to 5 s: a NATS restart is noticed quickly, a long outage
            // costs little.
            let exp = u32::try_from(attempts.min(6)).unwrap_or(6);
            Duration::from_millis(100 * 2u64.pow(exp)).min(Duration::from_secs(5))
        })
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.try_send(event);
            }
        });
    let client = match options.connect(url.as_str()).await {
        Ok(client) => client,
        Err(e) => {
            // Only a malformed address gets here (connecting itself is retried).
            tracing::error!(%url, error = %e, "cluster.nats_url unusable: this node runs alone, catching up by the sweep");
            sweep_only(&shared).await;
            return;
        }
    };
    let mut subscriber = match client.subscribe(cluster.subject.clone()).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to the cluster's notices: catching up by the sweep");
            None
        }
    };
    tracing::info!(%node, %url, subject = %cluster.subject, "cluster node started");
    let mut connected = false;
    let warn_after = tokio::time::sleep(Duration::from_secs(3));
    tokio::pin!(warn_after);
    let mut warned = false;
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    reload.tick().await; // the directory was just loaded
    let mut swept = 0;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            Some(event) = events.recv() => match event {
                async_nats::Event::Connected => {
                    if !connected && warned {
                        tracing::info!(%url, "NATS reachable again: catching up");
                    }
                    connected = true;
                    // The subscription is re-sent on every connection; once the server
                    // answered a ping after it, this node hears every later notice.
                    let flushed = tokio::time::timeout(PUBLISH_TIMEOUT * 10, client.flush()).await;
                    if subscriber.is_some() && matches!(flushed, Ok(Ok(()))) {
                        cluster.connected.send_replace(true);
                        tracing::info!(%node, "cluster: connected to NATS");
                    }
                    // Whatever was said while this node was away: read it all again.
                    catch_up_all(&shared).await;
                }
                async_nats::Event::Disconnected => {
                    connected = false;
                    cluster.connected.send_replace(false);
                    warned = true;
                    tracing::warn!(%url, "lost NATS: serving this node's users, delivering from other nodes by the sweep, retrying");
                }
                other => tracing::debug!(event = %other, "NATS event"),
            },
            _ = &mut warn_after, if !connected && !warned => {
                warned = true;
                tracing::warn!(%url, "cannot reach NATS: serving this node's users, delivering from other nodes by the sweep, retrying");
            }
            Some(notice) = outgoing.recv() => {
                let mut batch = vec![notice];
                while batch.len() < WAKE_BATCH && let Ok(n) = outgoing.try_recv() {
                    batch.push(n);
                }
                for notice in coalesce(batch) {
                    publish(&client, &cluster.subject, &node, notice).await;
                }
            }
            Some(message) = next(&mut subscriber) => {
                match serde_json::from_slice::<Envelope>(&message.payload) {
                    Ok(envelope) if envelope.from == node => {}
                    Ok(envelope) => on_notice(&shared, envelope.notice).await,
                    Err(e) => tracing::warn!(error = %e, "unreadable cluster notice ignored"),
                }
            }
            _ = sweep.tick() => swept = sweep_once(&shared, swept),
            _ = reload.tick() => reload_all(&shared).await,
        }
    }
}

/// The next notice, or never without a subscription.
async fn next(subscriber: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match subscriber {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// A node whose NATS address is unusable still delivers what other nodes store.
async fn sweep_only<S: Store>(shared: &Shared<S>) {
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    let mut swept = 0;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = sweep.tick() => swept = sweep_once(shared, swept),
            _ = reload.tick() => reload_all(shared).await,
        }
    }
}

/// Many wake-ups become one (each user named once); everything else keeps its order.
fn coalesce(batch: Vec<Notice>) -> Vec<Notice> {
    let mut users: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut rest = Vec::new();
    for notice in batch {
        match notice {
            Notice::Wake { users: some } => {
                for user in some {
                    if seen.insert(user.clone()) {
                        users.push(user);
                    }
                }
            }
            other => rest.push(other),
        }
    }
    let mut out: Vec<Notice> = users
        .chunks(WAKE_BATCH)
        .map(|c| Notice::Wake { users: c.to_vec() })
        .collect();
    out.extend(rest);
    out
}

async fn publish(client: &async_nats::Client, subject: &str, node: &str, notice: Notice) {
    let envelope = Envelope {
        from: node.to_owned(),
        notice,
    };
    let payload = match serde_json::to_vec(&envelope) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cluster notice not encodable");
            return;
        }
    };
    match tokio::time::timeout(
        PUBLISH_TIMEOUT,
        client.publish(subject.to_owned(), payload.into()),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cluster notice not published"),
        Err(_) => tracing::debug!("cluster notice not published (NATS away)"),
    }
}

fn user_id(text: &str) -> Option<UserId> {
    UserId::new(text)
        .inspect_err(|e| tracing::warn!(error = %e, "cluster notice names an invalid user"))
        .ok()
}

/// Acts on another node's notice: re-reads what it names from the store.
async fn on_notice<S: Store>(shared: &Shared<S>, notice: Notice) {
    match notice {
        Notice::Wake { users } => {
            let users: Vec<UserId> = users.iter().filter_map(|u| user_id(u)).collect();
            shared.sessions.catch_up(&users, 0);
        }
        Notice::Lists { user } => {
            let Some(user) = user_id(&user) else { return };
            match shared.store.lists(&user).await {
                Ok(lists) => {
                    shared.directory.set_blocks(&user, &lists.blocks.entries);
                    let request = RequestUserListsSync {
                        friends: lists.friends.timestamp,
                        blocks: lists.blocks.timestamp,
                    };
                    for session in shared.sessions.of_user(&user) {
                        session.push(Outbound::packet(request.clone()));
                    }
                }
                Err(e) => tracing::warn!(%user, error = %e, "could not re-read a user's lists"),
            }
        }
        Notice::User { user } => {
            if let Some(user) = user_id(&user) {
                shared.directory.add_user(&user);
            }
        }
        Notice::Group {
            group,
            removed,
            exit,
        } => {
            let group = GroupId(group);
            if let Some(user) = removed.as_deref().and_then(user_id) {
                crate::groups::tell_removed(shared, group, &user, GroupExit::from_code(exit));
            }
            if let Some(current) = refresh_group(shared, group).await {
                crate::groups::announce(shared, &current);
            }
        }
        Notice::UserRemoved { user } => {
            if let Some(user) = user_id(&user) {
                shared.directory.remove_user(&user);
                shared.sessions.end_user(&user);
            }
        }
        Notice::KeyReset { user } => {
            if let Some(user) = user_id(&user) {
                shared.sessions.end_user(&user);
            }
        }
        Notice::Policy => reload_policy(shared).await,
        Notice::Broadcast { text } => {
            let packet = ServerPacket::from(vcom_protocol::Broadcast { text });
            let sessions = shared.sessions.all();
            tracing::info!(devices = sessions.len(), "broadcast from another node sent");
            for s in sessions {
                s.push(Outbound::packet(packet.clone()));
            }
        }
    }
}

/// Wakes the next [`SWEEP_BATCH`] local sessions (round robin from `from`); returns
/// where the next sweep starts.
fn sweep_once<S>(shared: &Shared<S>, from: usize) -> usize {
    let sessions = shared.sessions.all();
    if sessions.is_empty() {
        return 0;
    }
    let start = from % sessions.len();
    for session in sessions
        .iter()
        .cycle()
        .skip(start)
        .take(SWEEP_BATCH.min(sessions.len()))
    {
        session.catch_up();
    }
    start + SWEEP_BATCH.min(sessions.len())
}

/// After NATS was away: every local session reads what it missed, and the directory and
/// policy are read again.
async fn catch_up_all<S: Store>(shared: &Shared<S>) {
    for session in shared.sessions.all() {
        session.catch_up();
    }
    reload_all(shared).await;
}

async fn reload_all<S: Store>(shared: &Shared<S>) {
    let seen = shared.directory.changes();
    match crate::directory::Directory::load(&shared.store).await {
        Ok(fresh) => {
            if !shared.directory.replace(fresh, seen) {
                tracing::debug!("directory changed while it was re-read: kept, re-read later");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not re-read the directory"),
    }
    reload_policy(shared).await;
}

/// Rebuilds the login policy from the store and disconnects sessions it now refuses.
pub(crate) async fn reload_policy<S: Store>(shared: &Shared<S>) {
    let cache = match shared.store.policy().await {
        Ok(policy) => crate::policy::PolicyCache::new(&policy),
        Err(e) => {
            tracing::warn!(error = %e, "could not re-read the login policy");
            return;
        }
    };
    for s in shared.sessions.all() {
        let ip = s.addr.ip();
        if cache.user_blacklisted(s.user.as_str())
            || cache.ip_blacklisted(ip)
            || !cache.whitelisted(s.user.as_str(), ip)
        {
            tracing::info!(user = %s.user, addr = %s.addr, "session no longer allowed by policy: disconnecting");
            s.kill.cancel();
        }
    }
    *shared.policy.write().unwrap_or_else(|p| p.into_inner()) = cache;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_ups_are_merged_naming_each_user_once_and_other_notices_keep_their_order() {
        let wake = |users: &[&str]| Notice::Wake {
            users: users.iter().map(|u| (*u).to_owned()).collect(),
        };
        let out = coalesce(vec![
            wake(&["bob", "carol"]),
            Notice::Policy,
            wake(&["bob", "dave"]),
            Notice::KeyReset { user: "eve".into() },
        ]);
        assert_eq!(
            out,
            vec![
                wake(&["bob", "carol", "dave"]),
                Notice::Policy,
                Notice::KeyReset { user: "eve".into() },
            ]
        );
    }

    /// A periodic re-read never undoes a change this node made while it was reading:
    /// it is skipped, and the next one takes the change from the store.
    #[test]
    fn a_re_read_directory_replaces_only_when_nothing_changed_while_reading() {
        let directory = crate::directory::Directory::default();
        let bob = UserId::new("bob").unwrap();
        let seen = directory.changes();
        directory.add_user(&bob); // a login while the store was read

        assert!(!directory.replace(crate::directory::Directory::default(), seen));
        assert!(directory.knows(&bob));

        let seen = directory.changes();
        assert!(directory.replace(crate::directory::Directory::default(), seen));
        assert!(
            !directory.knows(&bob),
            "what the store says, when nothing changed"
        );
    }

    #[test]
    fn a_notice_on_the_wire_names_its_node_and_reads_back_the_same() {
        let envelope = Envelope {
            from: "node-a".into(),
            notice: Notice::Group {
                group: 7,
                removed: Some("bob".into()),
                exit: 1,
            },
        };
        let bytes = serde_json::to_vec(&envelope).unwrap();
        let back: Envelope = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.from, "node-a");
        assert_eq!(back.notice, envelope.notice);
    }
}
