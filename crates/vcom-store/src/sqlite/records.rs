//! Turning column values back into records; a value that fails is a damaged row.

use vcom_protocol::UserId;

use crate::{KeyFingerprint, Policy, PolicyEntry, PolicyList, StoreError, StoreResult};

/// A stored user identifier.
pub(crate) fn user_id(text: String) -> StoreResult<UserId> {
    UserId::new(text).map_err(|e| StoreError::Corrupt(format!("stored user identifier: {e}")))
}

/// A stored `i32` identifier (device, group, transfer).
pub(crate) fn i32_id(value: i64, what: &str) -> StoreResult<i32> {
    i32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is out of range")))
}

/// A stored key fingerprint.
pub(crate) fn key(bytes: Option<Vec<u8>>) -> StoreResult<Option<KeyFingerprint>> {
    bytes
        .map(|b| {
            <[u8; 32]>::try_from(b.as_slice())
                .map(KeyFingerprint)
                .map_err(|_| StoreError::Corrupt(format!("key fingerprint of {} bytes", b.len())))
        })
        .transpose()
}

/// A `usize` limit as an SQL `LIMIT` (which is `i64`; larger means "all").
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Stored UTF-8 bytes (PostgreSQL keeps free-form names as bytes).
pub(crate) fn text(bytes: Vec<u8>, what: &str) -> StoreResult<String> {
    String::from_utf8(bytes).map_err(|_| StoreError::Corrupt(format!("{what} is not UTF-8")))
}

/// A policy list's column value: 0 the blacklist, 1 the whitelist.
pub(crate) fn policy_list(list: PolicyList) -> i64 {
    match list {
        PolicyList::Blacklist => 0,
        PolicyList::Whitelist => 1,
    }
}

/// A policy entry's columns `(kind, value)`: kind 0 is a user, 1 an address; the order
/// matches `PolicyEntry`'s.
pub(crate) fn policy_entry(entry: &PolicyEntry) -> (i64, &str) {
    match entry {
        PolicyEntry::User(user) => (0, user),
        PolicyEntry::Ip(ip) => (1, ip),
    }
}

/// Adds one stored policy row `(list, kind, value)` to `policy`.
pub(crate) fn policy_row(
    policy: &mut Policy,
    list: i64,
    kind: i64,
    value: String,
) -> StoreResult<()> {
    let entry = match kind {
        0 => PolicyEntry::User(value),
        1 => PolicyEntry::Ip(value),
        other => return Err(StoreError::Corrupt(format!("policy entry kind {other}"))),
    };
    match list {
        0 => policy.blacklist.push(entry),
        1 => policy.whitelist.push(entry),
        other => return Err(StoreError::Corrupt(format!("policy list {other}"))),
    }
    Ok(())
}
