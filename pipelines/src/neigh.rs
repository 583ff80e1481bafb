//! The neighbour table (ARP cache), owned by the control thread. Workers read published snapshots and send
//! it [`NeighEvent`]s: a miss to resolve, or an ARP packet's sender to learn.
//!
//! States follow Linux's neighbour machine, simplified: `Incomplete` (requests retransmitted every
//! `retrans`, up to `max_probes`), `Reachable` for `reachable` after the last confirmation, then `Probe`
//! (unicast requests while the old MAC stays in use) and removal if unanswered; `Failed` blocks new
//! resolutions of an address that did not answer for one `retrans` period, so misses cannot turn into a
//! request storm. Static entries never change. Time is passed in (ns), so tests drive it.
use crate::wire::{arp, ethernet, MacAddr};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// A message from a worker to the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighEvent {
    /// A packet waits for the MAC of `ip` on `port`.
    Resolve { port: u16, ip: Ipv4Addr },
    /// An ARP packet from `ip` at `mac` arrived on `port`; `for_us` when it targeted one of our addresses
    /// (then a new entry may be created, RFC 826), otherwise only existing entries are updated.
    Learn {
        port: u16,
        ip: Ipv4Addr,
        mac: MacAddr,
        for_us: bool,
    },
}

/// An ARP request to send: to broadcast, or unicast to `dst` when re-probing a known neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solicit {
    pub port: u16,
    pub target: Ipv4Addr,
    pub dst: Option<MacAddr>,
}

#[derive(Debug, Clone, Copy)]
pub struct NeighConfig {
    pub reachable_ns: u64,
    pub retrans_ns: u64,
    pub max_probes: u8,
    pub max_entries: usize,
}

impl Default for NeighConfig {
    fn default() -> Self {
        NeighConfig {
            reachable_ns: 300_000_000_000,
            retrans_ns: 1_000_000_000,
            max_probes: 3,
            max_entries: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Static(MacAddr),
    Incomplete { probes: u8, next_at: u64 },
    Reachable { mac: MacAddr, until: u64 },
    Probe { mac: MacAddr, probes: u8, next_at: u64 },
    Failed { until: u64 },
}

impl State {
    fn published(&self) -> Option<MacAddr> {
        match *self {
            State::Static(m) | State::Reachable { mac: m, .. } | State::Probe { mac: m, .. } => Some(m),
            _ => None,
        }
    }
}

/// Counters of the control side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeighStats {
    pub requests_sent: u64,
    pub resolved: u64,
    pub failed: u64,
    pub table_full: u64,
}

pub struct NeighbourTable {
    cfg: NeighConfig,
    entries: HashMap<(u16, Ipv4Addr), State>,
    pub stats: NeighStats,
}

/// A read-only copy of the resolved entries, published to workers.
#[derive(Debug, Clone, Default)]
pub struct NeighSnapshot {
    map: HashMap<(u16, Ipv4Addr), MacAddr>,
}

impl NeighSnapshot {
    #[inline]
    pub fn lookup(&self, port: u16, ip: Ipv4Addr) -> Option<MacAddr> {
        self.map.get(&(port, ip)).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u16, Ipv4Addr, MacAddr)> + '_ {
        self.map.iter().map(|(&(p, ip), &m)| (p, ip, m))
    }
}

impl NeighbourTable {
    pub fn new(cfg: NeighConfig) -> Self {
        NeighbourTable {
            cfg,
            entries: HashMap::new(),
            stats: NeighStats::default(),
        }
    }

    pub fn add_static(&mut self, port: u16, ip: Ipv4Addr, mac: MacAddr) {
        self.entries.insert((port, ip), State::Static(mac));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Handles a worker's event. Returns a request to send now, if any, and whether the published view
    /// changed.
    pub fn on_event(&mut self, ev: NeighEvent, now: u64) -> (Option<Solicit>, bool) {
        match ev {
            NeighEvent::Resolve { port, ip } => {
                if self.entries.contains_key(&(port, ip)) {
                    return (None, false); // already resolving, resolved, failed recently, or static
                }
                if self.entries.len() >= self.cfg.max_entries {
                    self.stats.table_full += 1;
                    return (None, false);
                }
                self.entries.insert(
                    (port, ip),
                    State::Incomplete {
                        probes: 1,
                        next_at: now + self.cfg.retrans_ns,
                    },
                );
                self.stats.requests_sent += 1;
                (
                    Some(Solicit {
                        port,
                        target: ip,
                        dst: None,
                    }),
                    false,
                )
            }
            NeighEvent::Learn { port, ip, mac, for_us } => {
                if !mac.is_unicast() || !crate::wire::ipv4::valid_source(ip) {
                    return (None, false);
                }
                let until = now + self.cfg.reachable_ns;
                match self.entries.get_mut(&(port, ip)) {
                    Some(State::Static(_)) => (None, false),
                    Some(st) => {
                        let before = st.published();
                        if matches!(st, State::Incomplete { .. } | State::Failed { .. }) {
                            self.stats.resolved += 1;
                        }
                        *st = State::Reachable { mac, until };
                        (None, before != Some(mac))
                    }
                    None if for_us => {
                        if self.entries.len() >= self.cfg.max_entries {
                            self.stats.table_full += 1;
                            return (None, false);
                        }
                        self.entries.insert((port, ip), State::Reachable { mac, until });
                        (None, true)
                    }
                    None => (None, false),
                }
            }
        }
    }

    /// Advances timers: retransmits, re-probes, expiry. Requests to send are appended to `out`. Returns
    /// whether the published view changed.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Solicit>) -> bool {
        let cfg = self.cfg;
        let mut changed = false;
        let stats = &mut self.stats;
        self.entries.retain(|&(port, ip), st| match *st {
            State::Static(_) => true,
            State::Incomplete { probes, next_at } if now >= next_at => {
                if probes >= cfg.max_probes {
                    stats.failed += 1;
                    *st = State::Failed {
                        until: now + cfg.retrans_ns,
                    };
                } else {
                    out.push(Solicit {
                        port,
                        target: ip,
                        dst: None,
                    });
                    stats.requests_sent += 1;
                    *st = State::Incomplete {
                        probes: probes + 1,
                        next_at: now + cfg.retrans_ns,
                    };
                }
                true
            }
            State::Reachable { mac, until } if now >= until => {
                out.push(Solicit {
                    port,
                    target: ip,
                    dst: Some(mac),
                });
                stats.requests_sent += 1;
                *st = State::Probe {
                    mac,
                    probes: 1,
                    next_at: now + cfg.retrans_ns,
                };
                true
            }
            State::Probe { mac, probes, next_at } if now >= next_at => {
                if probes >= cfg.max_probes {
                    changed = true;
                    stats.failed += 1;
                    false
                } else {
                    out.push(Solicit {
                        port,
                        target: ip,
                        dst: Some(mac),
                    });
                    stats.requests_sent += 1;
                    *st = State::Probe {
                        mac,
                        probes: probes + 1,
                        next_at: now + cfg.retrans_ns,
                    };
                    true
                }
            }
            State::Failed { until } => now < until,
            _ => true,
        });
        changed
    }

    /// The resolved entries, for workers.
    pub fn snapshot(&self) -> NeighSnapshot {
        NeighSnapshot {
            map: self
                .entries
                .iter()
                .filter_map(|(&k, st)| st.published().map(|m| (k, m)))
                .collect(),
        }
    }
}

/// Length of an ARP request frame (Ethernet + ARP, before padding).
pub const ARP_FRAME_LEN: usize = ethernet::HEADER_LEN + arp::LEN;

/// Writes an ARP request for `target` from (`src_mac`, `src_ip`) into `buf` (at least [`ARP_FRAME_LEN`]
/// bytes); to broadcast unless `dst` is given.
pub fn emit_arp_request(buf: &mut [u8], src_mac: MacAddr, src_ip: Ipv4Addr, target: Ipv4Addr, dst: Option<MacAddr>) {
    ethernet::Repr {
        dst: dst.unwrap_or(MacAddr::BROADCAST),
        src: src_mac,
        ethertype: ethernet::ethertype::ARP,
    }
    .emit(buf);
    arp::Repr {
        operation: arp::OP_REQUEST,
        sender_mac: src_mac,
        sender_ip: src_ip,
        target_mac: MacAddr::ZERO,
        target_ip: target,
    }
    .emit(&mut buf[ethernet::HEADER_LEN..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn cfg() -> NeighConfig {
        NeighConfig {
            reachable_ns: 30 * S,
            retrans_ns: S,
            max_probes: 3,
            max_entries: 4,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    const M: MacAddr = MacAddr([2, 0, 0, 0, 0, 7]);

    #[test]
    fn miss_resolves_on_reply_and_is_published() {
        let mut t = NeighbourTable::new(cfg());
        let (s, ch) = t.on_event(
            NeighEvent::Resolve {
                port: 0,
                ip: ip("10.0.0.1"),
            },
            0,
        );
        assert_eq!(
            s,
            Some(Solicit {
                port: 0,
                target: ip("10.0.0.1"),
                dst: None
            })
        );
        assert!(!ch);
        // A second miss while incomplete sends nothing more.
        assert_eq!(
            t.on_event(
                NeighEvent::Resolve {
                    port: 0,
                    ip: ip("10.0.0.1")
                },
                10
            ),
            (None, false)
        );
        assert!(t.snapshot().lookup(0, ip("10.0.0.1")).is_none());
        // The reply is not "for us" in the sense of an unsolicited request, but the entry exists.
        let (_, ch) = t.on_event(
            NeighEvent::Learn {
                port: 0,
                ip: ip("10.0.0.1"),
                mac: M,
                for_us: false,
            },
            20,
        );
        assert!(ch);
        assert_eq!(t.snapshot().lookup(0, ip("10.0.0.1")), Some(M));
        assert_eq!(t.snapshot().lookup(1, ip("10.0.0.1")), None, "per port");
        assert_eq!(t.stats.resolved, 1);
    }

    #[test]
    fn incomplete_retransmits_then_fails_and_blocks_storms() {
        let mut t = NeighbourTable::new(cfg());
        t.on_event(
            NeighEvent::Resolve {
                port: 0,
                ip: ip("10.0.0.1"),
            },
            0,
        );
        let mut out = vec![];
        assert!(!t.tick(S / 2, &mut out));
        assert!(out.is_empty());
        t.tick(S, &mut out);
        t.tick(2 * S, &mut out);
        assert_eq!(out.len(), 2, "two retransmissions after the first request");
        out.clear();
        t.tick(3 * S, &mut out);
        assert!(out.is_empty());
        assert_eq!(t.stats.failed, 1);
        // Failed: a new miss within retrans sends nothing.
        assert_eq!(
            t.on_event(
                NeighEvent::Resolve {
                    port: 0,
                    ip: ip("10.0.0.1")
                },
                3 * S + 1
            )
            .0,
            None
        );
        t.tick(4 * S, &mut out);
        assert!(t.is_empty(), "failed entry expired");
        assert!(t
            .on_event(
                NeighEvent::Resolve {
                    port: 0,
                    ip: ip("10.0.0.1")
                },
                4 * S + 1
            )
            .0
            .is_some());
    }

    #[test]
    fn unsolicited_learn_only_when_for_us() {
        let mut t = NeighbourTable::new(cfg());
        assert_eq!(
            t.on_event(
                NeighEvent::Learn {
                    port: 0,
                    ip: ip("10.0.0.5"),
                    mac: M,
                    for_us: false
                },
                0
            ),
            (None, false)
        );
        assert!(t.is_empty());
        assert_eq!(
            t.on_event(
                NeighEvent::Learn {
                    port: 0,
                    ip: ip("10.0.0.5"),
                    mac: M,
                    for_us: true
                },
                0
            ),
            (None, true)
        );
        assert_eq!(t.snapshot().lookup(0, ip("10.0.0.5")), Some(M));
        // Same MAC again: no change to publish.
        assert_eq!(
            t.on_event(
                NeighEvent::Learn {
                    port: 0,
                    ip: ip("10.0.0.5"),
                    mac: M,
                    for_us: true
                },
                1
            ),
            (None, false)
        );
        // Bogus senders are ignored.
        assert!(
            !t.on_event(
                NeighEvent::Learn {
                    port: 0,
                    ip: ip("0.0.0.0"),
                    mac: M,
                    for_us: true
                },
                1
            )
            .1
        );
        assert!(
            !t.on_event(
                NeighEvent::Learn {
                    port: 0,
                    ip: ip("10.0.0.6"),
                    mac: MacAddr::BROADCAST,
                    for_us: true
                },
                1
            )
            .1
        );
    }

    #[test]
    fn reachable_expires_into_probe_then_removed() {
        let mut t = NeighbourTable::new(cfg());
        t.on_event(
            NeighEvent::Learn {
                port: 0,
                ip: ip("10.0.0.5"),
                mac: M,
                for_us: true,
            },
            0,
        );
        let mut out = vec![];
        assert!(!t.tick(30 * S, &mut out));
        assert_eq!(
            out,
            vec![Solicit {
                port: 0,
                target: ip("10.0.0.5"),
                dst: Some(M)
            }]
        );
        assert_eq!(
            t.snapshot().lookup(0, ip("10.0.0.5")),
            Some(M),
            "still usable while probing"
        );
        t.tick(31 * S, &mut out);
        t.tick(32 * S, &mut out);
        assert_eq!(out.len(), 3);
        assert!(t.tick(33 * S, &mut out), "removal is published");
        assert!(t.snapshot().is_empty());
    }

    #[test]
    fn probe_confirmed_goes_back_to_reachable() {
        let mut t = NeighbourTable::new(cfg());
        t.on_event(
            NeighEvent::Learn {
                port: 0,
                ip: ip("10.0.0.5"),
                mac: M,
                for_us: true,
            },
            0,
        );
        let mut out = vec![];
        t.tick(30 * S, &mut out);
        t.on_event(
            NeighEvent::Learn {
                port: 0,
                ip: ip("10.0.0.5"),
                mac: M,
                for_us: false,
            },
            30 * S + 5,
        );
        out.clear();
        t.tick(40 * S, &mut out);
        assert!(out.is_empty());
        assert_eq!(t.snapshot().lookup(0, ip("10.0.0.5")), Some(M));
    }

    #[test]
    fn static_entries_never_change_and_table_is_bounded() {
        let mut t = NeighbourTable::new(cfg());
        t.add_static(0, ip("10.0.0.1"), M);
        let other = MacAddr([2, 0, 0, 0, 0, 8]);
        assert!(
            !t.on_event(
                NeighEvent::Learn {
                    port: 0,
                    ip: ip("10.0.0.1"),
                    mac: other,
                    for_us: true
                },
                0
            )
            .1
        );
        let mut out = vec![];
        t.tick(1000 * S, &mut out);
        assert_eq!(t.snapshot().lookup(0, ip("10.0.0.1")), Some(M));
        for i in 2..10 {
            t.on_event(
                NeighEvent::Resolve {
                    port: 0,
                    ip: Ipv4Addr::new(10, 0, 0, i),
                },
                0,
            );
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.stats.table_full, 5);
    }

    #[test]
    fn arp_request_bytes() {
        let mut b = [0u8; ARP_FRAME_LEN];
        emit_arp_request(&mut b, M, ip("10.0.0.2"), ip("10.0.0.1"), None);
        let f = ethernet::Frame::new_checked(&b[..]).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.ethertype(), ethernet::ethertype::ARP);
        let a = arp::Repr::parse(&arp::Packet::new_checked(f.payload()).unwrap());
        assert_eq!(a.operation, arp::OP_REQUEST);
        assert_eq!(
            (a.sender_mac, a.sender_ip, a.target_ip),
            (M, ip("10.0.0.2"), ip("10.0.0.1"))
        );
    }
}
