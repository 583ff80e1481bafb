//! The stage framework: a burst of packets with per-packet metadata, and the verdict each stage writes.
//! A stage takes a burst and decides for each packet whose verdict is still [`Verdict::Next`]; it leaves
//! the others alone. The worker sends, hands off or frees each packet by its final verdict, and counts
//! each drop by the stage that made it and its reason.
use crate::drop::{DropReason, Stage};
use std::net::Ipv4Addr;

/// What happens to a packet after the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Not decided yet: the next stage handles it.
    #[default]
    Next,
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
    /// Belongs to state another worker owns (a NAT session): hand it to that worker through its ring.
    Handoff { worker: u16 },
    /// Dropped by a stage for a reason; counted by both.
    Drop(Stage, DropReason),
}

/// Per-packet state carried between stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub verdict: Verdict,
    pub in_port: u16,
    /// Application index (edge: from classify; gateway: from the VNI).
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
}
