//! The blacklist and whitelist, compiled for quick login checks.
//!
//! The store holds the entries; this is the in-memory copy consulted on every login,
//! rebuilt whenever an administrator changes a list. Entries that do not parse as an IP
//! address or CIDR block are refused when added, and skipped (with a warning) when read.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use vcom_store::{Policy, PolicyEntry};

/// Parses an IP address or CIDR block (`10.0.0.1`, `10.0.0.0/8`, `::1`).
pub(crate) fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

#[derive(Debug, Default)]
struct CompiledList {
    users: HashSet<String>,
    nets: Vec<IpNet>,
}

impl CompiledList {
    fn new(entries: &[PolicyEntry]) -> Self {
        let mut list = CompiledList::default();
        for entry in entries {
            match entry {
                PolicyEntry::User(u) => {
                    list.users.insert(u.clone());
                }
                PolicyEntry::Ip(text) => match parse_net(text) {
                    Some(net) => list.nets.push(net),
                    None => tracing::warn!(entry = %text, "ignoring unparsable IP policy entry"),
                },
            }
        }
        list
    }

    fn has_ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.nets.is_empty()
    }
}

/// The compiled blacklist and whitelist.
#[derive(Debug, Default)]
pub(crate) struct PolicyCache {
    black: CompiledList,
    white: CompiledList,
}

impl PolicyCache {
    pub(crate) fn new(policy: &Policy) -> Self {
        PolicyCache {
            black: CompiledList::new(&policy.blacklist),
            white: CompiledList::new(&policy.whitelist),
        }
    }

    pub(crate) fn user_blacklisted(&self, user: &str) -> bool {
        self.black.users.contains(user)
    }

    pub(crate) fn ip_blacklisted(&self, ip: IpAddr) -> bool {
        self.black.has_ip(ip)
    }

    /// True when the whitelist is empty or names the user or the address.
    pub(crate) fn whitelisted(&self, user: &str, ip: IpAddr) -> bool {
        self.white.is_empty() || self.white.users.contains(user) || self.white.has_ip(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(black: &[PolicyEntry], white: &[PolicyEntry]) -> PolicyCache {
        PolicyCache::new(&Policy {
            blacklist: black.to_vec(),
            whitelist: white.to_vec(),
        })
    }

    #[test]
    fn cidr_blocks_and_single_addresses_match() {
        let p = policy(
            &[
                PolicyEntry::Ip("10.0.0.0/8".into()),
                PolicyEntry::Ip("::1".into()),
            ],
            &[],
        );
        assert!(p.ip_blacklisted("10.1.2.3".parse().unwrap()));
        assert!(p.ip_blacklisted("::1".parse().unwrap()));
        assert!(!p.ip_blacklisted("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn an_empty_whitelist_admits_everyone_and_a_set_one_only_its_entries() {
        let open = policy(&[], &[]);
        assert!(open.whitelisted("bob", "1.2.3.4".parse().unwrap()));
        let closed = policy(
            &[],
            &[
                PolicyEntry::User("alice".into()),
                PolicyEntry::Ip("127.0.0.0/8".into()),
            ],
        );
        assert!(closed.whitelisted("alice", "1.2.3.4".parse().unwrap()));
        assert!(closed.whitelisted("bob", "127.0.0.1".parse().unwrap()));
        assert!(!closed.whitelisted("bob", "1.2.3.4".parse().unwrap()));
    }
}
