//! One core's NAT sessions: a fixed slab of sessions, an index holding each session under both of its
//! tuples (client side and target side), and per-protocol FIFOs of free pool (address, port) pairs from
//! this core's slice. Everything is sized when the table is made; nothing allocates afterwards.
use super::packet::{deltas, Tuple, ICMP, TCP, UDP};
use crate::checksum;
use crate::index::Index;
use crate::prefetch::prefetch;
use std::collections::VecDeque;

/// TCP state as far as timeouts need it (RFC 5382: "established" vs "transitory").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum TcpState {
    /// The client's SYN went out; no SYN-ACK yet (transitory).
    #[default]
    SynSent,
    /// The target answered the SYN (established timeout).
    Established,
    /// A FIN was seen in either direction (transitory).
    Closing,
    /// A RST was seen (transitory).
    Closed,
}

impl TcpState {
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "syn_sent",
            TcpState::Established => "established",
            TcpState::Closing => "closing",
            TcpState::Closed => "closed",
        }
    }
}

/// One cache line: a lookup that prefetched it touches nothing else.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
pub struct Session {
    /// Client -> VIP, as the client's packets arrive.
    pub fwd: Tuple,
    /// Target -> pool, as the target's packets arrive.
    pub rev: Tuple,
    pub app: u16,
    /// The edge node and stream the flow came from: replies go back to that edge.
    pub edge: u16,
    pub stream: u16,
    pub tcp: TcpState,
    pub live: bool,
    /// Pool address index << 16 | port (or ICMP id).
    pub pool_ref: u32,
    /// How the IPv4 and the transport checksums change when a client packet is translated, then a
    /// target's ([`super::packet::deltas`], folded): fixed for a session, so kept rather than computed
    /// per packet.
    pub deltas: [u16; 4],
    /// When the session expires, ns of the caller's clock.
    pub deadline: u64,
}

/// Which of a session's tuples an index entry is for.
pub const FWD: u32 = 0;
pub const REV: u32 = 1;

pub struct Table {
    /// On huge pages when large (a million sessions are 64 MB).
    slots: crate::huge::HugeSlice<Session>,
    free_slots: Vec<u32>,
    index: Index,
    /// Random per-table keys of the tag hash.
    keys: [u64; 2],
    free_ports: [VecDeque<u32>; 3],
    cursor: usize,
    pub live: [u64; 3],
}

impl Table {
    /// Room for `max` sessions; `ports[p]` lists the pool (address index << 16 | port) pairs protocol `p`
    /// may use, in the order they are handed out.
    pub fn new(max: usize, ports: [Vec<u32>; 3]) -> Table {
        let max = max.max(1);
        let [t, u, i] = ports;
        Table {
            slots: crate::huge::HugeSlice::filled(max, Session::default()),
            free_slots: (0..max as u32).rev().collect(),
            index: Index::prehashed(2 * max),
            keys: {
                // ahash's random source seeds the keys (per process and table).
                let r = ahash::RandomState::new();
                [r.hash_one(1u64) | 1, r.hash_one(2u64) | 1]
            },
            free_ports: [VecDeque::from(t), VecDeque::from(u), VecDeque::from(i)],
            cursor: 0,
            live: [0; 3],
        }
    }

    /// The index tag of a tuple in direction `dir` (the application is part of the client-side key only:
    /// two applications may share addresses).
    #[inline]
    pub fn tag(&self, t: &Tuple, dir: u32, app: u16) -> u32 {
        let a = (t.src as u64) << 32 | t.dst as u64;
        let b =
            (t.sport as u64) << 48 | (t.dport as u64) << 32 | (t.proto as u64) << 24 | (dir as u64) << 16 | app as u64;
        // A keyed folded multiply (the core of ahash and wyhash): one 64 x 64 -> 128-bit product of the
        // two keyed halves, high and low halves mixed. Keys are random, so crafted tuples cannot aim at one
        // probe run.
        let p = ((a ^ self.keys[0]) as u128).wrapping_mul((b ^ self.keys[1]) as u128);
        let h = (p as u64) ^ ((p >> 64) as u64);
        (h ^ (h >> 32)) as u32
    }

    #[inline]
    pub fn bucket(&self, tag: u32) -> usize {
        self.index.bucket(tag)
    }

    #[inline]
    pub fn prefetch_bucket(&self, bucket: usize) {
        self.index.prefetch(bucket);
    }

    /// Hints the sessions stored under `tag` (read from the index's cells, which should be cached by now);
    /// false when there is none (the packet probably opens a session).
    #[inline]
    pub fn prefetch_sessions(&self, tag: u32, bucket: usize) -> bool {
        let mut any = false;
        self.index.find_at(tag, bucket, |v| {
            prefetch(self.slots.as_ptr().wrapping_add((v >> 1) as usize));
            any = true;
            false
        });
        any
    }

    /// The pool pair the `nth` next session of protocol `proto` would get.
    #[inline]
    pub fn peek_port(&self, proto: usize, nth: usize) -> Option<u32> {
        self.free_ports[proto].get(nth).copied()
    }

    /// The session whose `dir` tuple is `t` (and, client side, whose application is `app`).
    #[inline]
    pub fn find(&self, t: &Tuple, dir: u32, app: u16, tag: u32, bucket: usize) -> Option<u32> {
        self.index
            .find_at(tag, bucket, |v| {
                if v & 1 != dir {
                    return false;
                }
                let s = &self.slots[(v >> 1) as usize];
                if dir == FWD {
                    s.fwd == *t && s.app == app
                } else {
                    s.rev == *t
                }
            })
            .map(|v| v >> 1)
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &Session {
        &self.slots[slot as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut Session {
        &mut self.slots[slot as usize]
    }

    /// Makes a session for protocol `proto` with the next free pool pair (address index << 16 | port),
    /// which `build` turns into the session; `fwd_tag` is its client-side tag. Err(true): no free slot;
    /// Err(false): no free pool pair.
    pub fn insert(&mut self, proto: usize, fwd_tag: u32, build: impl FnOnce(u32) -> Session) -> Result<u32, bool> {
        if self.free_slots.is_empty() {
            return Err(true);
        }
        let pool_ref = self.free_ports[proto].pop_front().ok_or(false)?;
        let slot = self.free_slots.pop().ok_or(true)?;
        let s = build(pool_ref);
        let rev_tag = self.tag(&s.rev, REV, 0);
        // Client packets of an ICMP session are echo requests, the target's are replies.
        let (fi, fl) = deltas(&s.fwd, &s.rev.reversed(), true);
        let (ri, rl) = deltas(&s.rev, &s.fwd.reversed(), false);
        let f = |d: u32| checksum::fold(d as u64) as u16;
        self.slots[slot as usize] = Session {
            live: true,
            pool_ref,
            deltas: [f(fi), f(fl), f(ri), f(rl)],
            ..s
        };
        // The index has room for two entries per slot, so both inserts succeed.
        let ok = self
            .index
            .insert_at(fwd_tag, slot << 1 | FWD, self.index.bucket(fwd_tag))
            && self
                .index
                .insert_at(rev_tag, slot << 1 | REV, self.index.bucket(rev_tag));
        debug_assert!(ok);
        self.live[proto] += 1;
        Ok(slot)
    }

    /// Ends a session: its index entries, slot and pool pair are freed.
    pub fn remove(&mut self, slot: u32) {
        let s = self.slots[slot as usize];
        if !s.live {
            return;
        }
        let ft = self.tag(&s.fwd, FWD, s.app);
        let rt = self.tag(&s.rev, REV, 0);
        self.index.remove_if(ft, |v| v == slot << 1 | FWD);
        self.index.remove_if(rt, |v| v == slot << 1 | REV);
        let p = s.fwd.proto_index();
        self.free_ports[p].push_back(s.pool_ref);
        self.slots[slot as usize].live = false;
        self.free_slots.push(slot);
        self.live[p] -= 1;
    }

    /// Looks at the next `budget` slots (round robin) and ends the live sessions whose deadline has passed;
    /// calls `expired` with the protocol index of each.
    pub fn expire(&mut self, now: u64, budget: usize, mut expired: impl FnMut(usize)) {
        let n = self.slots.len();
        for _ in 0..budget.min(n) {
            let i = self.cursor;
            self.cursor = if i + 1 == n { 0 } else { i + 1 };
            let s = &self.slots[i];
            if s.live && s.deadline <= now {
                expired(s.fwd.proto_index());
                self.remove(i as u32);
            }
        }
    }

    /// Live sessions, for the state endpoint (not for the hot path).
    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.slots.iter().filter(|s| s.live)
    }
}

const _: () = assert!(TCP == 0 && UDP == 1 && ICMP == 2);
const _: () = assert!(std::mem::size_of::<Session>() == 64);
