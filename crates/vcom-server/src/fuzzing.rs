//! The server's per-connection state machines driven by arbitrary input, in process: no
//! socket, store or clock. Behind the fuzz target `server` (`fuzz/`) and the replay of
//! its corpus in `tests/tests/fuzz_regressions.rs`; compiled only with the `fuzzing`
//! feature.
//!
//! [`connections`] reads its input as a script for a small world: the server's rules,
//! then logins (each run through `login::Login` and answered from an in-memory
//! store and registry), packets from the logged-in connections (each through
//! `inbound::Inbound`, then, as the reader does, through the list sync plan or
//! the transfer `transfer::Table`), relays that succeed or fail, dropped
//! connections, and a fake clock that moves and ticks. Every answer is compared with a
//! model written from `docs/protocol.md`'s rules: the login's questions and verdict in
//! the documented order, each packet's step, the sync plan, and every effect, data
//! decision and violation of the transfer table (packets, recipients and order, the log
//! of each ended transfer). A difference or a panic is a finding.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use vcom_protocol::{
    AbortReason, ClientPacket, ConnectionRequest, Decoded, DeviceId, FileChunk, FileSize,
    FileTransferAbort, FileTransferAccept, FileTransferComplete, FileTransferOffer,
    FileTransferRequest, GroupId, Limits, ListSync, MessageKind, MessageTag, Ping, Pong, Receipt,
    SendGroupMessage, SendUserMessage, ServerPacket, Timestamp, TransferId, UserId, UserListsSync,
};
use vcom_store::{
    KeyFingerprint, ListKind, LoginRecord, MessageId, Policy, PolicyEntry, UserRecord,
};

use crate::config::{AuthMode, Registration};
use crate::inbound::{self, Inbound, Message};
use crate::login::{self, Facts, Input, Login, Rules};
use crate::policy::PolicyCache;
use crate::sync;
use crate::throttle::{Throttle, ThrottleRules};
use crate::transfer::{self, Data, Effect, Ended, Peer, RelayFailure, Table, Violation};

/// What one script reached, so that tests can check their seeds go where they mean to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reached {
    /// Logins accepted.
    pub logins: usize,
    /// The code of each login refused, in order.
    pub denied: Vec<i8>,
    /// Packets that closed their connection (an inbound rule or a transfer violation).
    pub closed_by_packet: usize,
    /// Transfers completed.
    pub completed: usize,
    /// The reason of each transfer aborted, in order.
    pub aborted: Vec<i32>,
    /// File offers refused for coming faster than the user's offers per minute.
    pub rate_limited: usize,
}

/// Runs one script (any bytes) against the login, inbound and transfer state machines
/// and panics on the first answer that breaks the documented rules.
pub fn connections(data: &[u8]) -> Reached {
    let mut src = Src { data, pos: 0 };
    let mut world = World::new(&mut src);
    // Bounded: each operation reads at least one byte, and a script runs at most this
    // many (the fuzzer's inputs are short anyway).
    for _ in 0..2048 {
        if src.is_empty() {
            break;
        }
        world.step(&mut src);
        world.check_table();
    }
    // Every connection ends: each transfer ends with it, and the table is empty.
    let open: Vec<u64> = world
        .conns
        .iter()
        .filter(|c| c.open)
        .map(|c| c.dev.conn)
        .collect();
    for conn in open {
        world.close(conn);
    }
    world.check_table();
    assert_eq!(world.table.len(), 0, "transfers outlive every connection");
    world.reached
}

/// The script's bytes; reads past the end give zeros.
struct Src<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Src<'_> {
    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[usize::from(self.u8()) % from.len()].clone()
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos = start + n;
        &self.data[start..end]
    }
}

const NAMES: [&str; 4] = ["alice", "bob", "carol", "dave"];
const KEYS: [Option<KeyFingerprint>; 4] = [
    None,
    Some(KeyFingerprint([1; 32])),
    Some(KeyFingerprint([2; 32])),
    Some(KeyFingerprint([3; 32])),
];
const PASSWORD: &[u8] = b"sesame";
const INVITE: &[u8] = b"invite-1";

fn ips() -> [IpAddr; 6] {
    [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    ]
}

/// Policy entries and which of [`ips`] each matches (by index); unparsable addresses
/// match nothing.
fn policy_entries() -> [(PolicyEntry, &'static [usize]); 9] {
    let ip = ip_entry;
    let user = |s: &str| PolicyEntry::User(s.to_owned());
    [
        (ip("192.0.2.1"), &[0]),
        (ip("192.0.2.0/24"), &[0, 1]),
        (ip("2001:db8::/64"), &[3, 4]),
        (ip("10.0.0.0/8"), &[5]),
        (ip("not an address"), &[]),
        (ip("192.0.2.1/33"), &[]),
        (user("alice"), &[]),
        (user("bob"), &[]),
        (user("mallory"), &[]),
    ]
}

fn ip_entry(text: &str) -> PolicyEntry {
    PolicyEntry::Ip(text.to_owned())
}

fn uid(name: &str) -> UserId {
    match UserId::new(name) {
        Ok(id) => id,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// A connection as the transfer table sees it.
#[derive(Debug, Clone, PartialEq)]
struct Dev {
    conn: u64,
    user: UserId,
    device: DeviceId,
}

impl Peer for Dev {
    fn conn(&self) -> u64 {
        self.conn
    }

    fn user(&self) -> &UserId {
        &self.user
    }

    fn device(&self) -> DeviceId {
        self.device
    }
}

/// A logged-in connection: the machine under test and the model's view of it.
struct Conn {
    dev: Dev,
    ip: IpAddr,
    inbound: Inbound,
    ext: bool,
    /// The model: the 516 waiting for its message.
    tag: Option<i64>,
    /// The highest sequence number the writer flushed to it.
    sent: i64,
    open: bool,
}

/// The model of one transfer in progress.
#[derive(Debug, Clone)]
struct Model {
    sender: Dev,
    recipient: UserId,
    size: FileSize,
    name: String,
    /// The devices offered the file (before an accept).
    offered: Vec<Dev>,
    streaming: Option<Dev>,
    relayed: u64,
    started_at: Timestamp,
    last_activity: u64,
}

impl Model {
    fn recipients(&self) -> Vec<Dev> {
        match &self.streaming {
            Some(d) => vec![d.clone()],
            None => self.offered.clone(),
        }
    }

    fn is_recipient(&self, conn: u64) -> bool {
        self.recipients().iter().any(|d| d.conn == conn)
    }

    fn ended(&self, id: TransferId, outcome: Option<AbortReason>) -> Ended {
        Ended {
            id,
            sender: self.sender.user.clone(),
            recipient: self.recipient.clone(),
            size: self.size,
            name: self.name.clone(),
            relayed: self.relayed,
            started_at: self.started_at,
            outcome,
        }
    }
}

/// A 273 or 274 handed to the relay, not yet through (its sender reads nothing else).
struct Relay {
    conn: u64,
    id: TransferId,
    completing: bool,
}

struct World {
    base: Instant,
    ms: u64,
    // The rules.
    policy: Policy,
    cache: PolicyCache,
    password: Option<&'static [u8]>,
    registration: Registration,
    auth: AuthMode,
    max_user_id_len: usize,
    /// Uses left of the one invitation, [`INVITE`] (with `registration = "token"`).
    invite_uses: u32,
    throttle: Throttle,
    max_wait: Duration,
    max_connections: usize,
    max_per_ip: usize,
    rules: transfer::Rules,
    idle: Duration,
    // The store and the registry.
    users: HashMap<UserId, Option<KeyFingerprint>>,
    blocks: HashMap<UserId, Vec<UserId>>,
    devices: HashMap<DeviceId, UserId>,
    next_device: i32,
    conns: Vec<Conn>,
    next_conn: u64,
    // The transfers.
    table: Table<Dev>,
    models: HashMap<TransferId, Model>,
    issued: Vec<TransferId>,
    relays: Vec<Relay>,
    /// Each user's offers: the time (from the start) its budget is spent until.
    offer_budget: HashMap<UserId, Duration>,
    reached: Reached,
}

impl World {
    fn new(src: &mut Src<'_>) -> World {
        let flags = src.u8();
        let entries = policy_entries();
        let mut policy = Policy::default();
        for _ in 0..src.u8() % 4 {
            policy.blacklist.push(src.pick(&entries).0);
        }
        for _ in 0..src.u8() % 4 {
            policy.whitelist.push(src.pick(&entries).0);
        }
        let max_wait = if flags & 8 == 0 {
            Duration::from_secs(300)
        } else {
            Duration::ZERO
        };
        let free_attempts = u32::from(src.u8() % 4);
        let max_user_id_len = src.pick(&[64, 1, 5, 1024]);
        let max_connections = 1 + usize::from(src.u8() % 8);
        let max_per_ip = usize::from(src.u8() % 4);
        let rules = transfer::Rules {
            max_file_size: src.pick(&[1, 10, 1024, i32::MAX as u64]),
            max_transfers_per_user: 1 + usize::from(src.u8() % 3),
            // Flags bits 4-5: no limit, or a budget of 120, 2 or 1 offers a minute.
            offers_per_minute: [0, 120, 2, 1][usize::from((flags >> 4) & 3)],
        };
        let idle = Duration::from_millis(1 + u64::from(src.u16()));
        let max_logged = src.pick(&[0, 41, i32::MAX - 2, i32::MAX, -5]);
        // Some users are known from the start, with or without a key.
        let mut users = HashMap::new();
        let known = src.u8();
        for (i, name) in NAMES.iter().enumerate() {
            if known & (1 << i) != 0 {
                users.insert(uid(name), KEYS[(usize::from(known >> 4) + i) % KEYS.len()]);
            }
        }
        World {
            base: Instant::now(),
            ms: 0,
            cache: PolicyCache::new(&policy),
            policy,
            password: (flags & 1 != 0).then_some(PASSWORD),
            registration: if flags & 64 != 0 {
                Registration::Token
            } else if flags & 2 == 0 {
                Registration::Open
            } else {
                Registration::Closed
            },
            invite_uses: 1,
            auth: if flags & 4 == 0 {
                AuthMode::Key
            } else {
                AuthMode::Open
            },
            max_user_id_len,
            throttle: Throttle::new(ThrottleRules {
                free_attempts,
                max_wait,
            }),
            max_wait,
            max_connections,
            max_per_ip,
            rules,
            idle,
            users,
            blocks: HashMap::new(),
            devices: HashMap::new(),
            next_device: 1,
            conns: Vec::new(),
            next_conn: 1,
            table: Table::new(max_logged),
            models: HashMap::new(),
            issued: Vec::new(),
            relays: Vec::new(),
            offer_budget: HashMap::new(),
            reached: Reached::default(),
        }
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.ms)
    }

    fn conn(&self, conn: u64) -> &Conn {
        match self.conns.iter().find(|c| c.dev.conn == conn) {
            Some(c) => c,
            None => panic!("no connection {conn}"),
        }
    }

    fn conn_mut(&mut self, conn: u64) -> &mut Conn {
        match self.conns.iter_mut().find(|c| c.dev.conn == conn) {
            Some(c) => c,
            None => panic!("no connection {conn}"),
        }
    }

    /// An open connection chosen by the script, if any is open.
    fn pick_open(&self, src: &mut Src<'_>) -> Option<u64> {
        let open: Vec<u64> = self
            .conns
            .iter()
            .filter(|c| c.open)
            .map(|c| c.dev.conn)
            .collect();
        (!open.is_empty()).then(|| src.pick(&open))
    }

    fn step(&mut self, src: &mut Src<'_>) {
        match src.u8() % 8 {
            0 => self.login(src),
            1..=3 => {
                if let Some(conn) = self.pick_open(src) {
                    let packet = self.packet(src, conn);
                    self.receive(src, conn, packet);
                }
            }
            4 => {
                // Raw bytes through the decoder, then to a connection.
                let len = usize::from(src.u8());
                let limits = Limits::default();
                let bytes = src.take(len).to_vec();
                if let Ok(Decoded::Complete { packet, .. }) = ClientPacket::decode(&bytes, &limits)
                    && let Some(conn) = self.pick_open(src)
                {
                    self.receive(src, conn, packet);
                }
            }
            5 => {
                if !self.relays.is_empty() {
                    let i = usize::from(src.u8()) % self.relays.len();
                    let relay = self.relays.remove(i);
                    let outcome = src.u8() % 4;
                    self.relay_done(relay, outcome);
                }
            }
            6 => {
                if let Some(conn) = self.pick_open(src) {
                    self.close(conn);
                }
            }
            _ => {
                let by = src.pick(&[0u64, 1, 10, 100, 1000, 60_000]);
                self.ms += by + u64::from(src.u8());
                if src.bool() {
                    let now = self.now();
                    let effects = self.table.tick(now, self.idle);
                    let expected = self.model_tick();
                    assert_eq!(effects, expected, "tick at {} ms", self.ms);
                    self.note(&effects);
                }
                if let Some(conn) = self.pick_open(src) {
                    // The writer flushed messages through this sequence number.
                    let seq = src.pick(&[1i64, 2, 5, 100, i64::MAX]);
                    let c = self.conn_mut(conn);
                    c.sent = c.sent.max(seq);
                }
            }
        }
    }

    // ---------------------------------------------------------------- login

    fn login(&mut self, src: &mut Src<'_>) {
        let choice = src.u8();
        let user = if choice < 200 {
            NAMES[usize::from(choice) % NAMES.len()].to_owned()
        } else {
            let len = usize::from(src.u8() % 8);
            String::from_utf8_lossy(src.take(len)).into_owned()
        };
        let mut known_devices: Vec<DeviceId> = self.devices.keys().copied().collect();
        known_devices.sort_unstable();
        let device = match src.u8() % 8 {
            0..=2 => DeviceId::NEW,
            3 if !known_devices.is_empty() => src.pick(&known_devices),
            _ => src.pick(&[DeviceId(0), DeviceId(1), DeviceId(2), DeviceId(i32::MAX)]),
        };
        let password = match src.u8() % 4 {
            0 => Bytes::from_static(PASSWORD),
            1 => Bytes::new(),
            2 => Bytes::from_static(b"nope"),
            _ => Bytes::from_static(INVITE),
        };
        let ip = src.pick(&ips());
        let key = src.pick(&KEYS);
        let ext = src.bool();
        let raced = src.u8().is_multiple_of(8);
        let full = src.u8().is_multiple_of(8);
        let request = ConnectionRequest {
            user,
            device,
            password,
        };
        let now = self.now();
        let waiting = self.throttle.wait(ip, now).is_some();
        let capacity = !full && self.has_room(ip);
        let expected = self.expected_login(&request, ip, key, waiting, capacity, raced);

        let rules = Rules {
            policy: &self.cache,
            password: self.password,
            registration: self.registration,
            auth: self.auth,
            max_user_id_len: self.max_user_id_len,
        };
        let facts = Facts {
            request: &request,
            ip,
            key,
            now,
            known: UserId::new(request.user.clone()).is_ok_and(|u| self.users.contains_key(&u)),
        };
        let (mut machine, mut step) = match Login::start(&rules, &facts, &self.throttle) {
            Ok(started) => started,
            Err(code) => {
                assert_eq!(
                    (Vec::new(), login::Step::Deny(code)),
                    expected,
                    "{request:?} from {ip}"
                );
                self.reached.denied.push(code.code());
                self.check_throttle(ip, now);
                return;
            }
        };
        let mut steps = Vec::new();
        let last = loop {
            assert!(
                steps.len() <= 4,
                "a login asks for more than four facts: {steps:?}"
            );
            let input = match &step {
                login::Step::ReadUser(user) => {
                    Input::User(self.users.get(user).map(|key| UserRecord {
                        id: user.clone(),
                        key: *key,
                        created_at: Timestamp(1),
                    }))
                }
                login::Step::ReadDeviceOwner(device) => {
                    Input::DeviceOwner(self.devices.get(device).cloned())
                }
                login::Step::Reserve => Input::Reserved(capacity),
                login::Step::Record { .. } if raced => Input::Recorded(LoginRecord::KeyConflict),
                login::Step::Record {
                    invite: Some(invite),
                    ..
                } if *invite != login::invite_hash(INVITE) || self.invite_uses == 0 => {
                    Input::Recorded(LoginRecord::InviteRefused)
                }
                login::Step::Record {
                    user,
                    key,
                    device,
                    invite,
                } => {
                    if invite.is_some() {
                        self.invite_uses -= 1;
                    }
                    Input::Recorded(self.record(user, *key, *device))
                }
                login::Step::Deny(_) | login::Step::Accept { .. } => break step,
            };
            steps.push(step);
            step = machine.on(input);
        };
        assert_eq!((steps, last.clone()), expected, "{request:?} from {ip}");
        self.check_throttle(ip, now);
        if let login::Step::Deny(code) = last {
            self.reached.denied.push(code.code());
        }
        if let login::Step::Accept { user, device } = last {
            self.reached.logins += 1;
            let conn = self.next_conn;
            self.next_conn += 1;
            self.conns.push(Conn {
                dev: Dev { conn, user, device },
                ip,
                inbound: Inbound::new(ext),
                ext,
                tag: None,
                sent: 0,
                open: true,
            });
        }
    }

    fn check_throttle(&self, ip: IpAddr, now: Instant) {
        if let Some(wait) = self.throttle.wait(ip, now) {
            assert!(
                wait <= self.max_wait,
                "{ip} waits {wait:?}, past the ceiling"
            );
        }
    }

    /// Whether the limits leave a place for a connection from `ip`.
    fn has_room(&self, ip: IpAddr) -> bool {
        let open = self.conns.iter().filter(|c| c.open);
        let from_ip = open.clone().filter(|c| c.ip == ip).count();
        open.count() < self.max_connections && (self.max_per_ip == 0 || from_ip < self.max_per_ip)
    }

    /// The store's side of a login that passed every check.
    fn record(
        &mut self,
        user: &UserId,
        key: Option<KeyFingerprint>,
        device: DeviceId,
    ) -> LoginRecord {
        let bound = self.users.entry(user.clone()).or_insert(None);
        if bound.is_none() {
            *bound = key;
        }
        let new_device = device == DeviceId::NEW;
        let device = if new_device {
            let issued = DeviceId(self.next_device);
            self.next_device += 1;
            issued
        } else {
            device
        };
        self.devices.insert(device, user.clone());
        LoginRecord::Recorded {
            device,
            new_device,
            // The device cap is the store's; the login machine does not look at it.
            retired: Vec::new(),
        }
    }

    /// The login's questions and verdict, by `docs/protocol.md`'s order of checks.
    fn expected_login(
        &self,
        request: &ConnectionRequest,
        ip: IpAddr,
        key: Option<KeyFingerprint>,
        waiting: bool,
        capacity: bool,
        raced: bool,
    ) -> (Vec<login::Step>, login::Step) {
        use login::Step;
        use vcom_protocol::DenyCode::*;
        let deny = |steps, code| (steps, Step::Deny(code));
        let Ok(user) = UserId::with_max_len(request.user.clone(), self.max_user_id_len) else {
            return deny(Vec::new(), InvalidUser);
        };
        let ip_index = ips().iter().position(|i| *i == ip);
        let matches = |list: &[PolicyEntry]| {
            let entries = policy_entries();
            let mut by_user = false;
            let mut by_ip = false;
            for entry in list {
                match entry {
                    PolicyEntry::User(u) => by_user |= *u == user.as_str(),
                    PolicyEntry::Ip(_) => {
                        let Some((_, hits)) = entries.iter().find(|(e, _)| e == entry) else {
                            panic!("{entry:?} is not one of the harness's entries");
                        };
                        by_ip |= ip_index.is_some_and(|i| hits.contains(&i));
                    }
                }
            }
            (by_user, by_ip)
        };
        let (black_user, black_ip) = matches(&self.policy.blacklist);
        let (white_user, white_ip) = matches(&self.policy.whitelist);
        if black_user {
            return deny(Vec::new(), UserBlacklisted);
        }
        if black_ip {
            return deny(Vec::new(), IpBlacklisted);
        }
        // Unparsable addresses are skipped when the lists are read (`policy.rs`): a
        // whitelist of nothing else admits everyone.
        let unparsable = [ip_entry("not an address"), ip_entry("192.0.2.1/33")];
        let whitelisting = self
            .policy
            .whitelist
            .iter()
            .any(|e| !unparsable.contains(e));
        if whitelisting && !white_user && !white_ip {
            return deny(Vec::new(), NotWhitelisted);
        }
        let known = self.users.get(&user);
        // A newcomer with `registration = "token"` brings an invitation in the password
        // field instead of the server password; an address that waits is not heard.
        let mut invite = None;
        if self.registration == Registration::Token && known.is_none() {
            if request.password.is_empty() || waiting {
                return deny(Vec::new(), InvalidUser);
            }
            invite = Some(login::invite_hash(&request.password));
        } else if let Some(expected) = self.password
            && (waiting || request.password.as_ref() != expected)
        {
            return deny(Vec::new(), WrongPassword);
        }
        let mut steps = vec![Step::ReadUser(user.clone())];
        if known.is_none()
            && (self.registration == Registration::Closed
                || (self.registration == Registration::Token && invite.is_none()))
        {
            return deny(steps, InvalidUser);
        }
        let mut bind = None;
        if self.auth == AuthMode::Key {
            let Some(key) = key else {
                return deny(steps, KeyMismatch);
            };
            if known.copied().flatten().is_some_and(|bound| bound != key) {
                return deny(steps, KeyMismatch);
            }
            bind = Some(key);
        }
        if request.device != DeviceId::NEW {
            steps.push(Step::ReadDeviceOwner(request.device));
            if self.devices.get(&request.device) != Some(&user) {
                return deny(steps, UnknownDevice);
            }
        }
        steps.push(Step::Reserve);
        if !capacity {
            return deny(steps, ServerFull);
        }
        steps.push(Step::Record {
            user: user.clone(),
            key: bind,
            device: request.device,
            invite,
        });
        if raced {
            return deny(steps, KeyMismatch);
        }
        if invite.is_some_and(|i| i != login::invite_hash(INVITE) || self.invite_uses == 0) {
            return deny(steps, InvalidUser);
        }
        let device = if request.device == DeviceId::NEW {
            DeviceId(self.next_device)
        } else {
            request.device
        };
        (steps, Step::Accept { user, device })
    }

    // ---------------------------------------------------------------- packets

    /// A packet for connection `conn`, mostly about the users and transfers in play.
    fn packet(&self, src: &mut Src<'_>, conn: u64) -> ClientPacket {
        let name = |src: &mut Src<'_>| uid(src.pick(&NAMES));
        let list = |src: &mut Src<'_>| match src.u8() % 3 {
            0 => ListSync::InSync,
            1 => ListSync::SendServerList,
            _ => ListSync::Upload((0..src.u8() % 5).map(|_| name(src)).collect()),
        };
        let mut ids: Vec<TransferId> = self.issued.clone();
        ids.extend([
            TransferId(0),
            TransferId(1),
            TransferId(-1),
            TransferId(i32::MAX),
        ]);
        let transfer = src.pick(&ids);
        let data =
            |src: &mut Src<'_>| Bytes::from(vec![0u8; src.pick(&[0usize, 1, 2, 3, 5, 10, 1024])]);
        match src.u8() % 13 {
            0 => ConnectionRequest {
                user: src.pick(&NAMES).to_owned(),
                device: DeviceId::NEW,
                password: Bytes::new(),
            }
            .into(),
            1 => UserListsSync {
                friends: list(src),
                blocks: list(src),
            }
            .into(),
            2 => SendUserMessage {
                recipient: name(src),
                sent_at: Timestamp(1),
                kind: MessageKind::Text,
                data: data(src),
            }
            .into(),
            3 => SendGroupMessage {
                group: GroupId(i32::from(src.u8())),
                sent_at: Timestamp(1),
                kind: MessageKind::Image,
                data: data(src),
            }
            .into(),
            4 => {
                let bytes = src.pick(&[1u64, 2, 3, 10, 1024, 1025, i32::MAX as u64]);
                let Some(size) = FileSize::new(bytes) else {
                    panic!("{bytes} is a valid file size");
                };
                FileTransferRequest {
                    recipient: name(src),
                    size,
                    name: src.pick(&["f", "a.txt", "..", "x/y"]).to_owned(),
                }
                .into()
            }
            5 => FileTransferAbort {
                transfer,
                reason: AbortReason::from_code(i32::from(src.u8() % 10)),
            }
            .into(),
            6 => FileTransferAccept { transfer }.into(),
            7 => FileChunk {
                transfer,
                data: data(src),
            }
            .into(),
            8 => FileTransferComplete { transfer }.into(),
            9 => Ping {
                nonce: i64::from(src.u8()),
            }
            .into(),
            10 => Pong { nonce: 0 }.into(),
            11 => {
                let sent = self.conn(conn).sent;
                let through = src.pick(&[
                    i64::MIN,
                    -1,
                    0,
                    1,
                    2,
                    sent,
                    sent.saturating_add(1),
                    i64::MAX,
                ]);
                Receipt { through }.into()
            }
            _ => MessageTag {
                client_id: i64::from(src.u8()),
            }
            .into(),
        }
    }

    /// What the reader does with one packet from `conn`.
    fn receive(&mut self, src: &mut Src<'_>, conn: u64, packet: ClientPacket) {
        if self.relays.iter().any(|r| r.conn == conn) {
            // Its reader waits for room in a recipient's chunk queue.
            return;
        }
        let c = self.conn_mut(conn);
        let sent = c.sent;
        let step = c.inbound.on(packet.clone(), sent);
        let expected = expected_step(c, &packet);
        assert_eq!(step, expected, "{packet:?} on connection {conn}");
        match step {
            inbound::Step::Confirm(MessageId(through)) => {
                assert!(
                    (1..=sent).contains(&through),
                    "confirms {through} of {sent}"
                );
            }
            inbound::Step::Close(_) => {
                self.reached.closed_by_packet += 1;
                self.close(conn);
            }
            inbound::Step::InOrder(packet) => self.handle(src, conn, packet),
            inbound::Step::Store(..) | inbound::Step::Nothing => {}
        }
    }

    /// A packet handled in order: list sync and transfers.
    fn handle(&mut self, src: &mut Src<'_>, conn: u64, packet: ClientPacket) {
        let dev = self.conn(conn).dev.clone();
        let now = self.now();
        let result = match packet {
            ClientPacket::UserListsSync(p) => {
                self.lists_sync(&dev.user, p);
                Ok(())
            }
            ClientPacket::FileTransferRequest(p) => {
                self.request(dev, p);
                Ok(())
            }
            ClientPacket::FileTransferAccept(p) => {
                let result = self.table.accept(&dev, p.transfer, now);
                let expected = self.model_accept(&dev, p.transfer);
                assert_eq!(result, expected, "272 for {} from {conn}", p.transfer);
                result.map(|effects| self.note(&effects))
            }
            ClientPacket::FileTransferAbort(p) => {
                let result = self.table.abort(&dev, p.transfer);
                let expected = self.model_abort(&dev, p.transfer);
                assert_eq!(result, expected, "270 for {} from {conn}", p.transfer);
                result.map(|effects| self.note(&effects))
            }
            ClientPacket::FileChunk(p) => {
                let len = p.data.len() as u64;
                let result = self.table.chunk(&dev, p.transfer, len, now);
                self.data(src, &dev, p.transfer, len, false, result)
            }
            ClientPacket::FileTransferComplete(p) => {
                let result = self.table.complete(&dev, p.transfer, now);
                self.data(src, &dev, p.transfer, 0, true, result)
            }
            // Group requests are answered from the directory (see `groups`, tested there),
            // outside these state machines.
            ClientPacket::Ping(_)
            | ClientPacket::Pong(_)
            | ClientPacket::GroupCreate(_)
            | ClientPacket::GroupRename(_)
            | ClientPacket::GroupAddMember(_)
            | ClientPacket::GroupRemoveMember(_)
            | ClientPacket::GroupLeave(_) => Ok(()),
            other => panic!("{} ({}) handled in order", other.name(), other.id()),
        };
        if result.is_err() {
            // A violation closes the connection that sent it.
            self.reached.closed_by_packet += 1;
            self.close(conn);
        }
    }

    fn lists_sync(&mut self, user: &UserId, p: UserListsSync) {
        let plan = sync::plan(p.clone());
        let mut expected = Vec::new();
        for (block, kind) in [(p.friends, ListKind::Friends), (p.blocks, ListKind::Blocks)] {
            match block {
                ListSync::InSync => {}
                ListSync::SendServerList => expected.push(sync::Effect::Send(kind)),
                ListSync::Upload(entries) => {
                    let mut seen = HashSet::new();
                    let unique: Vec<UserId> = entries
                        .into_iter()
                        .filter(|e| seen.insert(e.clone()))
                        .collect();
                    expected.push(sync::Effect::Store(kind, unique));
                }
            }
        }
        let announce = expected
            .iter()
            .any(|e| matches!(e, sync::Effect::Store(..)));
        assert_eq!(plan.effects, expected);
        assert_eq!(plan.announce, announce);
        for effect in plan.effects {
            if let sync::Effect::Store(ListKind::Blocks, entries) = effect {
                self.blocks.insert(user.clone(), entries);
            }
        }
    }

    // ---------------------------------------------------------------- transfers

    fn request(&mut self, sender: Dev, p: FileTransferRequest) {
        let id = self.table.next_id();
        assert!(id.get() > 0, "transfer identifier {id}");
        assert!(!self.models.contains_key(&id), "{id} is still in progress");
        self.issued.push(id);
        let known = self.users.contains_key(&p.recipient);
        let blocks_sender = self
            .blocks
            .get(&p.recipient)
            .is_some_and(|b| b.contains(&sender.user));
        let sessions: Vec<Dev> = self
            .conns
            .iter()
            .filter(|c| c.open && c.dev.user == p.recipient)
            .map(|c| c.dev.clone())
            .collect();
        let at = Timestamp(self.ms as i64);
        let request = transfer::Request {
            id,
            sender: sender.clone(),
            packet: p.clone(),
            at,
        };
        let recipient = transfer::Recipient {
            known,
            blocks_sender,
            sessions: sessions.clone(),
        };
        let effects = self
            .table
            .request(request, recipient, self.rules, self.now());
        if !self.within_offer_rate(&sender.user) {
            // Refused before it is a transfer at all: not logged.
            let expected = vec![Effect::Send(
                sender.clone(),
                abort(id, AbortReason::NotAllowed),
            )];
            assert_eq!(
                effects, expected,
                "268 past the offer rate, answered as {id}"
            );
            self.reached.rate_limited += 1;
            return;
        }

        let devices: Vec<Dev> = sessions
            .into_iter()
            .filter(|d| d.conn != sender.conn)
            .collect();
        let sending = self
            .models
            .values()
            .filter(|m| m.sender.user == sender.user)
            .count();
        let refusal = if p.size.bytes() > self.rules.max_file_size {
            Some(AbortReason::TooLarge)
        } else if sending >= self.rules.max_transfers_per_user || !known || blocks_sender {
            Some(AbortReason::NotAllowed)
        } else if devices.is_empty() {
            Some(AbortReason::RecipientOffline)
        } else {
            None
        };
        let model = Model {
            sender: sender.clone(),
            recipient: p.recipient,
            size: p.size,
            name: p.name,
            offered: devices.clone(),
            streaming: None,
            relayed: 0,
            started_at: at,
            last_activity: self.ms,
        };
        let expected = match refusal {
            Some(reason) => vec![
                Effect::Send(sender.clone(), abort(id, reason)),
                Effect::Log(model.ended(id, Some(reason))),
            ],
            None => {
                let offer = ServerPacket::from(FileTransferOffer {
                    sender: sender.user.clone(),
                    size: model.size,
                    name: model.name.clone(),
                    transfer: id,
                });
                let sends = devices
                    .iter()
                    .map(|d| Effect::Send(d.clone(), offer.clone()));
                let sends = sends.collect();
                self.models.insert(id, model);
                sends
            }
        };
        assert_eq!(effects, expected, "268 answered as {id}");
        self.note(&effects);
        let per_user = self
            .models
            .values()
            .filter(|m| m.sender.user == sender.user)
            .count();
        assert!(per_user <= self.rules.max_transfers_per_user);
    }

    /// The model of the offer rate: a budget of `offers_per_minute` a minute, refilled
    /// evenly, each offer (refused or not) spending a minute's share of it.
    fn within_offer_rate(&mut self, user: &UserId) -> bool {
        let per_minute = self.rules.offers_per_minute;
        if per_minute == 0 {
            return true;
        }
        let window = Duration::from_secs(60);
        let now = Duration::from_millis(self.ms);
        let spent = self
            .offer_budget
            .get(user)
            .map_or(now, |&until| until.max(now));
        let after = spent + window / per_minute;
        if after - now > window {
            return false;
        }
        self.offer_budget.insert(user.clone(), after);
        true
    }

    fn model_accept(&mut self, by: &Dev, id: TransferId) -> Result<Vec<Effect<Dev>>, Violation> {
        let ms = self.ms;
        let Some(m) = self.models.get_mut(&id) else {
            return Ok(Vec::new());
        };
        let not_a_party = Violation::NotAParty {
            id,
            packet: "FileTransferAccept (272)",
        };
        if m.sender.conn == by.conn {
            return Err(not_a_party);
        }
        if m.streaming.as_ref().is_some_and(|d| d.conn == by.conn) {
            return Err(Violation::AlreadyAccepted(id));
        }
        if !m.is_recipient(by.conn) {
            if m.streaming.is_some() && m.recipient == by.user {
                return Ok(Vec::new()); // lost the race
            }
            return Err(not_a_party);
        }
        let mut effects: Vec<Effect<Dev>> = m
            .offered
            .iter()
            .filter(|d| d.conn != by.conn)
            .map(|d| Effect::Send(d.clone(), abort(id, AbortReason::AcceptedElsewhere)))
            .collect();
        m.offered.clear();
        m.streaming = Some(by.clone());
        m.last_activity = ms;
        effects.push(Effect::Send(
            m.sender.clone(),
            FileTransferAccept { transfer: id }.into(),
        ));
        Ok(effects)
    }

    fn model_abort(&mut self, by: &Dev, id: TransferId) -> Result<Vec<Effect<Dev>>, Violation> {
        let Some(m) = self.models.get(&id) else {
            return Ok(Vec::new());
        };
        let reason = if m.sender.conn == by.conn {
            AbortReason::Cancelled
        } else if m.is_recipient(by.conn) {
            AbortReason::Declined
        } else if m.streaming.is_some() && m.recipient == by.user {
            return Ok(Vec::new()); // lost the race
        } else {
            return Err(Violation::NotAParty {
                id,
                packet: "FileTransferAbort (270)",
            });
        };
        Ok(self.model_end(id, reason, Some(by.conn)))
    }

    /// A 273 or 274 from `by`, as the table decided it, checked and carried out.
    fn data(
        &mut self,
        src: &mut Src<'_>,
        by: &Dev,
        id: TransferId,
        len: u64,
        completing: bool,
        result: Result<Data<Dev>, Violation>,
    ) -> Result<(), Violation> {
        let expected = self.model_data(by, id, len, completing);
        assert_eq!(result, expected, "data for {id} from {}", by.conn);
        match result? {
            Data::Ignore => {}
            Data::Abort(effects) => self.note(&effects),
            Data::Relay(to) => {
                assert!(
                    self.conn(to.conn).open,
                    "relayed to closed connection {}",
                    to.conn
                );
                let relay = Relay {
                    conn: by.conn,
                    id,
                    completing,
                };
                // Mostly handed over at once; sometimes it waits for the script.
                match src.u8() % 4 {
                    0 => self.relays.push(relay),
                    outcome => self.relay_done(relay, outcome),
                }
            }
        }
        Ok(())
    }

    fn model_data(
        &mut self,
        by: &Dev,
        id: TransferId,
        len: u64,
        completing: bool,
    ) -> Result<Data<Dev>, Violation> {
        let ms = self.ms;
        let Some(m) = self.models.get_mut(&id) else {
            return Ok(Data::Ignore);
        };
        if m.sender.conn != by.conn {
            if m.is_recipient(by.conn) {
                return Err(Violation::DataFromRecipient(id));
            }
            return Err(Violation::NotAParty {
                id,
                packet: "file data",
            });
        }
        let relayed = m.relayed + len;
        let size = m.size.bytes();
        let fits = relayed <= size && (!completing || relayed == size);
        match m.streaming.clone() {
            Some(to) if fits => {
                m.relayed = relayed;
                m.last_activity = ms;
                Ok(Data::Relay(to))
            }
            _ => Ok(Data::Abort(self.model_end(
                id,
                AbortReason::ProtocolViolation,
                None,
            ))),
        }
    }

    /// A relay is through: 0 and 1 hand the packet over, 2 finds the recipient's queue
    /// closed, 3 finds no room in it.
    fn relay_done(&mut self, relay: Relay, outcome: u8) {
        let id = relay.id;
        let (effects, expected) = match outcome {
            2 | 3 => {
                let (failure, reason) = if outcome == 2 {
                    (RelayFailure::RecipientGone, AbortReason::ConnectionDropped)
                } else {
                    (RelayFailure::NoRoom, AbortReason::TimedOut)
                };
                let effects = self.table.relay_failed(id, failure);
                let expected = if self.models.contains_key(&id) {
                    self.model_end(id, reason, None)
                } else {
                    Vec::new()
                };
                (effects, expected)
            }
            _ if relay.completing => {
                let effects = self.table.completed(id);
                let expected = match self.models.remove(&id) {
                    Some(m) => {
                        assert_eq!(m.relayed, m.size.bytes(), "{id} completed short");
                        vec![Effect::Log(m.ended(id, None))]
                    }
                    None => Vec::new(),
                };
                (effects, expected)
            }
            _ => return,
        };
        assert_eq!(effects, expected, "relay of {id} through ({outcome})");
        self.note(&effects);
    }

    /// Connection `conn` ends: its reader stops (a relay it waited on is dropped) and
    /// every transfer that cannot go on without it ends.
    fn close(&mut self, conn: u64) {
        self.conn_mut(conn).open = false;
        self.relays.retain(|r| r.conn != conn);
        let effects = self.table.connection_closed(conn);
        let mut gone: Vec<TransferId> = Vec::new();
        for (id, m) in &mut self.models {
            let ends = if m.sender.conn == conn {
                true
            } else if let Some(d) = &m.streaming {
                d.conn == conn
            } else {
                m.offered.retain(|d| d.conn != conn);
                m.offered.is_empty()
            };
            if ends {
                gone.push(*id);
            }
        }
        gone.sort_unstable();
        let expected: Vec<Effect<Dev>> = gone
            .into_iter()
            .flat_map(|id| self.model_end(id, AbortReason::ConnectionDropped, Some(conn)))
            .collect();
        assert_eq!(effects, expected, "connection {conn} closed");
        self.note(&effects);
    }

    fn model_tick(&mut self) -> Vec<Effect<Dev>> {
        let idle = self.idle.as_millis() as u64;
        let mut stale: Vec<TransferId> = self
            .models
            .iter()
            .filter(|(_, m)| self.ms.saturating_sub(m.last_activity) >= idle)
            .map(|(id, _)| *id)
            .collect();
        stale.sort_unstable();
        stale
            .into_iter()
            .flat_map(|id| self.model_end(id, AbortReason::TimedOut, None))
            .collect()
    }

    /// The model's end of an aborted transfer: a 270 to every party but `except`, the
    /// recipient's devices first, then the log.
    fn model_end(
        &mut self,
        id: TransferId,
        reason: AbortReason,
        except: Option<u64>,
    ) -> Vec<Effect<Dev>> {
        let Some(m) = self.models.remove(&id) else {
            return Vec::new();
        };
        let mut effects: Vec<Effect<Dev>> = m
            .recipients()
            .into_iter()
            .chain([m.sender.clone()])
            .filter(|p| Some(p.conn) != except)
            .map(|p| Effect::Send(p, abort(id, reason)))
            .collect();
        effects.push(Effect::Log(m.ended(id, Some(reason))));
        effects
    }

    /// Counts the transfers these effects end.
    fn note(&mut self, effects: &[Effect<Dev>]) {
        for effect in effects {
            if let Effect::Log(ended) = effect {
                match ended.outcome {
                    None => self.reached.completed += 1,
                    Some(reason) => self.reached.aborted.push(reason.code()),
                }
            }
        }
    }

    /// Invariants between inputs: the table holds what the model holds, every party of
    /// a transfer in progress is connected, and no user sends more than allowed.
    fn check_table(&self) {
        assert_eq!(self.table.len(), self.models.len(), "transfers in progress");
        for (id, m) in &self.models {
            assert!(self.conn(m.sender.conn).open, "{id}: its sender is gone");
            for d in m.recipients() {
                assert!(self.conn(d.conn).open, "{id}: recipient {} is gone", d.conn);
                assert_eq!(d.user, m.recipient, "{id}: offered to another user");
            }
            assert!(
                m.relayed <= m.size.bytes(),
                "{id}: more than its size relayed"
            );
        }
    }
}

fn abort(id: TransferId, reason: AbortReason) -> ServerPacket {
    FileTransferAbort {
        transfer: id,
        reason,
    }
    .into()
}

/// The reader's step for `packet`, by the extension set's rules (`docs/protocol.md`,
/// "Negotiation"), and the model's state after it.
fn expected_step(c: &mut Conn, packet: &ClientPacket) -> inbound::Step {
    use inbound::Step;
    let tag = c.tag.take();
    match packet {
        ClientPacket::SendUserMessage(p) => Step::Store(Message::Direct(p.clone()), tag),
        ClientPacket::SendGroupMessage(p) => Step::Store(Message::Group(p.clone()), tag),
        other if tag.is_some() => Step::Close(format!(
            "MessageTag (516) followed by {} ({}), not by 266 or 267",
            other.name(),
            other.id()
        )),
        other if !c.ext && other.needs_extension_set() => {
            Step::Close(inbound::without_extension_set(other))
        }
        ClientPacket::MessageTag(p) => {
            c.tag = Some(p.client_id);
            Step::Nothing
        }
        ClientPacket::Receipt(p) if p.through.min(c.sent) > 0 => {
            Step::Confirm(MessageId(p.through.min(c.sent)))
        }
        ClientPacket::Receipt(_) => Step::Nothing,
        ClientPacket::ConnectionRequest(_) => {
            Step::Close("ConnectionRequest (256) after login".into())
        }
        other => Step::InOrder(other.clone()),
    }
}
