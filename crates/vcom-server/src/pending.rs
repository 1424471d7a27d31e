//! Connections still in the TLS handshake or login, counted per address: one address's
//! sockets that never say anything cannot hold the whole pending-login pool and lock
//! everyone else out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Pending logins per address, at most `cap` each (0: no per-address cap).
#[derive(Debug)]
pub(crate) struct PendingLogins {
    cap: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One pending login's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    pending: Arc<PendingLogins>,
    ip: IpAddr,
}

impl PendingLogins {
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(PendingLogins {
            cap,
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Each critical section is one counter change; a poisoned map is still whole.
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a login from `ip`, unless that address already has `cap` pending.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut per_ip = self.lock();
        let count = per_ip.entry(ip).or_default();
        if self.cap > 0 && *count >= self.cap {
            if *count == 0 {
                per_ip.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(Slot {
            pending: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.pending.lock();
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_places_and_gets_them_back() {
        let pending = PendingLogins::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = pending.try_take(a).unwrap();
        let _second = pending.try_take(a).unwrap();
        assert!(pending.try_take(a).is_none(), "a's places are taken");
        assert!(pending.try_take(b).is_some(), "b is not held back by a");
        drop(first);
        assert!(pending.try_take(a).is_some(), "a place came back");
    }

    #[test]
    fn the_table_forgets_addresses_with_nothing_pending() {
        let pending = PendingLogins::new(0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let slots: Vec<_> = (0..100).map(|_| pending.try_take(a).unwrap()).collect();
        drop(slots);
        assert!(pending.lock().is_empty());
    }
}
