//! The run-to-completion worker loop: rx burst on each port -> presence stage -> tx by output port
//! (buffered, drained on a TSC deadline) -> bulk free of drops. Adaptive idle mode backs off with short
//! sleeps when bursts come back empty.
use crate::config::dataplane::IdleMode;
use crate::config::overlay::RoleSpec;
use crate::shared::Shared;
use crate::stats::Local;
use crate::tables::Tables;
use crossbeam_queue::ArrayQueue;
use pipelines::buf::PacketBuf;
use pipelines::hold::{HoldQueue, Released};
use pipelines::nat::{Nat, Origin};
use pipelines::neigh::{NeighEvent, NeighSnapshot};
use pipelines::overlay::dedupe::Dedupe;
use pipelines::overlay::encap::Encap;
use pipelines::overlay::mtu::MtuGuard;
use pipelines::overlay::replicate::Replicate;
use pipelines::overlay::roles::{EdgeIn, EdgeOut, GatewayIn, GatewayOut};
use pipelines::presence::Lane;
use pipelines::stage::{Burst as StageBurst, Meta, Verdict};
use pipelines::wire::ipv4;
use pipelines::{DropReason, MacAddr, Stage};
use pmd_bindings::{rdtsc, Burst, DropList, Mbuf, RxQueue, TxBuffer, TxQueue};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::time::Duration;

pub const BURST: usize = 32;
const TXB: usize = 64;
/// Empty polls before an adaptive worker starts sleeping.
const IDLE_SPINS: u32 = 64;
const FIRST_SLEEP_US: u64 = 5;

/// Packets from the control thread for a worker to send: (port index, frame).
pub type ToWorker = ArrayQueue<(u16, Mbuf)>;
/// Events from a worker to the control thread.
pub type ToControl = ArrayQueue<NeighEvent>;

pub struct Worker {
    pub idx: usize,
    pub shared: Arc<Shared>,
    pub rxqs: Vec<RxQueue>,
    pub txqs: Vec<TxQueue>,
    pub to_control: Arc<ToControl>,
    pub from_control: Arc<ToWorker>,
    pub idle: IdleMode,
    pub idle_max_us: u64,
    pub hold_packets: usize,
    pub hold_cycles: u64,
}

/// A worker's state: what the loop owns (its tx buffers, the drop list, the hold queue, the neighbour
/// snapshot and tables it reads, its clock and counters, the lanes that feed the role's stages), and the
/// role, which owns all the state of the packets' flows.
struct State {
    /// The role and all the state it owns (NAT sessions, duplicate-removal windows, sequence counters).
    role: Role,
    /// Packets collected for the role's stages, by lane: to service addresses (from clients at an edge,
    /// from targets at a gateway) and from the overlay. Run as bursts after each rx burst.
    svc: StageBurst<Mbuf>,
    ovl: StageBurst<Mbuf>,
    txbufs: Vec<TxBuffer<TXB>>,
    drops: DropList<BURST>,
    hold: HoldQueue<Mbuf>,
    neigh: Arc<NeighSnapshot>,
    neigh_gen: u64,
    macs: Vec<MacAddr>,
    /// The configuration tables in use and their generation.
    tables: Arc<Tables>,
    tables_gen: u64,
    /// ns of a monotonic clock (from the TSC), updated once per loop iteration.
    now_ns: u64,
    ticks: u64,
    /// Counters, published to the management thread every tick.
    l: Local,
    /// Overlay packets sent per path id.
    path_tx: [u64; 256],
}

/// A worker's role with the state it owns.
enum Role {
    /// A router: presence alone.
    Plain,
    /// Standalone full NAT (`[nat]` without `[overlay]`): this worker's sessions.
    Nat(Box<Nat>),
    Relay(pipelines::overlay::relay::Relay),
    Edge {
        out: Box<EdgeOut>,
        inn: Box<EdgeIn>,
    },
    Gateway {
        inn: Box<GatewayIn>,
        out: Box<GatewayOut>,
    },
}

/// Room in a stage burst: a full rx burst plus its copies (path sets have at most 8 paths).
const STAGE_CAP: usize = BURST * 9;
/// Dedupe streams examined for expiry per loop iteration.
const DEDUPE_EXPIRE_BUDGET: usize = 16;

impl Role {
    /// The NAT sessions this role owns (standalone full NAT, gateway).
    fn nat(&mut self) -> Option<&mut Nat> {
        match self {
            Role::Nat(n) => Some(n),
            Role::Gateway { inn, .. } => Some(&mut inn.nat),
            _ => None,
        }
    }

    /// The duplicate removal this role owns (edge, gateway).
    fn dedupe(&mut self) -> Option<&mut Dedupe> {
        match self {
            Role::Edge { inn, .. } => Some(&mut inn.dedupe),
            Role::Gateway { inn, .. } => Some(&mut inn.dedupe),
            _ => None,
        }
    }
}

impl State {
    fn publish_nat(&mut self) {
        if let Some((stats, live, away)) = self.role.nat().map(|n| (n.stats, n.live(), n.table().spilled())) {
            self.l.nat = stats;
            self.l.nat_live = live;
            self.l.nat_away = away;
        }
    }
}

/// Builds worker `idx`'s stages of the configured role.
fn build_role(sh: &Shared, t: &Tables, idx: usize) -> Role {
    let Some(o) = &t.overlay else {
        return match (&sh.nat, &t.nat) {
            (Some(cfg), Some(n)) => Role::Nat(Box::new(Nat::new(cfg, idx as u16, n.apps.clone()))),
            _ => Role::Plain,
        };
    };
    let sender = |s: &crate::config::overlay::Sender, routes| {
        (
            MtuGuard::new(s.link_mtu),
            Encap::new(
                o.node,
                o.address,
                s.udp_base,
                s.hop_limit,
                idx as u8,
                s.dests.clone(),
                routes,
            ),
            Replicate::new(s.sets.clone()),
        )
    };
    match &o.role {
        RoleSpec::Relay(r) => Role::Relay(r.clone()),
        RoleSpec::Edge(s, e) => {
            let (mtu, encap, replicate) = sender(s, e.routes.clone());
            Role::Edge {
                out: Box::new(EdgeOut {
                    classify: e.classifier.clone(),
                    mtu,
                    encap,
                    replicate,
                }),
                inn: Box::new(EdgeIn {
                    node: o.node,
                    peers: s.peers.clone(),
                    dedupe: Dedupe::new(s.dedupe),
                }),
            }
        }
        RoleSpec::Gateway(s) => {
            let (Some(cfg), Some(n)) = (&sh.nat, &t.nat) else {
                log::error!("the gateway role without [nat] (refused by validation): running as a router");
                return Role::Plain;
            };
            let (mtu, encap, replicate) = sender(s, Vec::new());
            Role::Gateway {
                inn: Box::new(GatewayIn {
                    node: o.node,
                    peers: s.peers.clone(),
                    dedupe: Dedupe::new(s.dedupe),
                    nat: Nat::new(cfg, idx as u16, n.apps.clone()),
                }),
                out: Box::new(GatewayOut { mtu, encap, replicate }),
            }
        }
    }
}

impl Worker {
    /// Runs until the stop flag is set; returns 0.
    pub fn run(mut self) -> i32 {
        let sh = self.shared.clone();
        let me = &sh.workers[self.idx];
        let tables = sh.tables.load_full();
        let tables_gen = sh.tables_gen.load(Acquire);
        let tick = (sh.tsc_hz / 10_000).max(1); // 100 µs
        let mut st = State {
            txbufs: (0..self.txqs.len()).map(|_| TxBuffer::new()).collect(),
            drops: DropList::new(),
            hold: HoldQueue::with_capacity(self.hold_packets),
            neigh: sh.neigh.load_full(),
            neigh_gen: sh.neigh_gen.load(Acquire),
            macs: sh.ports.iter().map(|p| p.mac).collect(),
            l: Local::default(),
            role: build_role(&sh, &tables, self.idx),
            svc: StageBurst::with_capacity(STAGE_CAP),
            ovl: StageBurst::with_capacity(STAGE_CAP),
            path_tx: [0; 256],
            ticks: 0,
            now_ns: 0,
            tables,
            tables_gen,
        };
        let handoffs = sh.workers.len() > 1;
        let tsc_hz = sh.tsc_hz.max(1) as u128;
        let ns_of = |tsc: u64| (tsc as u128 * 1_000_000_000 / tsc_hz) as u64;
        let mut burst: Burst<BURST> = Burst::new();
        let mut next_tick = rdtsc() + tick;
        let mut empty_polls = 0u32;
        let mut sleep_us = FIRST_SLEEP_US;
        log::info!(
            "worker {} running on lcore {} ({} ports)",
            self.idx,
            me.lcore,
            self.rxqs.len()
        );

        while !sh.stop.load(Relaxed) {
            st.now_ns = ns_of(rdtsc());
            let mut got = 0usize;
            for pi in 0..self.rxqs.len() {
                let n = self.rxqs[pi].rx_burst(&mut burst);
                if n == 0 {
                    continue;
                }
                got += n;
                st.l.rx += n as u64;
                while let Some(m) = burst.pop() {
                    self.handle(&mut st, pi as u16, m);
                }
                self.run_stages(&mut st);
            }
            while let Some((pi, m)) = self.from_control.pop() {
                self.send(&mut st, pi as usize, m);
            }
            if handoffs {
                // Packets whose state (NAT session, dedupe stream) this worker owns, from the workers they
                // arrived at.
                let n = sh.handoff.recv(self.idx, BURST, |m| {
                    st.l.handoff_in += 1;
                    self.handed_over(&mut st, m)
                });
                if n > 0 {
                    self.run_stages(&mut st);
                    got += n;
                }
            }
            let now_ns = st.now_ns;
            if let Some(n) = st.role.nat() {
                n.expire_slice(now_ns);
            }
            if let Some(d) = st.role.dedupe() {
                d.expire(now_ns, DEDUPE_EXPIRE_BUDGET);
            }
            st.drops.free_all();
            st.l.loops += 1;

            let now = rdtsc();
            if now >= next_tick {
                next_tick = now + tick;
                self.on_tick(&mut st, now);
            }
            if got == 0 && self.idle == IdleMode::Adaptive {
                empty_polls += 1;
                if empty_polls > IDLE_SPINS {
                    // Nothing is arriving: send what is buffered, publish, and sleep a little longer each
                    // time, up to idle_max_us.
                    self.drain_all(&mut st);
                    self.on_tick(&mut st, rdtsc());
                    std::thread::sleep(Duration::from_micros(sleep_us));
                    st.l.idle_sleeps += 1;
                    sleep_us = (sleep_us * 2).min(self.idle_max_us);
                }
            } else {
                empty_polls = 0;
                sleep_us = FIRST_SLEEP_US;
            }
        }
        self.drain_all(&mut st);
        for m in st.hold.drain() {
            st.l.drops.add(Stage::Neighbour, DropReason::NeighbourUnresolved, 1);
            drop(m);
        }
        for (m, _) in st.svc.drain().chain(st.ovl.drain()) {
            drop(m);
        }
        st.drops.free_all();
        st.publish_nat();
        self.publish_overlay(&mut st);
        me.publish(&st.l, 0, rdtsc());
        log::info!("worker {} stopped", self.idx);
        0
    }

    /// One received packet: the presence stage, then the role's stages of its lane, or at once what
    /// presence decided.
    #[inline]
    fn handle(&mut self, st: &mut State, pi: u16, mut m: Mbuf) {
        if !m.is_contiguous() {
            return drop_pkt(st, Stage::Rx, DropReason::MultiSegment, m);
        }
        let Some(data) = m.data_mut() else {
            return drop_pkt(st, Stage::Rx, DropReason::NotWritable, m);
        };
        let out = st.tables.presence.process(pi, data);
        if let Some(l) = out.learn {
            let ev = NeighEvent::Learn {
                port: pi,
                ip: l.ip,
                mac: l.mac,
                for_us: l.for_us,
            };
            if self.to_control.push(ev).is_err() {
                st.l.control_ring_full += 1;
            }
        }
        if !matches!(out.verdict, Verdict::Next) {
            return self.dispatch(st, out.verdict, pi, None, m);
        }
        match (out.lane, &st.role) {
            (Lane::Service, Role::Edge { .. }) => self.stage(st, Lane::Service, pi, m),
            (Lane::Service, Role::Gateway { inn, .. })
                if dst_of(m.data()).is_some_and(|d| inn.nat.pool().contains(d)) =>
            {
                self.stage(st, Lane::Service, pi, m)
            }
            // A gateway's own VIP clients, and standalone full NAT.
            (Lane::Service, _) => self.service(st, m),
            (Lane::Overlay, Role::Relay(_)) => self.relay(st, m),
            (Lane::Overlay, Role::Edge { .. } | Role::Gateway { .. }) => self.overlay_in(st, pi, m, true),
            // Presence passes overlay packets on only when the overlay is configured.
            (Lane::Overlay, Role::Plain | Role::Nat(_)) => drop_pkt(st, Stage::Worker, DropReason::Internal, m),
        }
    }

    /// Sends a routed frame to `next_hop` out of `port`, holding it while the neighbour is resolved.
    #[inline]
    fn forward(&mut self, st: &mut State, port: u16, next_hop: Ipv4Addr, m: Mbuf) {
        match st.neigh.lookup(port, next_hop) {
            Some(mac) => self.send_to_neighbour(st, port as usize, mac, m),
            None => {
                if self
                    .to_control
                    .push(NeighEvent::Resolve { port, ip: next_hop })
                    .is_err()
                {
                    st.l.control_ring_full += 1;
                }
                let deadline = rdtsc() + self.hold_cycles;
                if let Err(m) = st.hold.push(m, port, next_hop, deadline) {
                    drop_pkt(st, Stage::Neighbour, DropReason::HoldQueueFull, m);
                }
            }
        }
    }

    /// A packet to a VIP or a pool address (valid IPv4, checked by presence): full NAT toward the target,
    /// or back toward the client; replies owned by another worker are handed to it.
    #[inline]
    fn service(&mut self, st: &mut State, mut m: Mbuf) {
        let now = st.now_ns;
        let Some(d) = m.data_mut() else {
            return drop_pkt(st, Stage::Nat, DropReason::NotWritable, m);
        };
        // Presence passed on a valid IPv4 packet.
        let dst = dst_of(d).unwrap_or(Ipv4Addr::UNSPECIFIED);
        // Presence sends packets to service addresses here only when NAT owns them (validation).
        let Some(nat) = st.role.nat() else {
            return drop_pkt(st, Stage::Worker, DropReason::Internal, m);
        };
        if nat.pool().contains(dst) {
            return match nat.inbound_or_owner(d, now) {
                Ok(Ok(_)) => self.route(st, m),
                Ok(Err(w)) => self.hand_off(st, w as usize, m),
                Err(r) => drop_pkt(st, Stage::Nat, r, m),
            };
        }
        let app = match st.tables.nat.as_ref().map(|n| n.classifier.classify(d)) {
            Some(Ok((app, _))) => app,
            Some(Err(r)) => return drop_pkt(st, Stage::Classify, r, m),
            None => return drop_pkt(st, Stage::Worker, DropReason::Internal, m),
        };
        let o = Origin::direct(app);
        let Some(nat) = st.role.nat() else {
            return drop_pkt(st, Stage::Worker, DropReason::Internal, m);
        };
        match nat.outbound(d, o, now) {
            Ok(_) => self.route(st, m),
            Err(r) => drop_pkt(st, Stage::Nat, r, m),
        }
    }

    /// An overlay packet to a relay: the relay stage sends it on toward the next node of its path.
    #[inline]
    fn relay(&mut self, st: &mut State, mut m: Mbuf) {
        let Role::Relay(relay) = &st.role else {
            return drop_pkt(st, Stage::Worker, DropReason::Internal, m);
        };
        let v = relay.relay(&mut m);
        self.dispatch(st, v, 0, None, m)
    }

    /// An overlay packet to an edge or gateway: probes go to `probe_in`; others to the dedupe stage if this
    /// worker owns their stream (or `check_owner` is false: it was handed here), else to the owner.
    #[inline]
    fn overlay_in(&mut self, st: &mut State, pi: u16, m: Mbuf, check_owner: bool) {
        if pipelines::overlay::probe::flags(m.data()).is_some_and(pipelines::overlay::probe::is_probe) {
            return self.probe_in(st, m);
        }
        let workers = self.shared.workers.len();
        if check_owner && workers > 1 {
            // Unparsable packets stay here: the dedupe stage names the reason they are dropped.
            if let Ok(o) = pipelines::overlay::parse_outer(m.data()) {
                let w = pipelines::overlay::stream_owner(o.opt.sender, o.opt.stream, workers);
                if w != self.idx {
                    return self.hand_off(st, w, m);
                }
            }
        }
        self.stage(st, Lane::Overlay, pi, m)
    }

    /// A probe from a peer is turned into its reply, sent back through the relay it came from on this
    /// node's path through that relay; a probe reply goes to the control thread, which measures the path.
    fn probe_in(&mut self, st: &mut State, mut m: Mbuf) {
        let o = match pipelines::overlay::parse_outer(m.data()) {
            Ok(o) => o,
            Err(r) => return drop_pkt(st, Stage::Probe, r, m),
        };
        // Edges and gateways (the only roles that take overlay packets here) are senders.
        let Some((ov, s)) = st.tables.overlay.as_ref().and_then(|ov| ov.sender().map(|s| (ov, s))) else {
            return drop_pkt(st, Stage::Worker, DropReason::Internal, m);
        };
        if !s.peers.contains(&o.ip_src) {
            return drop_pkt(st, Stage::Probe, DropReason::NotAPeer, m);
        }
        if o.opt.dest != ov.node {
            return drop_pkt(st, Stage::Probe, DropReason::WrongNode, m);
        }
        if o.opt.flags & pipelines::wire::geneve::FLAG_PROBE_REPLY != 0 {
            let r = crate::shared::ProbeReply {
                path: o.opt.stream as u8,
                seq: o.opt.seq,
                at_ns: st.now_ns,
            };
            match self.shared.probe_replies[self.idx].push(r) {
                Ok(()) => st.l.probe_replies += 1,
                Err(_) => st.l.control_ring_full += 1,
            }
            return self.dispatch(st, Verdict::Consumed, 0, None, m);
        }
        // Our path back to the prober through the same relay.
        let back = s
            .dests
            .iter()
            .position(|d| *d == o.opt.sender)
            .and_then(|i| s.candidates[i].iter().find(|p| p.relay == o.ip_src))
            .map(|p| (p.id, p.port, p.next_hop));
        let Some((id, port, next_hop)) = back else {
            return drop_pkt(st, Stage::Probe, DropReason::NoPath, m);
        };
        let (me, node, hops) = (ov.address, ov.node, s.hop_limit);
        let Some(d) = m.data_mut() else {
            return drop_pkt(st, Stage::Probe, DropReason::NotWritable, m);
        };
        match pipelines::overlay::probe::reply_in_place(d, &o, me, node, id, hops) {
            Ok(n) => {
                let extra = PacketBuf::len(&m) - n;
                if !PacketBuf::trim(&mut m, extra) {
                    return drop_pkt(st, Stage::Probe, DropReason::MultiSegment, m);
                }
                st.l.probes_answered += 1;
                self.forward(st, port, next_hop, m)
            }
            Err(r) => drop_pkt(st, Stage::Probe, r, m),
        }
    }

    /// Adds a packet to a stage burst, running the stages first if it is full.
    #[inline]
    fn stage(&mut self, st: &mut State, lane: Lane, pi: u16, m: Mbuf) {
        let full = match lane {
            Lane::Service => st.svc.len() >= STAGE_CAP - BURST * 8,
            Lane::Overlay => st.ovl.len() >= STAGE_CAP - BURST * 8,
        };
        if full {
            self.run_stages(st);
        }
        let b = match lane {
            Lane::Service => &mut st.svc,
            Lane::Overlay => &mut st.ovl,
        };
        if let Err(m) = b.push(m, Meta::new(pi)) {
            drop_pkt(st, Stage::Worker, DropReason::BurstFull, m);
        }
    }

    /// Runs the role's stages over the collected bursts and sends each packet where its verdict says.
    fn run_stages(&mut self, st: &mut State) {
        let now = st.now_ns;
        if !st.svc.is_empty() {
            let mut b = std::mem::replace(&mut st.svc, StageBurst::with_capacity(0));
            match &mut st.role {
                Role::Edge { out, .. } => out.run(&mut b, &mut st.l.drops, now),
                Role::Gateway { inn, out } => out.run(&mut b, &mut inn.nat, &mut st.l.drops, now),
                _ => {}
            }
            self.dispatch_burst(st, &mut b);
            st.svc = b;
        }
        if !st.ovl.is_empty() {
            let mut b = std::mem::replace(&mut st.ovl, StageBurst::with_capacity(0));
            match &mut st.role {
                Role::Edge { out, inn } => inn.run(&mut b, out, now),
                Role::Gateway { inn, .. } => inn.run(&mut b, now),
                _ => {}
            }
            self.dispatch_burst(st, &mut b);
            st.ovl = b;
        }
    }

    fn dispatch_burst(&mut self, st: &mut State, b: &mut StageBurst<Mbuf>) {
        for (m, meta) in b.drain() {
            self.dispatch(st, meta.verdict, meta.in_port, meta.stamped.then_some(meta.path), m);
        }
    }

    /// Does what a packet's final verdict says: `in_port` is where it came in, `path` the overlay path
    /// whose outer header it carries, if any (counted as sent on that path). Inlined into each caller:
    /// a call per packet costs the relay about 3 % of its instructions.
    #[inline(always)]
    fn dispatch(&mut self, st: &mut State, v: Verdict, in_port: u16, path: Option<u8>, m: Mbuf) {
        match v {
            Verdict::Next | Verdict::Route => self.route(st, m),
            Verdict::Forward { port, next_hop } => {
                if let Some(p) = path {
                    st.path_tx[p as usize] += 1;
                }
                self.forward(st, port, next_hop, m)
            }
            Verdict::Reply => self.send(st, in_port as usize, m),
            Verdict::Consumed => {
                st.l.consumed += 1;
                st.drops.push(m);
            }
            Verdict::Handoff { worker } => self.hand_off(st, worker as usize, m),
            Verdict::Drop(s, r) => drop_pkt(st, s, r, m),
        }
    }

    #[inline]
    fn hand_off(&mut self, st: &mut State, to: usize, m: Mbuf) {
        match self.shared.handoff.send(self.idx, to, m) {
            Ok(()) => st.l.handoff_out += 1,
            Err(m) => drop_pkt(st, Stage::Handoff, DropReason::HandoffFull, m),
        }
    }

    /// A packet another worker handed here: a NAT reply or an overlay packet whose state this one owns.
    fn handed_over(&mut self, st: &mut State, m: Mbuf) {
        let overlay_addr = self.shared.overlay_addr;
        match &st.role {
            Role::Edge { .. } => self.overlay_in(st, 0, m, false),
            Role::Gateway { .. } => {
                if dst_of(m.data()).is_some_and(|d| Some(d) == overlay_addr) {
                    self.overlay_in(st, 0, m, false)
                } else {
                    self.stage(st, Lane::Service, 0, m)
                }
            }
            _ => self.nat_inbound(st, m),
        }
    }

    /// Reverse NAT for a packet from the target side whose session this worker owns.
    fn nat_inbound(&mut self, st: &mut State, mut m: Mbuf) {
        // Only standalone full NAT hands packets to this function (validation).
        let Some(nat) = st.role.nat() else {
            return drop_pkt(st, Stage::Worker, DropReason::Internal, m);
        };
        let Some(d) = m.data_mut() else {
            return drop_pkt(st, Stage::Nat, DropReason::NotWritable, m);
        };
        match nat.inbound(d, st.now_ns) {
            Ok(_) => self.route(st, m),
            Err(r) => drop_pkt(st, Stage::Nat, r, m),
        }
    }

    /// Routes a translated frame by its (new) destination, decrementing the TTL like any router hop.
    fn route(&mut self, st: &mut State, mut m: Mbuf) {
        let Some(d) = m.data_mut() else {
            return drop_pkt(st, Stage::Route, DropReason::NotWritable, m);
        };
        let mut ip = ipv4::Packet::new_unchecked(&mut d[pipelines::wire::ethernet::HEADER_LEN..]);
        if ip.ttl() <= 1 {
            return drop_pkt(st, Stage::Route, DropReason::Ipv4TtlExpired, m);
        }
        ip.decrement_ttl();
        let Some(nh) = st.tables.presence.routes().lookup(ip.dst()) else {
            return drop_pkt(st, Stage::Route, DropReason::NoRoute, m);
        };
        self.forward(st, nh.port, nh.addr, m)
    }

    #[inline]
    fn send(&mut self, st: &mut State, port: usize, m: Mbuf) {
        // Verdicts name ports of this node only (routes and paths are validated against them).
        let Some(buf) = st.txbufs.get_mut(port) else {
            return drop_pkt(st, Stage::Worker, DropReason::Internal, m);
        };
        if buf.is_full() {
            let (sent, dropped) = self.txqs[port].send(buf);
            st.l.tx += sent as u64;
            st.l.drops.add(Stage::Tx, DropReason::TxFull, dropped as u64);
        }
        if let Err(m) = buf.push(m) {
            drop_pkt(st, Stage::Tx, DropReason::TxFull, m);
        }
    }

    /// Addresses a routed frame to the neighbour `mac` from `port`'s own MAC and sends it out of `port`.
    #[inline]
    fn send_to_neighbour(&mut self, st: &mut State, port: usize, mac: MacAddr, mut m: Mbuf) {
        pipelines::overlay::set_l2(&mut m, st.macs[port], mac);
        self.send(st, port, m)
    }

    fn drain_all(&mut self, st: &mut State) {
        for (buf, q) in st.txbufs.iter_mut().zip(self.txqs.iter_mut()) {
            let (sent, dropped) = q.send(buf);
            st.l.tx += sent as u64;
            st.l.drops.add(Stage::Tx, DropReason::TxFull, dropped as u64);
        }
    }

    /// Every ~100 µs: drain tx buffers, pick up a new neighbour table, release or expire held packets,
    /// publish counters and the heartbeat.
    fn on_tick(&mut self, st: &mut State, now: u64) {
        self.drain_all(st);
        let sh = self.shared.clone();
        let tgen = sh.tables_gen.load(Acquire);
        if tgen != st.tables_gen {
            st.tables_gen = tgen;
            self.apply_tables(st, sh.tables.load_full());
        }
        let gen = sh.neigh_gen.load(Acquire);
        let new_table = gen != st.neigh_gen;
        if new_table {
            st.neigh = sh.neigh.load_full();
            st.neigh_gen = gen;
        }
        if !st.hold.is_empty() {
            // Take the queue out of the state so released packets can be sent from the callback; an empty
            // VecDeque does not allocate.
            let mut hold = std::mem::replace(&mut st.hold, HoldQueue::with_capacity(0));
            let neigh = st.neigh.clone();
            hold.release(
                now,
                |p, ip| neigh.lookup(p, ip),
                |r| match r {
                    Released::Ready { item, port, mac } => self.send_to_neighbour(st, port as usize, mac, item),
                    Released::Expired(item) => drop_pkt(st, Stage::Neighbour, DropReason::NeighbourUnresolved, item),
                },
            );
            st.hold = hold;
        }
        let me = &sh.workers[self.idx];
        let stall = me.stall_ms.swap(0, Relaxed);
        if stall > 0 {
            // Debug fault injection (management.debug): behave like a stuck worker, without heartbeat.
            let until = rdtsc() + stall * (sh.tsc_hz / 1000);
            while rdtsc() < until {
                std::hint::spin_loop();
            }
        }
        st.publish_nat();
        st.ticks += 1;
        if st.ticks.is_multiple_of(100) {
            self.publish_overlay(st);
        }
        me.publish(&st.l, st.hold.len(), rdtsc());
    }

    /// Takes new configuration tables (a reload), between bursts: the stage bursts are empty here.
    /// Sessions, dedupe state and sequence counters stay; applications, targets, VIPs and path sets change.
    fn apply_tables(&mut self, st: &mut State, t: Arc<Tables>) {
        match (&mut st.role, t.overlay.as_ref().map(|o| &o.role)) {
            (Role::Relay(r), Some(RoleSpec::Relay(n))) => *r = n.clone(),
            (Role::Edge { out, inn }, Some(RoleSpec::Edge(s, e))) => {
                out.classify = e.classifier.clone();
                out.encap.set_routes(s.dests.clone(), e.routes.clone());
                out.replicate.set_sets(s.sets.clone());
                inn.peers = s.peers.clone();
            }
            (Role::Gateway { inn, out }, Some(RoleSpec::Gateway(s))) => {
                if let Some(n) = &t.nat {
                    inn.nat.set_apps(n.apps.clone());
                }
                inn.peers = s.peers.clone();
                out.encap.set_routes(s.dests.clone(), Vec::new());
                out.replicate.set_sets(s.sets.clone());
            }
            _ => {}
        }
        if let (Role::Nat(n), Some(nt)) = (&mut st.role, &t.nat) {
            n.set_apps(nt.apps.clone());
        }
        st.tables = t;
        log::info!(
            "worker {}: new configuration tables (generation {})",
            self.idx,
            st.tables_gen
        );
    }

    /// Publishes duplicate-removal and per-path counters (every ~10 ms: summing the streams is not free).
    fn publish_overlay(&self, st: &mut State) {
        if let Some(d) = st.role.dedupe() {
            self.shared.workers[self.idx].publish_overlay(&d.totals(), d.streams(), &d.paths, &st.path_tx);
        }
    }
}

/// The IPv4 destination of an Ethernet + IPv4 frame, if it is long enough to have one.
#[inline]
fn dst_of(d: &[u8]) -> Option<Ipv4Addr> {
    ipv4::addrs_in_frame(d).map(|(_, dst)| dst)
}

#[inline]
fn drop_pkt(st: &mut State, s: Stage, r: DropReason, m: Mbuf) {
    st.l.drops.add(s, r, 1);
    st.drops.push(m);
}
