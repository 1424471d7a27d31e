//! Answers a ConnectionRequest (256) with 257 or 258, running `docs/protocol.md`'s checks in
//! their fixed order: identifier (7), user blacklist (0), IP blacklist (1), whitelist
//! (2), password (3), registration (7), key (4), device (5), capacity (6).
//!
//! Nothing is written to the store until every check has passed; then one transaction
//! records the login (user, key, device).

use std::net::IpAddr;

use vcom_protocol::{ConnectionRequest, DenyCode, DeviceId, UserId};
use vcom_store::{KeyFingerprint, LoginRecord, Store, StoreError};

use crate::config::{AuthMode, Registration};
use crate::server::Shared;

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

/// Runs every check and, when all pass, registers the user, binds its key and issues or
/// confirms the device.
pub(crate) async fn check<S: Store>(
    shared: &Shared<S>,
    request: &ConnectionRequest,
    ip: IpAddr,
    key: Option<KeyFingerprint>,
) -> Result<Accepted, Refused> {
    let Ok(user) = UserId::with_max_len(request.user.clone(), shared.limits.max_user_id_len) else {
        return deny(DenyCode::InvalidUser);
    };
    {
        let policy = shared.policy();
        if policy.user_blacklisted(user.as_str()) {
            return deny(DenyCode::UserBlacklisted);
        }
        if policy.ip_blacklisted(ip) {
            return deny(DenyCode::IpBlacklisted);
        }
        if !policy.whitelisted(user.as_str(), ip) {
            return deny(DenyCode::NotWhitelisted);
        }
    }
    if let Some(expected) = &shared.config.password {
        let now = std::time::Instant::now();
        if let Some(wait) = shared.throttle.wait(ip, now) {
            tracing::warn!(%ip, wait_secs = wait.as_secs_f32().ceil(), "login refused unchecked: too many wrong server passwords from this address");
            return deny(DenyCode::WrongPassword);
        }
        if !password_matches(expected.as_bytes(), &request.password) {
            if let Some(wait) = shared.throttle.failed(ip, now) {
                tracing::warn!(%ip, wait_secs = wait.as_secs(), "wrong server password again: this address waits before its next password is checked");
            }
            return deny(DenyCode::WrongPassword);
        }
        shared.throttle.succeeded(ip);
    }
    let known = shared.store.user(&user).await?;
    if known.is_none() && shared.config.registration == Registration::Closed {
        return deny(DenyCode::InvalidUser);
    }
    let key = match shared.config.auth {
        AuthMode::Open => None,
        AuthMode::Key => {
            let Some(key) = key else {
                return deny(DenyCode::KeyMismatch);
            };
            if let Some(bound) = known.as_ref().and_then(|u| u.key)
                && bound != key
            {
                return deny(DenyCode::KeyMismatch);
            }
            Some(key)
        }
    };
    if request.device != DeviceId::NEW {
        let owner = shared.store.device_owner(request.device).await?;
        if owner.as_ref() != Some(&user) {
            return deny(DenyCode::UnknownDevice);
        }
    }
    // The place is taken now, not when the session registers: logins running at once
    // cannot pass the limits together.
    let Some(place) = shared.sessions.reserve(
        ip,
        shared.config.max_connections,
        shared.config.max_connections_per_ip,
    ) else {
        return deny(DenyCode::ServerFull);
    };

    // Every check passed: remember the user, its key and its device, in one commit.
    match shared
        .store
        .record_login(&user, key, request.device, crate::now())
        .await?
    {
        // Another login registered the same new identifier with another key first.
        LoginRecord::KeyConflict => deny(DenyCode::KeyMismatch),
        LoginRecord::Recorded { device, .. } => {
            shared.directory.add_user(&user);
            Ok(Accepted {
                user,
                device,
                place,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::password_matches;

    #[test]
    fn passwords_match_only_when_equal() {
        assert!(password_matches(b"secret", b"secret"));
        assert!(!password_matches(b"secret", b"secreT"));
        assert!(!password_matches(b"secret", b"secret!"));
        assert!(!password_matches(b"secret", b""));
        assert!(password_matches(b"", b""));
    }
}
