//! A small bounded queue of packets waiting for their next hop's MAC address. Owned by one worker; its
//! capacity is fixed at creation, so pushing never allocates.
use crate::wire::MacAddr;
use std::collections::VecDeque;
use std::net::Ipv4Addr;

struct Held<T> {
    item: T,
    port: u16,
    next_hop: Ipv4Addr,
    deadline: u64,
}

pub struct HoldQueue<T> {
    items: VecDeque<Held<T>>,
    cap: usize,
}

/// What happened to a held packet on [`HoldQueue::release`].
pub enum Released<T> {
    /// The next hop is known now: send `item` out of `port` to `mac`.
    Ready { item: T, port: u16, mac: MacAddr },
    /// Its deadline passed unresolved.
    Expired(T),
}

impl<T> HoldQueue<T> {
    pub fn with_capacity(cap: usize) -> Self {
        HoldQueue {
            items: VecDeque::with_capacity(cap),
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Holds `item` until `deadline`; hands it back if the queue is full.
    pub fn push(&mut self, item: T, port: u16, next_hop: Ipv4Addr, deadline: u64) -> Result<(), T> {
        if self.items.len() >= self.cap {
            return Err(item);
        }
        self.items.push_back(Held {
            item,
            port,
            next_hop,
            deadline,
        });
        Ok(())
    }

    /// Hands every held packet whose next hop `lookup` now resolves, or whose deadline is past, to `out`;
    /// keeps the rest in order.
    pub fn release(
        &mut self,
        now: u64,
        lookup: impl Fn(u16, Ipv4Addr) -> Option<MacAddr>,
        mut out: impl FnMut(Released<T>),
    ) {
        for _ in 0..self.items.len() {
            let Some(h) = self.items.pop_front() else {
                break;
            };
            if let Some(mac) = lookup(h.port, h.next_hop) {
                out(Released::Ready {
                    item: h.item,
                    port: h.port,
                    mac,
                });
            } else if now >= h.deadline {
                out(Released::Expired(h.item));
            } else {
                self.items.push_back(h);
            }
        }
    }

    /// Empties the queue (at shutdown).
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.items.drain(..).map(|h| h.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_released_when_resolved_expired_on_deadline() {
        let a: Ipv4Addr = "10.0.0.1".parse().unwrap();
        let b: Ipv4Addr = "10.0.0.2".parse().unwrap();
        let mut q = HoldQueue::with_capacity(3);
        q.push(1, 0, a, 100).unwrap();
        q.push(2, 0, b, 50).unwrap();
        q.push(3, 1, a, 100).unwrap();
        assert_eq!(q.push(4, 0, a, 100), Err(4));
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let mut got = vec![];
        // At t=10 only (0, a) is known.
        q.release(
            10,
            |p, ip| (p == 0 && ip == a).then_some(mac),
            |r| match r {
                Released::Ready { item, port, mac: m } => got.push(("ready", item, port, m)),
                Released::Expired(i) => got.push(("expired", i, 9, MacAddr::ZERO)),
            },
        );
        assert_eq!(got, vec![("ready", 1, 0, mac)]);
        let mut got = vec![];
        // At t=60, b expired; (1, a) still unknown and within its deadline.
        q.release(
            60,
            |_, _| None,
            |r| match r {
                Released::Ready { item, .. } => got.push(("ready", item)),
                Released::Expired(i) => got.push(("expired", i)),
            },
        );
        assert_eq!(got, vec![("expired", 2)]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.drain().collect::<Vec<_>>(), vec![3]);
    }
}
