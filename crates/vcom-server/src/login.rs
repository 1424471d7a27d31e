//! Answers a ConnectionRequest (256) with 257 or 258, running `docs/protocol.md`'s checks in
//! their fixed order: identifier (7), user blacklist (0), IP blacklist (1), whitelist
//! (2), password (3), registration (7), key (4), device (5), capacity (6).
//!
//! The rules are a state machine, [`Login`], with no socket, store or clock inside: it
//! asks for each fact it needs ([`Step`]) and takes the answer ([`Input`]); `check` is
//! the thin shell that reads the store and the registry for it. Nothing is written to
//! the store until every check has passed; then one transaction records the login
//! (user, key, device).

use std::net::IpAddr;

use vcom_protocol::{ConnectionRequest, DenyCode, DeviceId, UserId};
use vcom_store::{InviteHash, KeyFingerprint, LoginRecord, Store, StoreError, UserRecord};

use crate::config::{AuthMode, Registration};
use crate::policy::PolicyCache;
use crate::server::Shared;
use crate::throttle::Throttle;

/// A login that passed every check.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) user: UserId,
    pub(crate) device: DeviceId,
    /// Its place in the connection limits, held until the session registers.
    pub(crate) place: crate::session::Reservation,
}

/// A refused login: a code for the client, or a store failure (the connection closes).
#[derive(Debug)]
pub(crate) enum Refused {
    Denied(DenyCode),
    Store(StoreError),
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Refused::Store(e)
    }
}

fn deny<T>(code: DenyCode) -> Result<T, Refused> {
    Err(Refused::Denied(code))
}

/// Compares passwords in time independent of their contents and of the expected one's
/// length: both are hashed (SHA-256), and the digests compared byte by byte without
/// stopping at the first difference.
fn password_matches(expected: &[u8], given: &[u8]) -> bool {
    let digest = |b: &[u8]| ring::digest::digest(&ring::digest::SHA256, b);
    let (expected, given) = (digest(expected), digest(given));
    expected
        .as_ref()
        .iter()
        .zip(given.as_ref())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The SHA-256 of an invitation token, as the store keeps it.
pub(crate) fn invite_hash(token: &[u8]) -> InviteHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    InviteHash(out)
}

/// Runs every check and, when all pass, registers the user, binds its key and issues or
/// confirms the device: the IO shell around [`Login`], which decides.
pub(crate) async fn check<S: Store>(
    shared: &Shared<S>,
    request: &ConnectionRequest,
    ip: IpAddr,
    key: Option<KeyFingerprint>,
) -> Result<Accepted, Refused> {
    let facts = Facts {
        request,
        ip,
        key,
        now: std::time::Instant::now(),
        known: UserId::new(request.user.clone()).is_ok_and(|u| shared.directory.knows(&u)),
    };
    let started = {
        let policy = shared.policy();
        let rules = Rules {
            policy: &policy,
            password: shared.config.password.as_deref().map(str::as_bytes),
            registration: shared.config.registration,
            auth: shared.config.auth,
            max_user_id_len: shared.limits.max_user_id_len,
        };
        Login::start(&rules, &facts, &shared.throttle)
    };
    let (mut login, mut step) = match started {
        Ok(started) => started,
        Err(code) => return deny(code),
    };
    let mut place = None;
    loop {
        let input = match step {
            Step::ReadUser(user) => Input::User(shared.store.user(&user).await?),
            Step::ReadDeviceOwner(device) => {
                Input::DeviceOwner(shared.store.device_owner(device).await?)
            }
            Step::Reserve => {
                // The place is taken now, not when the session registers: logins
                // running at once cannot pass the limits together.
                place = shared.sessions.reserve(
                    ip,
                    shared.config.max_connections,
                    shared.config.max_connections_per_ip,
                );
                Input::Reserved(place.is_some())
            }
            Step::Record {
                user,
                key,
                device,
                invite,
            } => {
                let recorded = shared
                    .store
                    .record_login(&user, key, device, crate::now(), invite)
                    .await?;
                if recorded == LoginRecord::InviteRefused {
                    tracing::warn!(%user, %ip, "login refused: no valid invitation token");
                    // A wrong token counts like a wrong password: guessing is throttled.
                    if let Some(wait) = shared.throttle.failed(ip, facts.now) {
                        tracing::warn!(%ip, wait_secs = wait.as_secs(), "wrong invitation tokens again: this address waits before its next one is checked");
                    }
                }
                if let LoginRecord::Recorded {
                    device, retired, ..
                } = &recorded
                    && !retired.is_empty()
                {
                    tracing::warn!(
                        %user, new_device = %device, ?retired,
                        "a new device took the user past retention.devices_per_user: \
                         its least recently seen devices are retired"
                    );
                    shared.sessions.end_devices(&user, retired);
                }
                Input::Recorded(recorded)
            }
            Step::Deny(code) => return deny(code),
            Step::Accept { user, device } => {
                if !shared.directory.knows(&user) {
                    shared.directory.add_user(&user);
                    shared.cluster.notify(crate::cluster::Notice::User {
                        user: user.as_str().to_owned(),
                    });
                }
                let Some(place) = place else {
                    unreachable!("a login is accepted only after its place was reserved")
                };
                return Ok(Accepted {
                    user,
                    device,
                    place,
                });
            }
        };
        step = login.on(input);
    }
}

/// The server's rules a login is checked against.
pub(crate) struct Rules<'a> {
    pub(crate) policy: &'a PolicyCache,
    /// The server password, if it has one.
    pub(crate) password: Option<&'a [u8]>,
    pub(crate) registration: Registration,
    pub(crate) auth: AuthMode,
    pub(crate) max_user_id_len: usize,
}

/// What the connection brings: the request, where it comes from, the key it proved,
/// and the time it arrived (for the password throttle).
pub(crate) struct Facts<'a> {
    pub(crate) request: &'a ConnectionRequest,
    pub(crate) ip: IpAddr,
    pub(crate) key: Option<KeyFingerprint>,
    pub(crate) now: std::time::Instant,
    /// Whether the server knows the identifier (its directory, in memory): with
    /// `registration = "token"` a new one brings a token instead of the password.
    pub(crate) known: bool,
}

/// What the login needs next, or how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Read the user's record: answer with [`Input::User`].
    ReadUser(UserId),
    /// Read who the device was issued to: answer with [`Input::DeviceOwner`].
    ReadDeviceOwner(DeviceId),
    /// Take a place in the connection limits: answer with [`Input::Reserved`].
    Reserve,
    /// Every check passed: record the login in one transaction and answer with
    /// [`Input::Recorded`].
    Record {
        user: UserId,
        key: Option<KeyFingerprint>,
        device: DeviceId,
        /// The invitation a new user brought (`registration = "token"`), spent in the
        /// same transaction.
        invite: Option<InviteHash>,
    },
    /// Refuse with this code (258).
    Deny(DenyCode),
    /// Accept (257) with this device.
    Accept { user: UserId, device: DeviceId },
}

/// The answer to a [`Step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    User(Option<UserRecord>),
    DeviceOwner(Option<UserId>),
    Reserved(bool),
    Recorded(LoginRecord),
}

/// The login rules as a state machine: no socket, store or clock inside. It takes the
/// request and the server's rules, asks for the facts it needs one at a time
/// ([`Step`]), and decides with the first check that fails, in `docs/protocol.md`'s
/// order: identifier (7), user blacklist (0), IP blacklist (1), whitelist (2),
/// password (3), registration (7), key (4), device (5), capacity (6).
#[derive(Debug)]
pub(crate) struct Login {
    user: UserId,
    device: DeviceId,
    key: Option<KeyFingerprint>,
    registration: Registration,
    auth: AuthMode,
    /// The key the login will bind (after the key check).
    bind: Option<KeyFingerprint>,
    /// The invitation a new user brought, as its SHA-256.
    invite: Option<InviteHash>,
}

impl Login {
    /// Runs the checks that need nothing from outside (identifier, lists, password): the
    /// code of the first that fails, or the machine with its first step. A wrong
    /// password counts against the address in `throttle` (whose clock is `facts.now`).
    pub(crate) fn start(
        rules: &Rules<'_>,
        facts: &Facts<'_>,
        throttle: &Throttle,
    ) -> Result<(Login, Step), DenyCode> {
        let request = facts.request;
        let user = UserId::with_max_len(request.user.clone(), rules.max_user_id_len)
            .map_err(|_| DenyCode::InvalidUser)?;
        let invite = Self::first_checks(rules, facts, throttle, &user)?;
        let login = Login {
            user: user.clone(),
            device: request.device,
            key: facts.key,
            registration: rules.registration,
            auth: rules.auth,
            bind: None,
            invite,
        };
        Ok((login, Step::ReadUser(user)))
    }

    /// The lists and the password; for a new identifier with `registration = "token"`,
    /// the token (where the password goes) instead of the password, returned as its
    /// SHA-256 for the store to spend.
    fn first_checks(
        rules: &Rules<'_>,
        facts: &Facts<'_>,
        throttle: &Throttle,
        user: &UserId,
    ) -> Result<Option<InviteHash>, DenyCode> {
        if rules.policy.user_blacklisted(user.as_str()) {
            return Err(DenyCode::UserBlacklisted);
        }
        if rules.policy.ip_blacklisted(facts.ip) {
            return Err(DenyCode::IpBlacklisted);
        }
        if !rules.policy.whitelisted(user.as_str(), facts.ip) {
            return Err(DenyCode::NotWhitelisted);
        }
        if rules.registration == Registration::Token && !facts.known {
            let ip = facts.ip;
            if facts.request.password.is_empty() {
                return Err(DenyCode::InvalidUser);
            }
            if let Some(wait) = throttle.wait(ip, facts.now) {
                tracing::warn!(%ip, wait_secs = wait.as_secs_f32().ceil(), "login refused unchecked: too many wrong secrets from this address");
                return Err(DenyCode::InvalidUser);
            }
            return Ok(Some(invite_hash(&facts.request.password)));
        }
        if let Some(expected) = rules.password {
            let ip = facts.ip;
            if let Some(wait) = throttle.wait(ip, facts.now) {
                tracing::warn!(%ip, wait_secs = wait.as_secs_f32().ceil(), "login refused unchecked: too many wrong server passwords from this address");
                return Err(DenyCode::WrongPassword);
            }
            if !password_matches(expected, &facts.request.password) {
                if let Some(wait) = throttle.failed(ip, facts.now) {
                    tracing::warn!(%ip, wait_secs = wait.as_secs(), "wrong server password again: this address waits before its next password is checked");
                }
                return Err(DenyCode::WrongPassword);
            }
            throttle.succeeded(ip);
        }
        Ok(None)
    }

    /// Takes the answer to the last step and returns the next.
    pub(crate) fn on(&mut self, input: Input) -> Step {
        match input {
            Input::User(known) => {
                if known.is_none()
                    && (self.registration == Registration::Closed
                        || (self.registration == Registration::Token && self.invite.is_none()))
                {
                    return Step::Deny(DenyCode::InvalidUser);
                }
                if self.auth == AuthMode::Key {
                    let Some(key) = self.key else {
                        return Step::Deny(DenyCode::KeyMismatch);
                    };
                    if known
                        .as_ref()
                        .and_then(|u| u.key)
                        .is_some_and(|bound| bound != key)
                    {
                        return Step::Deny(DenyCode::KeyMismatch);
                    }
                    self.bind = Some(key);
                }
                if self.device == DeviceId::NEW {
                    Step::Reserve
                } else {
                    Step::ReadDeviceOwner(self.device)
                }
            }
            Input::DeviceOwner(owner) => {
                if owner.as_ref() != Some(&self.user) {
                    return Step::Deny(DenyCode::UnknownDevice);
                }
                Step::Reserve
            }
            Input::Reserved(false) => Step::Deny(DenyCode::ServerFull),
            Input::Reserved(true) => Step::Record {
                user: self.user.clone(),
                key: self.bind,
                device: self.device,
                invite: self.invite,
            },
            Input::Recorded(LoginRecord::InviteRefused) => Step::Deny(DenyCode::InvalidUser),
            // Another login registered the same new identifier with another key first.
            Input::Recorded(LoginRecord::KeyConflict) => Step::Deny(DenyCode::KeyMismatch),
            Input::Recorded(LoginRecord::Recorded { device, .. }) => Step::Accept {
                user: self.user.clone(),
                device,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use vcom_protocol::Timestamp;
    use vcom_store::{Policy, PolicyEntry};

    use super::*;
    use crate::throttle::ThrottleRules;

    #[test]
    fn passwords_match_only_when_equal() {
        assert!(password_matches(b"secret", b"secret"));
        assert!(!password_matches(b"secret", b"secreT"));
        assert!(!password_matches(b"secret", b"secret!"));
        assert!(!password_matches(b"secret", b""));
        assert!(password_matches(b"", b""));
    }

    const ALICE_KEY: KeyFingerprint = KeyFingerprint([1; 32]);
    const OTHER_KEY: KeyFingerprint = KeyFingerprint([2; 32]);

    fn uid(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    /// A server as the login machine sees it: its rules and what its store and
    /// registry would answer.
    struct Server {
        policy: Policy,
        password: Option<&'static [u8]>,
        registration: Registration,
        auth: AuthMode,
        users: HashMap<UserId, Option<KeyFingerprint>>,
        devices: HashMap<DeviceId, UserId>,
        full: bool,
        /// Another login of the same new identifier with another key commits first.
        raced: bool,
        throttle: Throttle,
        /// Invitation tokens the store would accept (`registration = "token"`).
        invites: Vec<&'static [u8]>,
    }

    impl Server {
        fn new() -> Server {
            Server {
                policy: Policy::default(),
                password: None,
                registration: Registration::Open,
                auth: AuthMode::Key,
                users: HashMap::from([(uid("alice"), Some(ALICE_KEY))]),
                devices: HashMap::from([(DeviceId(7), uid("alice")), (DeviceId(8), uid("bob"))]),
                full: false,
                raced: false,
                throttle: Throttle::new(ThrottleRules {
                    free_attempts: 2,
                    max_wait: Duration::from_secs(300),
                }),
                invites: Vec::new(),
            }
        }

        /// Drives one login to its end; returns the steps asked for and the last one.
        fn login(&self, attempt: &Attempt, now: Instant) -> (Vec<Step>, Step) {
            let policy = PolicyCache::new(&self.policy);
            let rules = Rules {
                policy: &policy,
                password: self.password,
                registration: self.registration,
                auth: self.auth,
                max_user_id_len: 64,
            };
            let request = ConnectionRequest {
                user: attempt.user.to_owned(),
                device: attempt.device,
                password: Bytes::copy_from_slice(attempt.password),
            };
            let facts = Facts {
                request: &request,
                ip: attempt.ip.parse().unwrap(),
                key: attempt.key,
                now,
                known: UserId::new(attempt.user).is_ok_and(|u| self.users.contains_key(&u)),
            };
            let (mut login, mut step) = match Login::start(&rules, &facts, &self.throttle) {
                Ok(started) => started,
                Err(code) => return (Vec::new(), Step::Deny(code)),
            };
            let mut steps = Vec::new();
            loop {
                let input = match &step {
                    Step::ReadUser(user) => {
                        Input::User(self.users.get(user).map(|key| UserRecord {
                            id: user.clone(),
                            key: *key,
                            created_at: Timestamp(1),
                        }))
                    }
                    Step::ReadDeviceOwner(device) => {
                        Input::DeviceOwner(self.devices.get(device).cloned())
                    }
                    Step::Reserve => Input::Reserved(!self.full),
                    Step::Record { .. } if self.raced => Input::Recorded(LoginRecord::KeyConflict),
                    Step::Record {
                        user,
                        invite: Some(invite),
                        ..
                    } if self.users.contains_key(user)
                        || !self.invites.iter().any(|t| invite_hash(t) == *invite) =>
                    {
                        Input::Recorded(LoginRecord::InviteRefused)
                    }
                    Step::Record { device, .. } => Input::Recorded(LoginRecord::Recorded {
                        device: if *device == DeviceId::NEW {
                            DeviceId(99)
                        } else {
                            *device
                        },
                        new_device: *device == DeviceId::NEW,
                        retired: Vec::new(),
                    }),
                    Step::Deny(_) | Step::Accept { .. } => return (steps, step),
                };
                steps.push(step);
                step = login.on(input);
            }
        }
    }

    #[derive(Clone)]
    struct Attempt {
        user: &'static str,
        device: DeviceId,
        password: &'static [u8],
        ip: &'static str,
        key: Option<KeyFingerprint>,
    }

    fn alice() -> Attempt {
        Attempt {
            user: "alice",
            device: DeviceId(7),
            password: b"",
            ip: "192.0.2.1",
            key: Some(ALICE_KEY),
        }
    }

    fn outcome(server: &Server, attempt: &Attempt) -> Step {
        server.login(attempt, Instant::now()).1
    }

    #[test]
    fn a_login_passing_every_check_asks_for_the_facts_in_order_and_is_recorded_once() {
        let server = Server::new();
        let (steps, last) = server.login(&alice(), Instant::now());
        assert_eq!(
            steps,
            [
                Step::ReadUser(uid("alice")),
                Step::ReadDeviceOwner(DeviceId(7)),
                Step::Reserve,
                Step::Record {
                    user: uid("alice"),
                    key: Some(ALICE_KEY),
                    device: DeviceId(7),
                    invite: None,
                },
            ]
        );
        assert_eq!(
            last,
            Step::Accept {
                user: uid("alice"),
                device: DeviceId(7)
            }
        );
        // A new device skips the ownership read; a new user binds its key.
        let newcomer = Attempt {
            user: "carol",
            device: DeviceId::NEW,
            key: Some(OTHER_KEY),
            ..alice()
        };
        let (steps, last) = server.login(&newcomer, Instant::now());
        assert_eq!(steps.len(), 3);
        assert_eq!(
            steps[2],
            Step::Record {
                user: uid("carol"),
                key: Some(OTHER_KEY),
                device: DeviceId::NEW,
                invite: None,
            }
        );
        assert_eq!(
            last,
            Step::Accept {
                user: uid("carol"),
                device: DeviceId(99)
            }
        );
    }

    #[test]
    fn every_refusal_has_its_code() {
        let deny = |server: &Server, attempt: &Attempt| match outcome(server, attempt) {
            Step::Deny(code) => code,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let server = Server::new();
        for bad in ["", "new\nline", "x".repeat(65).leak()] {
            let attempt = Attempt {
                user: bad,
                ..alice()
            };
            assert_eq!(deny(&server, &attempt), DenyCode::InvalidUser, "{bad:?}");
        }

        let mut blacklisting = Server::new();
        blacklisting.policy.blacklist = vec![PolicyEntry::User("alice".into())];
        assert_eq!(deny(&blacklisting, &alice()), DenyCode::UserBlacklisted);
        blacklisting.policy.blacklist = vec![PolicyEntry::Ip("192.0.2.0/24".into())];
        assert_eq!(deny(&blacklisting, &alice()), DenyCode::IpBlacklisted);

        let mut whitelisting = Server::new();
        whitelisting.policy.whitelist = vec![PolicyEntry::User("bob".into())];
        assert_eq!(deny(&whitelisting, &alice()), DenyCode::NotWhitelisted);
        whitelisting.policy.whitelist = vec![PolicyEntry::Ip("192.0.2.1".into())];
        assert!(matches!(
            outcome(&whitelisting, &alice()),
            Step::Accept { .. }
        ));

        let mut with_password = Server::new();
        with_password.password = Some(b"sesame");
        assert_eq!(deny(&with_password, &alice()), DenyCode::WrongPassword);
        let right = Attempt {
            password: b"sesame",
            ..alice()
        };
        assert!(matches!(
            outcome(&with_password, &right),
            Step::Accept { .. }
        ));

        let mut closed = Server::new();
        closed.registration = Registration::Closed;
        let stranger = Attempt {
            user: "carol",
            device: DeviceId::NEW,
            ..alice()
        };
        assert_eq!(deny(&closed, &stranger), DenyCode::InvalidUser);

        let wrong_key = Attempt {
            key: Some(OTHER_KEY),
            ..alice()
        };
        assert_eq!(deny(&server, &wrong_key), DenyCode::KeyMismatch);
        let no_key = Attempt {
            key: None,
            ..alice()
        };
        assert_eq!(deny(&server, &no_key), DenyCode::KeyMismatch);
        let mut raced = Server::new();
        raced.raced = true;
        assert_eq!(deny(&raced, &stranger), DenyCode::KeyMismatch);

        for device in [DeviceId(8), DeviceId(12345)] {
            let attempt = Attempt { device, ..alice() };
            assert_eq!(deny(&server, &attempt), DenyCode::UnknownDevice, "{device}");
        }

        let mut full = Server::new();
        full.full = true;
        assert_eq!(deny(&full, &alice()), DenyCode::ServerFull);
    }

    #[test]
    fn open_auth_needs_no_key_and_binds_none() {
        let mut server = Server::new();
        server.auth = AuthMode::Open;
        let keyless = Attempt {
            key: None,
            ..alice()
        };
        let (steps, last) = server.login(&keyless, Instant::now());
        assert!(steps.contains(&Step::Record {
            user: uid("alice"),
            key: None,
            device: DeviceId(7),
            invite: None,
        }));
        assert!(matches!(last, Step::Accept { .. }));
    }

    /// With `registration = "token"`: a known user logs in with the server password as
    /// ever; a new one brings an invitation instead (in the password's place), which
    /// the store spends in the login's own transaction; none, or one the store refuses,
    /// is code 7, and wrong ones are throttled like wrong passwords.
    #[test]
    fn with_token_registration_a_new_user_needs_an_invitation_in_the_passwords_place() {
        let mut server = Server::new();
        server.registration = Registration::Token;
        server.password = Some(b"s3cret");
        server.invites = vec![b"invite-1"];
        let now = Instant::now();
        let known = Attempt {
            password: b"s3cret",
            ..alice()
        };
        assert!(matches!(server.login(&known, now).1, Step::Accept { .. }));
        let newcomer = |password: &'static [u8]| Attempt {
            user: "carol",
            device: DeviceId::NEW,
            key: Some(OTHER_KEY),
            password,
            ..alice()
        };
        let (steps, last) = server.login(&newcomer(b"invite-1"), now);
        assert!(matches!(last, Step::Accept { .. }), "{last:?}");
        assert!(steps.contains(&Step::Record {
            user: uid("carol"),
            key: Some(OTHER_KEY),
            device: DeviceId::NEW,
            invite: Some(invite_hash(b"invite-1")),
        }));
        assert_eq!(
            server.login(&newcomer(b""), now).1,
            Step::Deny(DenyCode::InvalidUser),
            "no token"
        );
        assert_eq!(
            server.login(&newcomer(b"s3cret"), now).1,
            Step::Deny(DenyCode::InvalidUser),
            "the server password is no invitation"
        );
    }

    /// A request that fails every check gets the code of the first in the documented
    /// order; taking the checks away one by one walks down that order.
    #[test]
    fn the_first_failing_check_decides_in_the_documented_order() {
        let mut server = Server::new();
        server.policy.blacklist = vec![
            PolicyEntry::User("alice".into()),
            PolicyEntry::Ip("192.0.2.1".into()),
        ];
        server.policy.whitelist = vec![PolicyEntry::User("bob".into())];
        server.password = Some(b"sesame");
        server.registration = Registration::Closed;
        server.users.clear();
        server.full = true;
        let attempt = Attempt {
            key: None,
            device: DeviceId(8),
            ..alice()
        };
        let mut seen = Vec::new();
        let lifts: [&dyn Fn(&mut Server); 8] = [
            &|s| {
                s.policy
                    .blacklist
                    .retain(|e| matches!(e, PolicyEntry::Ip(_)))
            },
            &|s| s.policy.blacklist.clear(),
            &|s| s.policy.whitelist.clear(),
            &|s| s.password = None,
            &|s| {
                s.users.insert(uid("alice"), Some(ALICE_KEY));
            },
            &|s| s.auth = AuthMode::Open,
            &|s| {
                s.devices.insert(DeviceId(8), uid("alice"));
            },
            &|s| s.full = false,
        ];
        for lift in lifts {
            match outcome(&server, &attempt) {
                Step::Deny(code) => seen.push(code.code()),
                other => panic!("expected a refusal, got {other:?}"),
            }
            lift(&mut server);
        }
        assert!(matches!(outcome(&server, &attempt), Step::Accept { .. }));
        assert_eq!(seen, [0, 1, 2, 3, 7, 4, 5, 6]);
    }

    /// The password throttle with a clock the test moves: no real second passes.
    #[test]
    fn wrong_passwords_make_the_address_wait_and_the_wait_ends_on_time() {
        let mut server = Server::new();
        server.password = Some(b"sesame");
        let wrong = alice();
        let right = Attempt {
            password: b"sesame",
            ..alice()
        };
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(
                server.login(&wrong, start).1,
                Step::Deny(DenyCode::WrongPassword)
            );
        }
        let wait = server
            .throttle
            .wait(right.ip.parse().unwrap(), start)
            .expect("the address waits after more than two wrong passwords");
        assert_eq!(
            server.login(&right, start).1,
            Step::Deny(DenyCode::WrongPassword),
            "even the right password is not checked while the address waits"
        );
        let elsewhere = Attempt {
            ip: "198.51.100.7",
            ..right.clone()
        };
        assert!(matches!(
            server.login(&elsewhere, start).1,
            Step::Accept { .. }
        ));
        assert!(matches!(
            server.login(&right, start + wait).1,
            Step::Accept { .. }
        ));
    }
}
