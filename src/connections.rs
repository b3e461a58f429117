//! The cap on open connections per client address (`HTTP_MAX_CONNECTIONS_PER_IP`).
//!
//! A connection costs a file descriptor and, once HTTP starts, buffers; a
//! single address that opens thousands of slow connections would exhaust the
//! open-file limit and lock every other client out. So connections are counted
//! per address at accept time, before any byte is read, and one beyond the cap
//! is closed at once. The count is taken back when the connection ends (the
//! [`ConnectionSlot`] is dropped).
//!
//! IPv6 addresses are counted per /64: that is what one subscriber line or one
//! host usually gets, and counting single addresses would give such a client
//! 2^64 budgets. Knows nothing of HTTP.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::counter::Counter;

/// Open connections per client address, shared by every worker.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_per_address: usize,
    open: Mutex<HashMap<IpAddr, Entry>>,
    refused: Counter,
}

#[derive(Debug, Default)]
struct Entry {
    open: usize,
    /// Whether this episode at the cap was logged already: a flood is one
    /// warning, not one line per refused connection.
    warned: bool,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    key: IpAddr,
}

impl ConnectionLimits {
    /// At most `max_per_address` open connections per address; `refused` counts
    /// the connections closed for being over it.
    pub fn new(max_per_address: usize, refused: Counter) -> Arc<Self> {
        Arc::new(Self {
            max_per_address,
            open: Mutex::new(HashMap::new()),
            refused,
        })
    }

    /// A slot for a new connection from `peer`, or `None` when the address
    /// already holds the maximum (the caller then closes the connection).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ConnectionSlot> {
        let key = address_key(peer);
        // A panic while holding the lock leaves the counts consistent (every
        // update is a single step), so a poisoned lock is still usable.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = open.entry(key).or_default();
        if entry.open >= self.max_per_address {
            let first = !entry.warned;
            entry.warned = true;
            drop(open);
            self.refused.inc();
            if first {
                log::warn!(
                    "{key} holds {} connections (HTTP_MAX_CONNECTIONS_PER_IP): \
                     closing its new connections until some end",
                    self.max_per_address
                );
            }
            return None;
        }
        entry.open += 1;
        Some(ConnectionSlot {
            limits: Arc::clone(self),
            key,
        })
    }

    /// Open connections from `peer`'s address (its /64 for IPv6).
    pub fn open_from(&self, peer: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&address_key(peer)).map_or(0, |e| e.open)
    }

    /// Addresses with at least one open connection (the map's size).
    pub fn addresses(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = open.get_mut(&self.key) {
            entry.open = entry.open.saturating_sub(1);
            // Forget idle addresses, so the map holds only addresses with open
            // connections (its size is bounded by the open-file limit).
            if entry.open == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What is counted as one client, here and by the per-IP rate limits
/// ([`crate::limits`]): an IPv4 address (also when written as IPv4-mapped
/// IPv6), or the /64 of an IPv6 address (one subscriber line gets a whole /64,
/// so counting single IPv6 addresses would give it 2^64 budgets).
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_gets_at_most_the_cap_and_others_are_not_affected() {
        let limits = ConnectionLimits::new(2, Counter::default());
        let a = ip("192.0.2.1");
        let first = limits.admit(a).expect("first");
        let _second = limits.admit(a).expect("second");
        assert!(limits.admit(a).is_none(), "third is over the cap");
        assert!(limits.admit(ip("192.0.2.2")).is_some(), "another address");
        assert_eq!(limits.refused.get(), 1);
        drop(first);
        assert!(
            limits.admit(a).is_some(),
            "a closed connection frees its slot"
        );
    }

    #[test]
    fn addresses_are_forgotten_when_their_last_connection_ends() {
        let limits = ConnectionLimits::new(8, Counter::default());
        let slots: Vec<_> = (0..5)
            .map(|_| limits.admit(ip("198.51.100.7")).unwrap())
            .collect();
        assert_eq!(limits.open_from(ip("198.51.100.7")), 5);
        drop(slots);
        assert_eq!(limits.open_from(ip("198.51.100.7")), 0);
        assert_eq!(limits.addresses(), 0);
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let limits = ConnectionLimits::new(1, Counter::default());
        let _one = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(
            limits.admit(ip("2001:db8:1:2:ffff::9")).is_none(),
            "same /64"
        );
        assert!(limits.admit(ip("2001:db8:1:3::1")).is_some(), "another /64");
        let _v4 = limits.admit(ip("203.0.113.5")).unwrap();
        assert!(limits.admit(ip("::ffff:203.0.113.5")).is_none());
    }
}
