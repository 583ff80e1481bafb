//! One core's NAT sessions, stored by their pool pair: the session that holds pool address `a`, port (or
//! ICMP id) `p` of protocol `proto` lives in slot `(p - first port) * addresses + a` of that protocol's
//! region. So a reply (target -> pool address:port) finds its session with no index at all, in one cache
//! line, and a client's packet finds it in one line too: a new session takes the pair of a slot on the
//! line its client-side tuple hashes to (a keyed hash, so the pool port is as unpredictable as RFC 6056's
//! hash-based selection makes it). Sessions are 32 bytes, two to a line.
//!
//! When both slots of that home line are taken, the session goes to a second line the tuple hashes to,
//! or, when that is full too, to the nearest free slot, which an overflow index (client-side tag -> slot)
//! remembers. The home line counts the sessions it sent away (`spill`), so a lookup that misses its home
//! line reads further only when the count says it may help. Sessions never move (their slot is their pool
//! pair), so removal needs no rehash.
//!
//! Each protocol has as many slots as this core has pool pairs, up to [`PAIRS_PER_SESSION`] times the
//! session limit: with the pool that large, at most about 3 % of sessions miss their home line when the
//! table is full (a line holds 2, filled to 1/2 on average: a Poisson tail), and far fewer below that. A
//! pool near the session count fills lines up and spills more; lookups stay correct, only slower.
//! Everything is sized when the table is made; nothing allocates afterwards.
use super::packet::{Tuple, ICMP, TCP, UDP};
use crate::index::Index;
use crate::prefetch::prefetch;
use crate::wire::ipv4;
use std::net::Ipv4Addr;

/// Slots per protocol are at most this many times the session limit (see the module doc).
pub const PAIRS_PER_SESSION: usize = 4;

/// Deadlines count ticks of 2^24 ns (16.8 ms) in a u32 (2.2 years before it wraps; compared with
/// wrapping arithmetic, so only a session left unvisited for over a year could be misjudged). A session
/// lives at least its timeout and at most one tick longer.
pub const TICK_SHIFT: u32 = 24;
pub const TICK_NS: u64 = 1 << TICK_SHIFT;

/// The first tick at or after `now + timeout` (ns).
#[inline(always)]
pub fn deadline_after(now: u64, timeout: u64) -> u32 {
    (now.wrapping_add(timeout).wrapping_add(TICK_NS - 1) >> TICK_SHIFT) as u32
}

/// Whether `deadline` has come at `now` (ns).
#[inline(always)]
pub fn is_past(deadline: u32, now: u64) -> bool {
    ((now >> TICK_SHIFT) as u32).wrapping_sub(deadline) as i32 >= 0
}

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

/// Half a cache line. The pool side of the session is its slot; the rest is here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Session {
    /// Client -> VIP, as the client's packets arrive: addresses and ports (ICMP echo: the query id as
    /// `cport`, `vport` 0).
    /// (The client-side key, client to proto, is the first 15 bytes, in the order [`Session::key`] packs.)
    pub client: u32,
    pub vip: u32,
    pub cport: u16,
    pub vport: u16,
    pub app: u16,
    /// The IP protocol number; 0: the slot is free.
    pub proto: u8,
    pub tcp: TcpState,
    /// Where the client's packets go (the target's replies come from there); `tport` 0 for ICMP.
    pub target: u32,
    pub tport: u16,
    /// The edge node and stream the flow came from: replies go back to that edge.
    pub edge: u16,
    pub stream: u16,
    /// Meaningful on the first slot of a line only: live sessions whose home is this line, kept elsewhere:
    /// on their second lines (low byte), behind the overflow index (high byte).
    pub(super) spill: u16,
    /// When the session expires ([`deadline_after`]).
    pub deadline: u32,
}

impl Session {
    #[inline(always)]
    pub fn is_live(&self) -> bool {
        self.proto != 0
    }

    /// The client-side tuple (as the client's packets arrive).
    #[inline(always)]
    pub fn fwd(&self) -> Tuple {
        Tuple {
            src: self.client,
            dst: self.vip,
            sport: self.cport,
            dport: self.vport,
            proto: self.proto,
        }
    }

    /// A client-side key as two words, packed in the order the session's first bytes hold it (so that
    /// the compiler can read each word of a session with one load).
    #[inline(always)]
    pub fn key(t: &Tuple, app: u16) -> [u64; 2] {
        [
            (t.dst as u64) << 32 | t.src as u64,
            (t.proto as u64) << 48 | (app as u64) << 32 | (t.dport as u64) << 16 | t.sport as u64,
        ]
    }

    #[inline(always)]
    fn is_fwd(&self, key: &[u64; 2]) -> bool {
        self.unlike(key) == 0
    }

    /// 0 if this session's client-side key is `key`, else not 0.
    #[inline(always)]
    fn unlike(&self, key: &[u64; 2]) -> u64 {
        #[cfg(target_endian = "little")]
        {
            // SAFETY: Session is repr(C) and 32-byte aligned, and its first 16 bytes are fields with no
            // padding between them (client, vip, cport, vport, app, proto, tcp), all initialized; read as
            // two u64 they are plain integers. On a little-endian machine the words are what `key` packs,
            // plus `tcp` in the top byte of the second, masked off.
            let w = unsafe { *(self as *const Session as *const [u64; 2]) };
            (w[0] ^ key[0]) | ((w[1] ^ key[1]) & KEY_MASK)
        }
        #[cfg(not(target_endian = "little"))]
        {
            let w = Self::key(&self.fwd(), self.app);
            (w[0] ^ key[0]) | (w[1] ^ key[1])
        }
    }
}

/// The bits of a session's second word that are key (all but `tcp`, the top byte).
const KEY_MASK: u64 = (1 << 56) - 1;

/// Pool pairs of one core and their slot numbers: slot `s` is port `first + s / addresses`, address
/// `s % addresses` (addresses interleaved, so a limit on slots still uses all of them).
#[derive(Debug, Clone)]
struct Pairs {
    addrs: Vec<u32>,
    /// Address -> its index + 1 (0: empty), for replies: open addressing over a power of two of at least
    /// twice the addresses, probed from the top `bits` bits of a multiplicative hash.
    index: Vec<(u32, u32)>,
    bits: u32,
    first: u16,
    /// Slots per protocol.
    n: u32,
    /// ceil(2^64 / addresses), for the division (0 for one address).
    magic: u64,
}

impl Pairs {
    /// Slots per protocol for `addrs` addresses x `ports`, at most `limit`.
    fn count(addrs: usize, ports: &std::ops::RangeInclusive<u16>, limit: usize) -> u32 {
        let all = (*ports.end() as u64 + 1).saturating_sub(*ports.start() as u64) * addrs.max(1) as u64;
        all.min(limit as u64).clamp(1, u32::MAX as u64 / 4) as u32
    }

    /// The first `n` ([`Pairs::count`]) pairs of `addrs` x `ports`.
    fn new(addrs: &[Ipv4Addr], ports: std::ops::RangeInclusive<u16>, n: u32) -> Pairs {
        let addrs: Vec<u32> = addrs.iter().map(|&a| u32::from(a)).collect();
        let k = addrs.len().max(1) as u64;
        let bits = (2 * addrs.len()).next_power_of_two().trailing_zeros().max(1);
        let mut index = vec![(0u32, 0u32); 1 << bits];
        for (i, &a) in addrs.iter().enumerate() {
            let mut at = Self::probe(a, bits);
            while index[at].1 != 0 && index[at].0 != a {
                at = (at + 1) & (index.len() - 1);
            }
            if index[at].1 == 0 {
                index[at] = (a, i as u32 + 1); // a repeated address keeps its first index
            }
        }
        Pairs {
            magic: if k == 1 { 0 } else { u64::MAX / k + 1 },
            addrs,
            index,
            bits,
            first: *ports.start(),
            n,
        }
    }

    #[inline(always)]
    fn probe(addr: u32, bits: u32) -> usize {
        (addr.wrapping_mul(0x9e37_79b1) >> (32 - bits)) as usize
    }

    /// The index of pool address `addr`.
    #[inline(always)]
    fn addr_index(&self, addr: u32) -> Option<u32> {
        let mask = self.index.len() - 1;
        let mut at = Self::probe(addr, self.bits);
        loop {
            let (a, i) = self.index[at];
            if i == 0 {
                return None;
            }
            if a == addr {
                return Some(i - 1);
            }
            at = (at + 1) & mask;
        }
    }

    /// (address, port) of slot `s` (< n).
    #[inline(always)]
    fn of(&self, s: u32) -> (u32, u16) {
        let (q, a) = if self.magic == 0 {
            (s, 0)
        } else {
            // s < 2^32 and addresses < 2^32: the high half of s * ceil(2^64 / k) is s / k exactly.
            let q = ((s as u128 * self.magic as u128) >> 64) as u32;
            (q, s - q * self.addrs.len() as u32)
        };
        (self.addrs[a as usize], self.first.wrapping_add(q as u16))
    }

    /// The slot of pool address `addr`, port `port`, if it is one of this core's pairs.
    #[inline(always)]
    fn slot(&self, addr: u32, port: u16) -> Option<u32> {
        let a = self.addr_index(addr)?;
        let off = port.checked_sub(self.first)? as u64;
        let s = off * self.addrs.len() as u64 + a as u64;
        (s < self.n as u64).then_some(s as u32)
    }
}

/// What a client-side lookup found on its home line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// The session, at this slot.
    At(u32),
    /// No session (the line sent none away).
    Absent,
    /// Not here, but the line sent sessions away ([`Session`]'s `spill`).
    Away(u16),
}

/// `spill` counts: sessions on their second lines (low byte; each session of a home line has its own
/// second line, so there may be many), behind the overflow index (high byte). A full count closes that
/// way for the home line's next sessions (255 sessions of one line away: with random keys, not seen).
const ALT_ONE: u16 = 1;
const ALT_MASK: u16 = 0xff;
const OVER_ONE: u16 = 0x100;

/// Where a client-side tuple's session is looked for: the first slots of its home line and of its second
/// line, and its tag in the overflow index; with the key the sessions there are compared with
/// ([`Session::key`], made once for the hash and the compares).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place {
    pub key: [u64; 2],
    pub tag: u32,
    pub home: u32,
    pub alt: u32,
}

pub struct Table {
    /// Three regions (TCP, UDP, ICMP) of `region` slots; on huge pages when large.
    slots: crate::huge::HugeSlice<Session>,
    /// One bit per slot: taken (a live session, or the odd slot that ends a region of odd size).
    taken: Vec<u64>,
    /// Client-side tag -> slot, for sessions off their home line.
    overflow: Index,
    pairs: Pairs,
    region: u32,
    lines: u32,
    /// Random per-table keys of the tag hash.
    keys: [u64; 2],
    max: u64,
    cursor: usize,
    /// Live sessions off their home line.
    away: u64,
    pub live: [u64; 3],
}

/// How a table is sized: slots per protocol (pool pairs used), slots per region (even), and the capacity
/// of the overflow index.
fn sizing(max: usize, addrs: usize, ports: &std::ops::RangeInclusive<u16>) -> (u32, u32, usize) {
    let n = Pairs::count(addrs, ports, max.max(1).saturating_mul(PAIRS_PER_SESSION));
    // Every session but two per line could be off its line in a tiny table; in a large one, far fewer
    // than half (see the module doc).
    let overflow = if n <= 1024 { n } else { n / 2 };
    (n, n + (n & 1), overflow as usize)
}

impl Table {
    /// The bytes a table for `max` sessions on `addrs` pool addresses x `ports` takes (what [`Table::new`]
    /// allocates, to within a few hundred bytes): its slots for three protocols, their bitmap and the
    /// overflow index. For a configuration check before anything is allocated.
    pub fn bytes(max: usize, addrs: usize, ports: std::ops::RangeInclusive<u16>) -> u64 {
        let (_, region, overflow) = sizing(max, addrs, &ports);
        let total = 3 * region as u64;
        total * std::mem::size_of::<Session>() as u64 + total.div_ceil(64) * 8 + Index::bytes(overflow)
    }

    /// Room for `max` sessions on the pool pairs of `addrs` x `ports` (this core's slice).
    pub fn new(max: usize, addrs: &[Ipv4Addr], ports: std::ops::RangeInclusive<u16>) -> Table {
        let max = max.max(1);
        let (n, region, overflow) = sizing(max, addrs.len(), &ports);
        let pairs = Pairs::new(addrs, ports, n);
        let total = 3 * region as usize;
        let mut taken = vec![0u64; total.div_ceil(64)];
        if pairs.n & 1 == 1 {
            for p in 0..3 {
                let s = p * region as usize + pairs.n as usize;
                taken[s / 64] |= 1 << (s % 64);
            }
        }
        Table {
            slots: crate::huge::HugeSlice::filled(total, Session::default()),
            taken,
            overflow: Index::prehashed(overflow),
            pairs,
            region,
            lines: region / 2,
            keys: {
                // ahash's random source seeds the keys (per process and table).
                let r = ahash::RandomState::new();
                [r.hash_one(1u64) | 1, r.hash_one(2u64) | 1]
            },
            max: max as u64,
            cursor: 0,
            away: 0,
            live: [0; 3],
        }
    }

    /// Replaces the random keys of the tag hash (which decides the pool pair a new session gets): two
    /// tables with the same keys give the same flows the same pairs, which tests and reproducible runs
    /// want. Only before the first session.
    pub fn set_keys(&mut self, keys: [u64; 2]) {
        assert!(self.live == [0; 3], "keys change only on an empty table");
        self.keys = [keys[0] | 1, keys[1] | 1];
    }

    /// Live sessions kept off their home line (their client-side lookups read a second line).
    pub fn spilled(&self) -> u64 {
        self.away
    }

    /// Slots per protocol (the pool pairs this core uses).
    pub fn pairs(&self) -> u32 {
        self.pairs.n
    }

    /// Where the session of a client-side tuple of application `app` is looked for (two applications may
    /// share addresses), in protocol `proto`'s region.
    #[inline(always)]
    pub fn place(&self, t: &Tuple, app: u16, proto: usize) -> Place {
        let key = Session::key(t, app);
        let h = self.hash(&key);
        let base = proto as u32 * self.region;
        let line = |x: u32| base + 2 * ((x as u64 * self.lines as u64) >> 32) as u32;
        Place {
            key,
            tag: h as u32,
            home: line(h as u32),
            alt: line((h >> 32) as u32),
        }
    }

    #[inline(always)]
    fn hash(&self, key: &[u64; 2]) -> u64 {
        // A keyed folded multiply (the core of ahash and wyhash) of the client-side key's two words (all
        // of the tuple and the application): one 64 x 64 -> 128-bit product of the two keyed words, high
        // and low halves mixed. Keys are random, so crafted tuples cannot aim at one line.
        let p = ((key[0] ^ self.keys[0]) as u128).wrapping_mul((key[1] ^ self.keys[1]) as u128);
        (p as u64) ^ ((p >> 64) as u64)
    }

    /// The slot a reply's tuple (target -> pool address:port) names, if its pool pair is this core's.
    #[inline(always)]
    pub fn reply_slot(&self, t: &Tuple, proto: usize) -> Option<u32> {
        Some(proto as u32 * self.region + self.pairs.slot(t.dst, t.dport)?)
    }

    /// Hints the line of `slot`.
    #[inline(always)]
    pub fn prefetch(&self, slot: u32) {
        prefetch(self.slots.as_ptr().wrapping_add(slot as usize));
    }

    /// What the home line of `at` says about the session of its client-side key.
    #[inline(always)]
    pub fn find_home(&self, at: &Place) -> Home {
        if let Some(s) = self.on_line(at.home, &at.key) {
            return Home::At(s);
        }
        match self.slots[at.home as usize].spill {
            0 => Home::Absent,
            spill => Home::Away(spill),
        }
    }

    /// The slot of the line starting at `line` whose session has client-side key `key`, if either.
    #[inline(always)]
    fn on_line(&self, line: u32, key: &[u64; 2]) -> Option<u32> {
        let l = line as usize;
        let pair = &self.slots[l..l + 2];
        // Both compared, then one branch: which of the two holds a flow is a coin toss the branch
        // predictor would lose half the time. (Written as a minimum of the differences: from `first |
        // second` of two bools, LLVM makes two branches again.)
        let (first, second) = (pair[0].unlike(key), pair[1].unlike(key));
        (first.min(second) == 0).then_some(line + (first != 0) as u32)
    }

    /// Hints what a lookup told [`Home::Away`] reads next: the second line, the overflow index's bucket.
    #[inline(always)]
    pub fn prefetch_away(&self, at: &Place, spill: u16) {
        if spill & ALT_MASK != 0 {
            self.prefetch(at.alt);
        }
        if spill >= OVER_ONE {
            self.overflow.prefetch(self.overflow.bucket(at.tag));
        }
    }

    /// Hints the slots the overflow index holds under `at`'s tag, if its home line sent sessions there
    /// (the index's bucket should be cached by now).
    #[inline(always)]
    pub fn prefetch_overflow(&self, at: &Place) {
        if self.slots[at.home as usize].spill < OVER_ONE {
            return;
        }
        self.overflow.find_at(at.tag, self.overflow.bucket(at.tag), |s| {
            self.prefetch(s);
            false
        });
    }

    /// The session of the client-side key of place `at`.
    #[inline(always)]
    pub fn find_client(&self, at: &Place) -> Option<u32> {
        match self.find_home(at) {
            Home::At(s) => Some(s),
            Home::Absent => None,
            Home::Away(spill) => self.find_away(at, spill),
        }
    }

    /// The second line, then the overflow index, as far as the home line's `spill` says they may help.
    #[inline(never)]
    pub fn find_away(&self, at: &Place, spill: u16) -> Option<u32> {
        let key = at.key;
        if spill & ALT_MASK != 0 {
            if let Some(s) = self.on_line(at.alt, &key) {
                return Some(s);
            }
        }
        if spill < OVER_ONE {
            return None;
        }
        self.overflow.find_at(at.tag, self.overflow.bucket(at.tag), |s| {
            self.slots[s as usize].is_fwd(&key)
        })
    }

    /// The session at `slot` if a reply with tuple `t` belongs to it.
    #[inline(always)]
    pub fn find_reply(&self, t: &Tuple, slot: u32) -> Option<u32> {
        let s = &self.slots[slot as usize];
        (s.proto == t.proto && s.target == t.src && s.tport == t.sport).then_some(slot)
    }

    #[inline(always)]
    pub fn get(&self, slot: u32) -> &Session {
        &self.slots[slot as usize]
    }

    #[inline(always)]
    pub fn get_mut(&mut self, slot: u32) -> &mut Session {
        &mut self.slots[slot as usize]
    }

    /// The pool (address, port or ICMP id) of the session at `slot` of protocol `proto`.
    #[inline(always)]
    pub fn pool_pair(&self, slot: u32, proto: usize) -> (u32, u16) {
        self.pairs.of(slot - proto as u32 * self.region)
    }

    #[inline(always)]
    fn is_taken(&self, slot: u32) -> bool {
        self.taken[slot as usize / 64] & 1 << (slot % 64) != 0
    }

    /// The first free slot in `from..to`.
    fn first_free(&self, from: usize, to: usize) -> Option<u32> {
        let mut i = from;
        while i < to {
            let free = !self.taken[i / 64] >> (i % 64);
            if free != 0 {
                let k = i + free.trailing_zeros() as usize;
                return (k < to).then_some(k as u32);
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }

    /// Makes a session of protocol `proto` for a client-side tuple at place `at`: on its home line if a
    /// slot is free there (a session past its deadline at `now` gives way, reported to `expired`), else
    /// on its second line, else at the nearest free slot (then in the overflow index); the slot is its
    /// pool pair. Err(true): the session limit is reached; Err(false): no free pool pair.
    pub fn insert(
        &mut self,
        proto: usize,
        at: &Place,
        now: u64,
        mut expired: impl FnMut(usize),
        session: Session,
    ) -> Result<u32, bool> {
        let home = at.home;
        for s in [home, home + 1] {
            let x = self.slots[s as usize];
            if x.is_live() && is_past(x.deadline, now) {
                expired(proto);
                self.remove(s);
            }
        }
        if self.live.iter().sum::<u64>() >= self.max {
            return Err(true);
        }
        let slot = if let Some(s) = [home, home + 1].into_iter().find(|&s| !self.is_taken(s)) {
            s
        } else if let Some(s) = [at.alt, at.alt + 1]
            .into_iter()
            .find(|&s| !self.is_taken(s) && self.slots[home as usize].spill & ALT_MASK != ALT_MASK)
        {
            self.slots[home as usize].spill += ALT_ONE;
            self.away += 1;
            s
        } else {
            let (lo, hi) = (proto * self.region as usize, (proto + 1) * self.region as usize);
            let Some(s) = self
                .first_free(at.alt as usize, hi)
                .or_else(|| self.first_free(lo, at.alt as usize))
            else {
                return Err(false);
            };
            if self.slots[home as usize].spill > u16::MAX - OVER_ONE
                || !self.overflow.insert_at(at.tag, s, self.overflow.bucket(at.tag))
            {
                return Err(false);
            }
            self.slots[home as usize].spill += OVER_ONE;
            self.away += 1;
            s
        };
        let spill = self.slots[slot as usize].spill;
        self.slots[slot as usize] = Session { spill, ..session };
        self.taken[slot as usize / 64] |= 1 << (slot % 64);
        self.live[proto] += 1;
        Ok(slot)
    }

    /// Ends the session at `slot` (its pool pair becomes free).
    pub fn remove(&mut self, slot: u32) {
        let s = self.slots[slot as usize];
        if !s.is_live() {
            return;
        }
        let p = s.fwd().proto_index();
        let at = self.place(&s.fwd(), s.app, p);
        let line = slot & !1;
        if line != at.home {
            if line == at.alt {
                self.slots[at.home as usize].spill -= ALT_ONE;
            } else {
                self.overflow.remove_if(at.tag, |v| v == slot);
                self.slots[at.home as usize].spill -= OVER_ONE;
            }
            self.away -= 1;
        }
        self.slots[slot as usize] = Session {
            spill: s.spill,
            ..Session::default()
        };
        self.taken[slot as usize / 64] &= !(1 << (slot % 64));
        self.live[p] -= 1;
    }

    /// Looks at up to `budget` live sessions after the last one looked at (round robin, skipping free
    /// slots 64 at a time, at most `budget` times) and ends those whose deadline has passed; calls
    /// `expired` with the protocol index of each.
    pub fn expire(&mut self, now: u64, budget: usize, mut expired: impl FnMut(usize)) {
        let total = self.slots.len();
        let (mut seen, mut skips) = (0, 0);
        while seen < budget && skips < budget {
            let i = self.cursor;
            let bits = self.taken[i / 64] >> (i % 64);
            if bits == 0 {
                let next = (i / 64 + 1) * 64;
                self.cursor = if next >= total { 0 } else { next };
                skips += 1;
                continue;
            }
            let k = i + bits.trailing_zeros() as usize;
            self.cursor = if k + 1 >= total { 0 } else { k + 1 };
            let s = self.slots[k];
            if s.is_live() {
                seen += 1;
                if is_past(s.deadline, now) {
                    expired(s.fwd().proto_index());
                    self.remove(k as u32);
                }
            }
        }
    }

    /// Live sessions, for the state endpoint (not for the hot path).
    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.slots.iter().filter(|s| s.is_live())
    }
}

const _: () = assert!(TCP == 0 && UDP == 1 && ICMP == 2);
const _: () = assert!(std::mem::size_of::<Session>() == 32);
const _: () = assert!(ipv4::protocol::TCP != 0 && ipv4::protocol::UDP != 0 && ipv4::protocol::ICMP != 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_slots_are_inverse() {
        let new = |addrs: &[Ipv4Addr], ports: std::ops::RangeInclusive<u16>, limit: usize| {
            Pairs::new(addrs, ports.clone(), Pairs::count(addrs.len(), &ports, limit))
        };
        for k in [1usize, 2, 3, 17, 64] {
            let addrs: Vec<Ipv4Addr> = (0..k as u32).map(|i| Ipv4Addr::from(0x0a00_0000 + i * 7)).collect();
            let p = new(&addrs, 1000..=1099, usize::MAX);
            assert_eq!(p.n as usize, 100 * k);
            for s in 0..p.n {
                let (a, port) = p.of(s);
                assert_eq!(p.slot(a, port), Some(s), "{k} addresses, slot {s}");
            }
            assert_eq!(p.slot(u32::from(addrs[0]), 999), None);
            assert_eq!(p.slot(u32::from(addrs[0]), 1100), None);
            assert_eq!(p.slot(1, 1000), None);
        }
        // A limit keeps the first ports of every address.
        let p = new(&[Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)], 1..=100, 5);
        assert_eq!((p.n, p.of(4)), (5, (0x0101_0101, 3)));
        assert_eq!(p.slot(0x0202_0202, 3), None, "slot 5 is past the limit");
    }

    proptest::proptest! {
        /// Any sequence of opens and ends on a small, crowded table (so home lines fill and sessions go
        /// to second lines and the overflow index) behaves like a map: every live session is found from
        /// its client tuple and from its pool pair, no pair is held twice, and the home lines' counts of
        /// sessions sent away add up.
        #[test]
        fn a_crowded_table_finds_every_session_both_ways(
            ops in proptest::collection::vec((proptest::bool::weighted(0.7), 0u16..48), 1..300),
            pairs in 6u16..40,
        ) {
            use std::collections::HashMap;
            let addrs = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
            let mut t = Table::new(1000, &addrs, 1000..=999 + pairs / 2);
            let tuple = |c: u16| Tuple {
                src: 0x0a00_0100 + c as u32 % 7,
                dst: 0x6440_0001,
                sport: c,
                dport: 53,
                proto: 17,
            };
            let mut model: HashMap<u16, u32> = HashMap::new();
            for (open, c) in ops {
                let tu = tuple(c);
                let at = t.place(&tu, 1, UDP);
                let found = t.find_client(&at);
                proptest::prop_assert_eq!(found, model.get(&c).copied());
                if open && found.is_none() {
                    let session = Session {
                        client: tu.src,
                        vip: tu.dst,
                        cport: tu.sport,
                        vport: tu.dport,
                        app: 1,
                        proto: 17,
                        deadline: deadline_after(0, 1 << 40),
                        ..Session::default()
                    };
                    match t.insert(UDP, &at, 0, |_| {}, session) {
                        Ok(s) => {
                            model.insert(c, s);
                        }
                        Err(full) => {
                            proptest::prop_assert!(!full && model.len() as u32 == t.pairs(), "refused with room")
                        }
                    }
                } else if !open {
                    if let Some(s) = model.remove(&c) {
                        t.remove(s);
                    }
                }
                let mut away = 0u64;
                for (&c, &s) in &model {
                    let tu = tuple(c);
                    let at = t.place(&tu, 1, UDP);
                    proptest::prop_assert_eq!(t.find_client(&at), Some(s));
                    // The target's reply: target -> pool pair.
                    let (pool, port) = t.pool_pair(s, UDP);
                    let x = t.get(s);
                    let rev = Tuple {
                        src: x.target,
                        dst: pool,
                        sport: x.tport,
                        dport: port,
                        proto: 17,
                    };
                    let by_pair = t.reply_slot(&rev, UDP).and_then(|g| t.find_reply(&rev, g));
                    proptest::prop_assert_eq!(by_pair, Some(s));
                    away += (s & !1 != at.home) as u64;
                }
                let sent: u64 = t
                    .slots
                    .iter()
                    .step_by(2)
                    .map(|x| (x.spill & ALT_MASK) as u64 + (x.spill / OVER_ONE) as u64)
                    .sum();
                proptest::prop_assert_eq!((t.live[UDP], t.spilled(), sent), (model.len() as u64, away, away));
            }
        }
    }

    #[test]
    fn the_size_told_before_is_what_a_table_takes() {
        let a = |k: u32| -> Vec<Ipv4Addr> { (0..k).map(|i| Ipv4Addr::from(0x0a00_0000 + i)).collect() };
        for (max, k, ports) in [
            (1, 1, 1024..=1024),
            (16, 1, 1024..=65535),
            (1000, 3, 2000..=2999),
            (100_000, 2, 1024..=33279),
            (5000, 64, 1024..=65535),
        ] {
            let t = Table::new(max, &a(k), ports.clone());
            let took = t.slots.len() as u64 * 32 + t.taken.len() as u64 * 8 + t.overflow.size_bytes();
            assert_eq!(
                Table::bytes(max, k as usize, ports),
                took,
                "{max} sessions on {k} addresses"
            );
        }
        // A million sessions on a large pool: 4 M slots (4 pairs per session) for each of 3 protocols,
        // 32 bytes each, their bitmap, and an overflow index of 2 M keys in 4 M cells of 8 bytes.
        let m = 1u64 << 20;
        assert_eq!(
            Table::bytes(1 << 20, 256, 1024..=65535),
            3 * 4 * m * 32 + 3 * 4 * m / 8 + 4 * m * 8
        );
    }

    #[test]
    fn deadlines_round_up_to_a_tick_and_survive_the_wrap() {
        let d = deadline_after(0, 10 * TICK_NS + 1);
        assert!(!is_past(d, 10 * TICK_NS + 1) && !is_past(d, 11 * TICK_NS - 1) && is_past(d, 11 * TICK_NS));
        let near = ((u32::MAX as u64) << TICK_SHIFT) - 5;
        let d = deadline_after(near, 3 * TICK_NS);
        assert!(!is_past(d, near + TICK_NS) && is_past(d, near + 4 * TICK_NS));
    }
}
