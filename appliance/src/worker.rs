//! The run-to-completion worker loop: rx burst on each port -> the role's stages, once per burst
//! (`pipelines::overlay::roles`: presence, then each lane's list) -> each packet's verdict carried out:
//! tx by output port (buffered, drained on a TSC deadline), hand-off to the worker that owns its state,
//! or bulk free of drops. Adaptive idle mode backs off with short sleeps when bursts come back empty.
use crate::config::dataplane::IdleMode;
use crate::shared::Shared;
use crate::stats::Local;
use crate::tables::Tables;
use crossbeam_queue::ArrayQueue;
use pipelines::hold::{HoldQueue, Released};
use pipelines::neigh::{NeighEvent, NeighSnapshot};
use pipelines::overlay::roles::Role;
use pipelines::stage::{Burst as StageBurst, Ctx, Events, Meta, Verdict};
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

/// A worker's state: what the loop owns (the burst the role runs on, its tx buffers, the drop list, the
/// hold queue, the neighbour snapshot it reads, its clock and counters), and the role, which
/// owns all the state of the packets' flows.
struct State {
    /// The role and all the state it owns (NAT sessions, duplicate-removal windows, sequence counters).
    role: Role,
    /// The packets of one rx burst (or of the hand-off ring) with their copies, as the role runs on them.
    burst: StageBurst<Mbuf>,
    /// What the role's stages found for the control thread during a run.
    events: Events,
    txbufs: Vec<TxBuffer<TXB>>,
    drops: DropList<BURST>,
    hold: HoldQueue<Mbuf>,
    neigh: Arc<NeighSnapshot>,
    neigh_gen: u64,
    macs: Vec<MacAddr>,
    /// The generation of the configuration tables the role was built from or reloaded with.
    tables_gen: u64,
    /// ns of a monotonic clock (from the TSC), updated once per loop iteration.
    now_ns: u64,
    ticks: u64,
    /// Counters, published to the management thread every tick.
    l: Local,
    /// Overlay packets sent per path id.
    path_tx: [u64; 256],
}

/// Room in the burst: an rx burst and eight copies of each packet (copies beyond it are dropped and
/// counted: replicate, burst_full).
const STAGE_CAP: usize = BURST * 9;
/// Dedupe streams examined for expiry per loop iteration.
const DEDUPE_EXPIRE_BUDGET: usize = 16;

impl State {
    fn publish_nat(&mut self) {
        if let Some((stats, live, away)) = self.role.nat().map(|n| (n.stats, n.live(), n.table().spilled())) {
            self.l.nat = stats;
            self.l.nat_live = live;
            self.l.nat_away = away;
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
            role: crate::role::build(&sh, &tables, self.idx),
            burst: StageBurst::with_capacity(STAGE_CAP),
            events: Events::with_capacity(STAGE_CAP),
            path_tx: [0; 256],
            ticks: 0,
            now_ns: 0,
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
                    self.take(&mut st, pi as u16, m);
                }
                self.run_role(&mut st, false);
            }
            while let Some((pi, m)) = self.from_control.pop() {
                self.send(&mut st, pi as usize, m);
            }
            if handoffs {
                // Packets whose state (NAT session, dedupe stream) this worker owns, from the workers they
                // arrived at.
                let n = sh.handoff.recv(self.idx, BURST, |m| {
                    st.l.handoff_in += 1;
                    self.take(&mut st, 0, m)
                });
                if n > 0 {
                    self.run_role(&mut st, true);
                    got += n;
                }
            }
            st.role.expire(st.now_ns, DEDUPE_EXPIRE_BUDGET);
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
        st.drops.free_all();
        st.publish_nat();
        self.publish_overlay(&mut st);
        me.publish(&st.l, 0, rdtsc());
        log::info!("worker {} stopped", self.idx);
        0
    }

    /// Adds a received (or handed-over) packet to the burst the role runs on. The stages read and write
    /// frames in place: a frame in several segments, or one that is not writable, goes no further.
    #[inline]
    fn take(&mut self, st: &mut State, pi: u16, m: Mbuf) {
        if !m.is_contiguous() {
            return drop_pkt(st, Stage::Rx, DropReason::MultiSegment, m);
        }
        if let Err(m) = st.burst.push(m, Meta::new(pi)) {
            drop_pkt(st, Stage::Worker, DropReason::BurstFull, m);
        }
    }

    /// Runs the role on the burst (`handed`: packets from the hand-off ring), passes its events to the
    /// control thread and carries out every packet's verdict.
    fn run_role(&mut self, st: &mut State, handed: bool) {
        let mut cx = Ctx {
            now_ns: st.now_ns,
            drops: &mut st.l.drops,
            events: &mut st.events,
        };
        if handed {
            st.role.run_handed(&mut st.burst, &mut cx);
        } else {
            st.role.run(&mut st.burst, &mut cx);
        }
        self.pass_events(st);
        let mut b = std::mem::replace(&mut st.burst, StageBurst::with_capacity(0));
        for (m, meta) in b.drain() {
            self.dispatch(st, meta, m);
        }
        st.burst = b;
    }

    /// Hands what the stages found to the control thread: ARP senders to learn, probe replies.
    fn pass_events(&mut self, st: &mut State) {
        let ev = &mut st.events;
        for (port, l) in ev.learned.drain(..) {
            let e = NeighEvent::Learn {
                port,
                ip: l.ip,
                mac: l.mac,
                for_us: l.for_us,
            };
            if self.to_control.push(e).is_err() {
                st.l.control_ring_full += 1;
            }
        }
        for r in ev.probe_replies.drain(..) {
            match self.shared.probe_replies[self.idx].push(r) {
                Ok(()) => st.l.probe_replies += 1,
                Err(_) => st.l.control_ring_full += 1,
            }
        }
        st.l.probes_answered += std::mem::take(&mut ev.probes_answered);
        // Events the stages could not keep (more than a burst's worth) did not reach the control thread
        // either.
        st.l.control_ring_full += std::mem::take(&mut ev.lost);
    }

    /// Does what a packet's final verdict says: `meta.in_port` is where it came in; a packet that carries
    /// an overlay path's outer header (`meta.stamped`) is counted as sent on that path.
    #[inline(always)]
    fn dispatch(&mut self, st: &mut State, meta: Meta, m: Mbuf) {
        match meta.verdict {
            Verdict::Forward { port, next_hop } => {
                if meta.stamped {
                    st.path_tx[meta.path as usize] += 1;
                }
                self.forward(st, port, next_hop, m)
            }
            Verdict::Reply => self.send(st, meta.in_port as usize, m),
            Verdict::Consumed => {
                st.l.consumed += 1;
                st.drops.push(m);
            }
            Verdict::Handoff { worker } => self.hand_off(st, worker as usize, m),
            Verdict::Drop(s, r) => drop_pkt(st, s, r, m),
            // Every role's lists end in a verdict above (route, replicate); a lane the role has no
            // stages for is ruled out by validation.
            Verdict::Next | Verdict::Route | Verdict::Lane(_) => drop_pkt(st, Stage::Worker, DropReason::Internal, m),
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

    #[inline]
    fn hand_off(&mut self, st: &mut State, to: usize, m: Mbuf) {
        match self.shared.handoff.send(self.idx, to, m) {
            Ok(()) => st.l.handoff_out += 1,
            Err(m) => drop_pkt(st, Stage::Handoff, DropReason::HandoffFull, m),
        }
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

    /// Takes new configuration tables (a reload), between bursts: the burst is empty here.
    fn apply_tables(&mut self, st: &mut State, t: Arc<Tables>) {
        crate::role::reload(&mut st.role, &t);
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

#[inline]
fn drop_pkt(st: &mut State, s: Stage, r: DropReason, m: Mbuf) {
    st.l.drops.add(s, r, 1);
    st.drops.push(m);
}
