//! Full NAT at the gateway (ARCHITECTURE.md "Full NAT at the gateway"): a client's packet to VIP:port
//! leaves as pool:port -> target:port, and the target's reply comes back as VIP:port -> client:port.
//!
//! - Sessions are owned by the worker that made them ([`Nat`] is per core, no locks). Each holds the edge
//!   node and stream the flow came from, so the reply goes back over the overlay to that edge.
//! - DNAT: the application (the Geneve VNI at the gateway) maps (protocol, port) to a target port; the target
//!   address is picked among the targets not marked down by the flow's hash.
//! - SNAT: each worker takes pool ports (and ICMP query ids) from its own slice of the port range, so a
//!   reply's destination port names the owning worker ([`Pool::owner`]); a reply that arrives elsewhere is
//!   handed over ([`crate::handoff`]).
//! - Only TCP SYNs, UDP packets and ICMP echo requests to a configured (application, protocol, port) open a
//!   session. Nothing else does: the gateway is never an open relay.
//! - TCP state (RFC 5382): established after the target's SYN-ACK, transitory while opening, after a FIN or
//!   a RST. UDP mapping timer per RFC 4787 REQ-5, ICMP query timer per RFC 5508. A new SYN on a closing or
//!   closed session starts it over with the same mapping (port reuse by the client).
//! - ICMP errors (RFC 5508) are translated with the packet they quote; they never refresh a session, and
//!   one about a flow with no session is dropped and counted. An error travelling to the client comes from
//!   the VIP, so the client never sees the target side's addresses.
//! - IPv4 fragments are dropped (no reassembly).
//! - Expiry runs in slices ([`Nat::expire`]) and lazily when a lookup meets an expired session.
pub mod packet;
#[allow(unsafe_code)] // a session's client-side key compared as two words in place
pub mod table;

use crate::drop::DropReason;
use crate::drop::Stage;
use crate::stage::{Burst, Ctx, Verdict};
use crate::wire::{ipv4, tcp};
use packet::{Kind, Parsed, Tuple};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use table::{deadline_after, is_past, Home, Place, Session, Table, TcpState};

/// Which way a packet travels: from the client (its tuple is the session's client side) or from the
/// target.
const FWD: u32 = 0;
const REV: u32 = 1;

/// Idle timeouts in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// RFC 5382 REQ-5: at least 2 h 4 min.
    pub tcp_established: u32,
    /// RFC 5382 REQ-5: at least 4 min (partially open or closing).
    pub tcp_transitory: u32,
    /// RFC 4787 REQ-5: at least 2 min (5 recommended).
    pub udp: u32,
    /// RFC 5508 REQ-1: at least 60 s.
    pub icmp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: 7440,
            tcp_transitory: 240,
            udp: 300,
            icmp: 60,
        }
    }
}

/// (protocol, VIP port) -> target port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatRule {
    pub proto: u8,
    pub port: u16,
    pub target_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatTarget {
    pub addr: Ipv4Addr,
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatApp {
    pub rules: Vec<NatRule>,
    pub targets: Vec<NatTarget>,
    /// ICMP echo to the VIP goes to a target (the default in the config).
    pub icmp: bool,
}

impl NatApp {
    #[inline]
    fn rule(&self, proto: u8, port: u16) -> Option<u16> {
        self.rules
            .iter()
            .find(|r| r.proto == proto && r.port == port)
            .map(|r| r.target_port)
    }

    /// The target for a flow hash, among those up; spreads evenly whatever the count.
    #[inline]
    fn pick(&self, hash: u32) -> Option<Ipv4Addr> {
        let up = self.targets.iter().filter(|t| t.up).count();
        if up == 0 {
            return None;
        }
        let k = ((hash as u64 * up as u64) >> 32) as usize;
        self.targets.iter().filter(|t| t.up).nth(k).map(|t| t.addr)
    }
}

/// Applications by id (the VNI); a read-only table, replaced whole.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatApps {
    pub apps: Vec<Option<NatApp>>,
}

impl NatApps {
    pub fn get(&self, app: u16) -> Option<&NatApp> {
        self.apps.get(app as usize).and_then(|a| a.as_ref())
    }
}

/// The SNAT pool and how its port range is sliced among workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    addrs: Vec<Ipv4Addr>,
    lo: u16,
    per_worker: u32,
    workers: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    NoAddress,
    EmptyRange { lo: u16, hi: u16 },
    TooFewPorts { ports: u32, workers: u16 },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::NoAddress => write!(f, "the pool has no address"),
            PoolError::EmptyRange { lo, hi } => write!(f, "port range {lo}-{hi} is empty"),
            PoolError::TooFewPorts { ports, workers } => {
                write!(f, "{ports} ports cannot be sliced among {workers} workers")
            }
        }
    }
}

impl Pool {
    /// Ports `lo..=hi` of every address in `addrs`, split into `workers` equal contiguous slices (the rest
    /// of the division is left unused).
    pub fn new(addrs: Vec<Ipv4Addr>, lo: u16, hi: u16, workers: u16) -> Result<Pool, PoolError> {
        if addrs.is_empty() {
            return Err(PoolError::NoAddress);
        }
        if hi < lo {
            return Err(PoolError::EmptyRange { lo, hi });
        }
        let ports = hi as u32 - lo as u32 + 1;
        let workers = workers.max(1);
        let per_worker = ports / workers as u32;
        if per_worker == 0 {
            return Err(PoolError::TooFewPorts { ports, workers });
        }
        Ok(Pool {
            addrs,
            lo,
            per_worker,
            workers,
        })
    }

    pub fn addrs(&self) -> &[Ipv4Addr] {
        &self.addrs
    }

    /// The ports (and ICMP ids) worker `w` allocates from.
    pub fn slice(&self, w: u16) -> std::ops::RangeInclusive<u16> {
        let first = self.lo as u32 + w as u32 * self.per_worker;
        first as u16..=(first + self.per_worker - 1) as u16
    }

    /// The worker that owns pool port (or ICMP id) `port`; None outside every slice.
    #[inline]
    pub fn owner(&self, port: u16) -> Option<u16> {
        let off = (port as u32).checked_sub(self.lo as u32)?;
        let w = off / self.per_worker;
        (w < self.workers as u32).then_some(w as u16)
    }

    /// The bytes worker `w`'s session table takes for `max_sessions` ([`Table::bytes`]): it grows with
    /// `max_sessions` and with the worker's pool pairs, up to [`table::PAIRS_PER_SESSION`] per session.
    pub fn table_bytes(&self, max_sessions: usize, w: u16) -> u64 {
        Table::bytes(max_sessions, self.addrs.len(), self.slice(w))
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        self.addrs.contains(&a)
    }
}

/// Where a flow came from over the overlay (and where its replies go back to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    pub app: u16,
    /// The edge node the flow came through, or [`Origin::DIRECT`].
    pub edge: u16,
    pub stream: u16,
}

impl Origin {
    /// The `edge` of a flow whose client reached this node directly, not through the overlay (standalone
    /// full NAT, or a gateway's own VIP): its replies are routed straight back. Node ids start at 1.
    pub const DIRECT: u16 = 0;

    /// A flow of application `app` from a client that reached this node directly.
    pub fn direct(app: u16) -> Origin {
        Origin {
            app,
            edge: Origin::DIRECT,
            stream: 0,
        }
    }
}

/// Per-core counters (drops are counted by stage and reason in [`crate::drop::DropCounts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatStats {
    pub created: [u64; 3],
    pub expired: [u64; 3],
    pub translated_out: u64,
    pub translated_in: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    pub max_sessions: usize,
    pub timeouts: Timeouts,
    pub pool: Pool,
}

/// Sessions examined per [`Nat::expire_slice`] call (one per burst).
pub const EXPIRE_BUDGET: usize = 64;

/// One worker's NAT.
pub struct Nat {
    worker: u16,
    /// This worker's slice of pool ports.
    mine: std::ops::RangeInclusive<u16>,
    apps: Arc<NatApps>,
    pool: Pool,
    /// Timeouts in ns: established, transitory, udp, icmp.
    tmo: [u64; 4],
    table: Table,
    pub stats: NatStats,
}

/// A packet prepared for a lookup: parsed, and the slot it leads to found and prefetched (client side:
/// the first slot of its home line, `at.home`; target side: the slot its pool pair names, [`NO_SLOT`] if
/// none).
#[derive(Debug, Clone, Copy, Default)]
struct Pre {
    p: Parsed,
    at: Place,
    slot: u32,
}

const NO_SLOT: u32 = u32::MAX;

impl Nat {
    pub fn new(cfg: &NatConfig, worker: u16, apps: Arc<NatApps>) -> Nat {
        let ns = |s: u32| s as u64 * 1_000_000_000;
        let t = cfg.timeouts;
        Nat {
            worker,
            mine: cfg.pool.slice(worker),
            apps,
            pool: cfg.pool.clone(),
            tmo: [ns(t.tcp_established), ns(t.tcp_transitory), ns(t.udp), ns(t.icmp)],
            table: Table::new(cfg.max_sessions, cfg.pool.addrs(), cfg.pool.slice(worker)),
            stats: NatStats::default(),
        }
    }

    /// This NAT with fixed keys for the hash that picks a new session's pool pair ([`Table::set_keys`]).
    pub fn with_hash_keys(mut self, keys: [u64; 2]) -> Nat {
        self.table.set_keys(keys);
        self
    }

    pub fn worker(&self) -> u16 {
        self.worker
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Picks up a new application table (between bursts). Sessions keep their target; new ones use the
    /// new table.
    pub fn set_apps(&mut self, apps: Arc<NatApps>) {
        self.apps = apps;
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Live sessions per protocol (tcp, udp, icmp).
    pub fn live(&self) -> [u64; 3] {
        self.table.live
    }

    /// The other worker that owns pool port (or ICMP id) `port`, if it is not this one's.
    #[inline(always)]
    fn elsewhere(&self, port: u16) -> Option<u16> {
        if self.mine.contains(&port) {
            return None;
        }
        self.pool.owner(port)
    }

    #[inline(always)]
    fn timeout(tmo: &[u64; 4], s: &Session) -> u64 {
        match s.proto {
            ipv4::protocol::TCP => match s.tcp {
                TcpState::Established => tmo[0],
                _ => tmo[1],
            },
            ipv4::protocol::UDP => tmo[2],
            _ => tmo[3],
        }
    }

    /// Parses a packet and finds the slot it leads to (then prefetched).
    #[inline(always)]
    fn prepare(&self, frame: &[u8], dir: u32, app: u16, pre: &mut Pre) -> Result<(), DropReason> {
        // Parsed in place (a parse into a local, copied over afterwards, took a store for every field:
        // about 20 instructions a packet). The key and the hash are made from fields read back with the
        // sizes they were written with, which the CPU forwards from its store buffer.
        packet::parse_into(frame, &mut pre.p)?;
        let t = pre.p.tuple;
        // A target-side packet leaves `at` as it is: it has no use for it.
        let slot = if dir == FWD {
            pre.at = self.table.place(&t, app, t.proto_index());
            pre.at.home
        } else {
            self.table.reply_slot(&t, t.proto_index()).unwrap_or(NO_SLOT)
        };
        if slot != NO_SLOT {
            self.table.prefetch(slot);
        }
        pre.slot = slot;
        Ok(())
    }

    /// The live session of a prepared target-side packet; an expired one found on the way is ended.
    #[inline(always)]
    fn lookup_reply(&mut self, pre: &Pre, now: u64) -> Option<u32> {
        let t = &pre.p.tuple;
        let found = match pre.slot {
            NO_SLOT => None,
            slot => self.table.find_reply(t, slot),
        };
        self.alive(found, t.proto_index(), now)
    }

    /// `found` unless its session has expired by `now` (then it is ended).
    #[inline(always)]
    fn alive(&mut self, found: Option<u32>, proto: usize, now: u64) -> Option<u32> {
        let slot = found?;
        if is_past(self.table.get(slot).deadline, now) {
            self.stats.expired[proto] += 1;
            self.table.remove(slot);
            return None;
        }
        Some(slot)
    }

    /// DNAT for a new session of a prepared client packet: (target address, target port).
    #[inline(always)]
    fn dnat(&self, pre: &Pre, app: u16) -> Result<(u32, u16), DropReason> {
        let t = &pre.p.tuple;
        let app = self.apps.get(app).ok_or(DropReason::NoApplication)?;
        let port = match pre.p.kind {
            Kind::EchoRequest if app.icmp => 0,
            Kind::EchoRequest => return Err(DropReason::NoApplication),
            _ => app.rule(t.proto, t.dport).ok_or(DropReason::NoApplication)?,
        };
        Ok((u32::from(app.pick(pre.at.tag).ok_or(DropReason::NatNoTarget)?), port))
    }

    /// Opens a session for a client packet that matched none; the caller checked it may open one.
    fn create(&mut self, pre: &Pre, o: Origin, now: u64) -> Result<u32, DropReason> {
        let t = pre.p.tuple;
        let (target, tport) = self.dnat(pre, o.app)?;
        let proto = t.proto_index();
        let stats = &mut self.stats;
        let r = self.table.insert(
            proto,
            &pre.at,
            now,
            |p| stats.expired[p] += 1,
            Session {
                client: t.src,
                vip: t.dst,
                target,
                cport: t.sport,
                vport: t.dport,
                tport,
                app: o.app,
                edge: o.edge,
                stream: o.stream,
                proto: t.proto,
                ..Session::default()
            },
        );
        match r {
            Ok(slot) => {
                self.stats.created[proto] += 1;
                Ok(slot)
            }
            Err(true) => Err(DropReason::NatTableFull),
            Err(false) => Err(DropReason::NatPortsExhausted),
        }
    }

    /// Updates TCP state and the deadline for a packet of the session (not for ICMP errors).
    #[inline(always)]
    fn touch(tmo: &[u64; 4], s: &mut Session, kind: Kind, to_target: bool, now: u64) {
        if let Kind::Tcp { flags } = kind {
            s.tcp = if flags & tcp::flags::RST != 0 {
                TcpState::Closed
            } else if flags & tcp::flags::FIN != 0 {
                TcpState::Closing
            } else if to_target && flags & (tcp::flags::SYN | tcp::flags::ACK) == tcp::flags::SYN {
                match s.tcp {
                    TcpState::Closing | TcpState::Closed => TcpState::SynSent, // the client reuses its port
                    st => st,
                }
            } else if !to_target
                && s.tcp == TcpState::SynSent
                && flags & (tcp::flags::SYN | tcp::flags::ACK) == tcp::flags::SYN | tcp::flags::ACK
            {
                TcpState::Established
            } else {
                s.tcp
            };
        }
        s.deadline = deadline_after(now, Self::timeout(tmo, s));
    }

    /// Translates a prepared client-side packet; returns the target's address. `found`: what the lookup
    /// found (the session may have expired since).
    #[inline(always)]
    fn out_one(
        &mut self,
        frame: &mut [u8],
        pre: &Pre,
        o: Origin,
        found: Option<u32>,
        now: u64,
    ) -> Result<Ipv4Addr, DropReason> {
        let slot = match (self.alive(found, pre.p.tuple.proto_index(), now), pre.p.kind) {
            (Some(s), _) => s,
            (None, Kind::IcmpError) => return Err(DropReason::NatIcmpNoSession),
            (None, Kind::Tcp { flags })
                if flags & (tcp::flags::SYN | tcp::flags::ACK | tcp::flags::RST | tcp::flags::FIN)
                    == tcp::flags::SYN =>
            {
                self.create(pre, o, now)?
            }
            (None, Kind::Udp | Kind::EchoRequest) => self.create(pre, o, now)?,
            (None, _) => return Err(DropReason::NatNoSession),
        };
        let (pool, pool_port) = self.table.pool_pair(slot, pre.p.tuple.proto_index());
        let s = self.table.get_mut(slot);
        if pre.p.kind != Kind::IcmpError {
            Self::touch(&self.tmo, s, pre.p.kind, true, now);
        }
        let new = Tuple {
            src: pool,
            dst: s.target,
            sport: pool_port,
            dport: s.tport,
            proto: s.proto,
        };
        packet::rewrite(frame, &pre.p, &new, pool, s.target);
        self.stats.translated_out += 1;
        Ok(Ipv4Addr::from(new.dst))
    }

    /// Translates a prepared target-side packet; returns where it goes back to.
    #[inline(always)]
    fn in_one(&mut self, frame: &mut [u8], pre: &Pre, now: u64) -> Result<Origin, DropReason> {
        let Some(slot) = self.lookup_reply(pre, now) else {
            return Err(if pre.p.kind == Kind::IcmpError {
                DropReason::NatIcmpNoSession
            } else {
                DropReason::NatNoSession
            });
        };
        if pre.p.kind == Kind::EchoRequest {
            return Err(DropReason::NatNoSession); // the target side never opens or pings through
        }
        let s = self.table.get_mut(slot);
        if pre.p.kind != Kind::IcmpError {
            Self::touch(&self.tmo, s, pre.p.kind, false, now);
        }
        let fwd = s.fwd();
        packet::rewrite(frame, &pre.p, &fwd.reversed(), fwd.dst, fwd.src);
        self.stats.translated_in += 1;
        Ok(Origin {
            app: s.app,
            edge: s.edge,
            stream: s.stream,
        })
    }

    /// Client -> target: a frame (Ethernet + IPv4, header checksum already verified) of a flow from
    /// `o`. Rewrites it in place and returns the target's address (the next hop is the caller's routing).
    pub fn outbound(&mut self, frame: &mut [u8], o: Origin, now: u64) -> Result<Ipv4Addr, DropReason> {
        let mut pre = Pre::default();
        self.prepare(frame, FWD, o.app, &mut pre)?;
        let found = self.table.find_client(&pre.at);
        self.out_one(frame, &pre, o, found, now)
    }

    /// Target -> client: a frame to a pool address owned by this worker. Rewrites it in place and returns
    /// the origin of its session (application, edge, stream) for the way back.
    pub fn inbound(&mut self, frame: &mut [u8], now: u64) -> Result<Origin, DropReason> {
        let mut pre = Pre::default();
        self.prepare(frame, REV, 0, &mut pre)?;
        self.in_one(frame, &pre, now)
    }

    /// As [`Nat::inbound`] for a frame that may belong to another worker's session: `Ok(Err(w))` (frame
    /// untouched) when worker `w` owns its pool port; parsed once either way.
    pub fn inbound_or_owner(&mut self, frame: &mut [u8], now: u64) -> Result<Result<Origin, u16>, DropReason> {
        let mut pre = Pre::default();
        self.prepare(frame, REV, 0, &mut pre)?;
        if let Some(w) = self.elsewhere(pre.p.tuple.dport) {
            return Ok(Err(w));
        }
        self.in_one(frame, &pre, now).map(Ok)
    }

    /// Ends expired sessions among the next [`EXPIRE_BUDGET`] live ones; a bounded slice per call.
    pub fn expire_slice(&mut self, now: u64) {
        self.expire(now, EXPIRE_BUDGET)
    }

    pub fn expire(&mut self, now: u64, budget: usize) {
        let stats = &mut self.stats;
        self.table.expire(now, budget, |p| stats.expired[p] += 1);
    }

    /// The burst form of [`Nat::outbound`] for packets whose verdict is still Next: `meta.app`,
    /// `meta.sender` (the edge) and `meta.stream` give the origin. A translated packet keeps Next (routing
    /// to the target follows); others get Drop. Every packet's session line is prefetched in a first pass,
    /// so that the lines come in while the others are parsed and translated.
    pub fn run_outbound<B: crate::buf::PacketBuf>(&mut self, burst: &mut Burst<B>, cx: &mut Ctx) {
        self.run::<B, FWD>(burst, cx.now_ns);
    }

    /// The burst form of [`Nat::inbound`]: packets whose pool port another worker owns get
    /// [`Verdict::Handoff`]; translated ones keep Next with `meta.app`, `meta.sender` (the edge to send
    /// back to) and `meta.stream` set.
    pub fn run_inbound<B: crate::buf::PacketBuf>(&mut self, burst: &mut Burst<B>, cx: &mut Ctx) {
        self.run::<B, REV>(burst, cx.now_ns);
    }

    /// The burst form of both directions (`DIR`: FWD or REV; one copy of the code per direction).
    fn run<B: crate::buf::PacketBuf, const DIR: u32>(&mut self, burst: &mut Burst<B>, now: u64) {
        const CHUNK: usize = 32;
        let n = burst.len();
        let mut pre = [Pre::default(); CHUNK];
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            // Bit k set: packet start + k is prepared for the lookup.
            let mut ready = 0u32;
            for i in start..end {
                let m = &mut burst.meta[i];
                if !m.is_next() {
                    continue;
                }
                let p = &mut pre[i - start];
                if let Err(r) = self.prepare(burst.pkts[i].data(), DIR, m.app, p) {
                    m.verdict = Verdict::Drop(Stage::Nat, r);
                    continue;
                }
                if DIR == REV {
                    if let Some(w) = self.elsewhere(p.p.tuple.dport) {
                        m.verdict = Verdict::Handoff { worker: w };
                        continue;
                    }
                }
                ready |= 1 << (i - start);
            }
            // Client side: a packet whose home line sent sessions away may need its second line or the
            // overflow index; they are prefetched and the packet translated after the others, while they
            // come in. Packets of one flow share their home line, so they keep their order.
            let mut later = 0u32;
            for round in 0..2 {
                let mut bits = if round == 0 { ready } else { later };
                if round == 1 {
                    // The overflow index's buckets came in behind the others: hint the sessions they name.
                    let mut b = later;
                    while b != 0 {
                        let k = b.trailing_zeros() as usize;
                        b &= b - 1;
                        self.table.prefetch_overflow(&pre[k].at);
                    }
                }
                while bits != 0 {
                    let k = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let mut found = None;
                    if DIR == FWD {
                        let at = &pre[k].at;
                        found = if round == 0 {
                            match self.table.find_home(at) {
                                Home::At(s) => Some(s),
                                Home::Absent => None,
                                Home::Away(spill) => {
                                    self.table.prefetch_away(at, spill);
                                    later |= 1 << k;
                                    continue;
                                }
                            }
                        } else {
                            self.table.find_client(at)
                        };
                    }
                    let i = start + k;
                    let p = &pre[k];
                    let m = &mut burst.meta[i];
                    let Some(d) = burst.pkts[i].data_mut() else {
                        m.verdict = Verdict::Drop(Stage::Nat, DropReason::NotWritable);
                        continue;
                    };
                    let r = if DIR == FWD {
                        let o = Origin {
                            app: m.app,
                            edge: m.sender,
                            stream: m.stream,
                        };
                        self.out_one(d, p, o, found, now).map(|_| ())
                    } else {
                        self.in_one(d, p, now).map(|o| {
                            m.app = o.app;
                            m.sender = o.edge;
                            m.stream = o.stream;
                        })
                    };
                    if let Err(r) = r {
                        m.verdict = Verdict::Drop(Stage::Nat, r);
                    }
                }
            }
            start = end;
        }
    }
}
