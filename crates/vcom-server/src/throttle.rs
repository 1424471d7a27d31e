//! Password guessing, slowed per address: after a few wrong server passwords from one
//! address, its next logins are refused (258 code 3) without the password being
//! checked, for a time that doubles with each further failure, up to a ceiling.
//!
//! Pure state: the caller passes the time in, so the rules are tested with a fake
//! clock. The table is bounded; IPv6 addresses count per /64 (one host's range), so
//! an attacker cannot dodge the throttle by walking its own prefix.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once; past this, expired entries go first, then the least
/// guilty.
const CAPACITY: usize = 65_536;

/// How the throttle is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThrottleRules {
    /// Wrong passwords an address may give before it waits.
    pub(crate) free_attempts: u32,
    /// The longest wait; zero turns throttling off.
    pub(crate) max_wait: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Option<Instant>,
}

/// Wrong-password counts per address.
#[derive(Debug)]
pub(crate) struct Throttle {
    rules: ThrottleRules,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

/// The key an address is counted under: itself, or its /64 for IPv6.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

impl Throttle {
    pub(crate) fn new(rules: ThrottleRules) -> Self {
        Throttle {
            rules,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // Every update below leaves the map whole; a poisoned lock still holds it.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `ip` must still wait before its password is checked again, if at all.
    pub(crate) fn wait(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let until = self.lock().get(&bucket(ip))?.blocked_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// `ip` gave a wrong password; returns how long it now waits, if it does.
    pub(crate) fn failed(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.rules.max_wait.is_zero() {
            return None;
        }
        let mut entries = self.lock();
        if entries.len() >= CAPACITY && !entries.contains_key(&bucket(ip)) {
            make_room(&mut entries, now);
        }
        let entry = entries.entry(bucket(ip)).or_insert(Entry {
            failures: 0,
            blocked_until: None,
        });
        entry.failures = entry.failures.saturating_add(1);
        let over = entry.failures.checked_sub(self.rules.free_attempts)?;
        if over == 0 {
            return None;
        }
        // 1 s, 2 s, 4 s, ... up to the ceiling.
        let wait = Duration::from_secs(1u64 << (over - 1).min(40)).min(self.rules.max_wait);
        entry.blocked_until = Some(now + wait);
        Some(wait)
    }

    /// `ip` gave the right password: its count starts again.
    pub(crate) fn succeeded(&self, ip: IpAddr) {
        self.lock().remove(&bucket(ip));
    }
}

/// Frees one place: expired entries first, then the one with the fewest failures.
fn make_room(entries: &mut HashMap<IpAddr, Entry>, now: Instant) {
    entries.retain(|_, e| e.blocked_until.is_some_and(|until| until > now));
    if entries.len() >= CAPACITY
        && let Some(least) = entries
            .iter()
            .min_by_key(|(_, e)| e.failures)
            .map(|(ip, _)| *ip)
    {
        entries.remove(&least);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(ThrottleRules {
            free_attempts: 3,
            max_wait: Duration::from_secs(60),
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_few_wrong_passwords_cost_nothing_then_the_wait_doubles_up_to_the_ceiling() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.failed(A, now), None);
            assert_eq!(t.wait(A, now), None);
        }
        let waits: Vec<_> = (0..9).filter_map(|_| t.failed(A, now)).collect();
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(t.wait(A, now), Some(Duration::from_secs(60)));
        assert_eq!(
            t.wait(A, now + Duration::from_secs(59)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(t.wait(A, now + Duration::from_secs(60)), None);
    }

    #[test]
    fn another_address_is_not_slowed_and_a_right_password_starts_the_count_again() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..5 {
            t.failed(A, now);
        }
        assert!(t.wait(A, now).is_some());
        assert_eq!(t.wait(B, now), None);
        t.succeeded(A);
        assert_eq!(t.wait(A, now), None);
        assert_eq!(t.failed(A, now), None, "the free attempts are back");
    }

    #[test]
    fn an_ipv6_host_counts_once_for_its_whole_64() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..4u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            t.failed(ip, now);
        }
        let other: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        assert!(t.wait(other, now).is_some());
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(t.wait(elsewhere, now), None);
    }

    #[test]
    fn a_zero_ceiling_turns_throttling_off() {
        let t = Throttle::new(ThrottleRules {
            free_attempts: 0,
            max_wait: Duration::ZERO,
        });
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(t.failed(A, now), None);
        }
        assert_eq!(t.wait(A, now), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..(CAPACITY as u32 + 10) {
            t.failed(IpAddr::V4(i.into()), now);
        }
        assert!(t.lock().len() <= CAPACITY);
    }
}
