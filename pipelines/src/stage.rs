//! The stage framework: a burst of packets with per-packet metadata, the verdict each stage writes, and
//! the context every stage gets.
//!
//! Every stage has one shape, `run(&mut self, burst: &mut Burst<B>, cx: &mut Ctx)`: it decides for each
//! packet whose verdict is still [`Verdict::Next`] and leaves the others alone. A role
//! ([`crate::overlay::roles`]) is presence followed by a list of stages per [`Lane`]; the worker hands it a
//! received burst once and gets every packet back with its final verdict, which it carries out (send,
//! hand off, free) and counts (drops by the stage that made them and their reason).
use crate::drop::{DropCounts, DropReason, Stage};
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// Which of a role's stage lists takes a packet presence passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// To a service address of this node (a VIP): from clients.
    Service,
    /// To a NAT pool address: from targets, replies to translated flows.
    Return,
    /// UDP to the overlay port of an own address (when the overlay is on).
    Overlay,
}

/// What happens to a packet after the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Not decided yet: the next stage handles it.
    #[default]
    Next,
    /// Passed on by presence to the role's stages of this lane, which have not run yet ([`Burst::open`]
    /// turns it into Next for them). A packet still here after its role ran met a lane the role has no
    /// stages for.
    Lane(Lane),
    /// Send out of `port` to the neighbour `next_hop` (its MAC is filled in by the worker).
    Forward { port: u16, next_hop: Ipv4Addr },
    /// Send back out of the port it came in on (a reply or an ICMP error built in place).
    Reply,
    /// Used up (an ARP reply whose content goes to the control thread, a probe reply measured): freed,
    /// not a drop.
    Consumed,
    /// Done with the stages, not for the overlay: route it by its (translated) destination address like
    /// any router hop (a gateway's reply to a client that reached it directly).
    Route,
    /// Belongs to state another worker owns (a NAT session, a dedupe stream): hand it to that worker
    /// through its ring.
    Handoff { worker: u16 },
    /// Dropped by a stage for a reason; counted by both.
    Drop(Stage, DropReason),
}

/// Per-packet state carried between stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub verdict: Verdict,
    pub in_port: u16,
    /// Application index (from classify; at a gateway, for overlay packets, from the VNI).
    pub app: u16,
    pub vni: u32,
    pub flow_hash: u32,
    pub sender: u16,
    pub stream: u16,
    pub path: u8,
    /// The outer header already carries path `path` (its id and relay): encap wrote the first live path
    /// of `dest`'s set, so replicate leaves the packet's bytes alone.
    pub stamped: bool,
    /// Destination index (encap's destination list, replicate's path sets), set by encap.
    pub dest: u16,
    /// Offset of the inner IPv4 packet in an overlay frame (set by the stage that parsed the outer
    /// headers; 0 when not parsed).
    pub inner_off: u16,
    /// An overlay packet's sequence number and option flags (set with `sender`, `stream` and `path` by
    /// the stage that parsed the outer headers).
    pub seq: u32,
    pub flags: u8,
}

impl Meta {
    pub fn new(in_port: u16) -> Meta {
        Meta {
            in_port,
            ..Default::default()
        }
    }

    #[inline]
    pub fn is_next(&self) -> bool {
        self.verdict == Verdict::Next
    }

    /// Drops the packet: stage `s` for reason `r`.
    #[inline]
    pub fn drop(&mut self, s: Stage, r: DropReason) {
        self.verdict = Verdict::Drop(s, r);
    }

    /// Records what encap did: the sender (this node), stream and destination index, and the path it
    /// stamped, if any.
    #[inline]
    pub fn mark(&mut self, node: u16, stream: u16, dest: u16, first: Option<(u8, Ipv4Addr)>) {
        self.sender = node;
        self.stream = stream;
        self.dest = dest;
        self.stamped = first.is_some();
        if let Some((id, _)) = first {
            self.path = id;
        }
    }
}

/// A burst of packets with their metadata. Its capacity is fixed when it is made; `push` never grows it.
pub struct Burst<B> {
    pub pkts: Vec<B>,
    pub meta: Vec<Meta>,
    cap: usize,
}

impl<B> Burst<B> {
    pub fn with_capacity(cap: usize) -> Self {
        Burst {
            pkts: Vec::with_capacity(cap),
            meta: Vec::with_capacity(cap),
            cap,
        }
    }

    /// Adds a packet; hands it back when the burst is full.
    #[inline]
    pub fn push(&mut self, pkt: B, meta: Meta) -> Result<(), B> {
        if self.pkts.len() >= self.cap {
            return Err(pkt);
        }
        self.pkts.push(pkt);
        self.meta.push(meta);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Takes every packet out with its metadata, leaving the burst empty (capacity kept).
    pub fn drain(&mut self) -> impl Iterator<Item = (B, Meta)> + '_ {
        self.pkts.drain(..).zip(self.meta.drain(..))
    }

    /// Hands the packets waiting for `lane`'s stages to them (their verdict becomes Next); returns
    /// whether there were any, so a role runs a lane's stages only when it has packets.
    #[inline]
    pub fn open(&mut self, lane: Lane) -> bool {
        let mut any = false;
        for m in self.meta.iter_mut() {
            if m.verdict == Verdict::Lane(lane) {
                m.verdict = Verdict::Next;
                any = true;
            }
        }
        any
    }

    /// Passes every packet on to `lane`'s stages (packets another worker handed over: presence saw them
    /// where they arrived).
    pub fn assign(&mut self, lane: impl Fn(&B) -> Option<Lane>) {
        for (p, m) in self.pkts.iter().zip(self.meta.iter_mut()) {
            if m.is_next() {
                m.verdict = match lane(p) {
                    Some(l) => Verdict::Lane(l),
                    None => Verdict::Drop(Stage::Worker, DropReason::Internal),
                };
            }
        }
    }
}

/// What every stage gets besides the burst: the time, the drop counters for packets that never got a
/// verdict (copies that found no buffer), and the events for the control thread.
pub struct Ctx<'a> {
    /// ns of a monotonic clock shared by the workers and the control thread.
    pub now_ns: u64,
    pub drops: &'a mut DropCounts,
    pub events: &'a mut Events,
}

/// An ARP sender the control thread may learn (see `neigh::NeighEvent::Learn`), found by presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learn {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub for_us: bool,
}

/// A probe reply received: the probed path, the probe's sequence number, when it came back (ns of the
/// clock in [`Ctx::now_ns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReply {
    pub path: u8,
    pub seq: u32,
    pub at_ns: u64,
}

/// What the stages found for the control thread, collected over one run of a role and taken by the
/// worker after it. Bounded: at most `cap` of each kind (a run makes at most one per packet); more are
/// counted in `lost`.
#[derive(Debug)]
pub struct Events {
    /// ARP senders presence saw, by the port they came in on.
    pub learned: Vec<(u16, Learn)>,
    pub probe_replies: Vec<ProbeReply>,
    /// Probes turned into their replies.
    pub probes_answered: u64,
    pub lost: u64,
    cap: usize,
}

impl Events {
    pub fn with_capacity(cap: usize) -> Events {
        Events {
            learned: Vec::with_capacity(cap),
            probe_replies: Vec::with_capacity(cap),
            probes_answered: 0,
            lost: 0,
            cap,
        }
    }

    #[inline]
    pub fn learn(&mut self, port: u16, l: Learn) {
        if self.learned.len() < self.cap {
            self.learned.push((port, l));
        } else {
            self.lost += 1;
        }
    }

    #[inline]
    pub fn probe_reply(&mut self, r: ProbeReply) {
        if self.probe_replies.len() < self.cap {
            self.probe_replies.push(r);
        } else {
            self.lost += 1;
        }
    }
}

/// A context of its own, for tests, benchmarks and tools that run stages outside a worker.
pub struct Scratch {
    pub drops: DropCounts,
    pub events: Events,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            drops: DropCounts::default(),
            events: Events::with_capacity(1024),
        }
    }
}

impl Scratch {
    /// The context of one run at `now_ns`.
    pub fn cx(&mut self, now_ns: u64) -> Ctx<'_> {
        Ctx {
            now_ns,
            drops: &mut self.drops,
            events: &mut self.events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_hands_a_lanes_packets_to_its_stages_and_leaves_the_rest() {
        let mut b: Burst<u8> = Burst::with_capacity(4);
        for (p, v) in [
            (0, Verdict::Lane(Lane::Service)),
            (1, Verdict::Lane(Lane::Overlay)),
            (2, Verdict::Reply),
            (3, Verdict::Lane(Lane::Service)),
        ] {
            let m = Meta {
                verdict: v,
                ..Meta::new(0)
            };
            b.push(p, m).unwrap();
        }
        assert!(!b.open(Lane::Return));
        assert!(b.open(Lane::Service));
        let v: Vec<_> = b.meta.iter().map(|m| m.verdict).collect();
        assert_eq!(
            v,
            [
                Verdict::Next,
                Verdict::Lane(Lane::Overlay),
                Verdict::Reply,
                Verdict::Next
            ]
        );
    }

    #[test]
    fn events_beyond_their_bound_are_counted_not_kept() {
        let mut e = Events::with_capacity(1);
        let r = ProbeReply {
            path: 1,
            seq: 2,
            at_ns: 3,
        };
        e.probe_reply(r);
        e.probe_reply(r);
        assert_eq!(
            (e.probe_replies.len(), e.probe_replies.capacity() >= 1, e.lost),
            (1, true, 1)
        );
    }
}
