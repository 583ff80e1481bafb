//! The run-to-completion worker loop: rx burst on each port -> presence stage -> tx by output port
//! (buffered, drained on a TSC deadline) -> bulk free of drops. Adaptive idle mode backs off with short
//! sleeps when bursts come back empty.
use crate::config::IdleMode;
use crate::runtime::Shared;
use crate::stats::Local;
use crossbeam_queue::ArrayQueue;
use pipelines::hold::{HoldQueue, Released};
use pipelines::nat::{Nat, Origin};
use pipelines::neigh::{NeighEvent, NeighSnapshot};
use pipelines::overlay::Verdict;
use pipelines::presence::Action;
use pipelines::wire::ipv4;
use pipelines::{DropReason, MacAddr};
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

struct State {
    txbufs: Vec<TxBuffer<TXB>>,
    drops: DropList<BURST>,
    hold: HoldQueue<Mbuf>,
    neigh: Arc<NeighSnapshot>,
    neigh_gen: u64,
    macs: Vec<MacAddr>,
    l: Local,
    /// This worker's NAT sessions, when `[nat]` is configured.
    nat: Option<Nat>,
    /// ns of a monotonic clock (from the TSC), updated once per loop iteration.
    now_ns: u64,
}

impl Worker {
    /// Runs until the stop flag is set; returns 0.
    pub fn run(mut self) -> i32 {
        let sh = self.shared.clone();
        let me = &sh.workers[self.idx];
        let tick = (sh.tsc_hz / 10_000).max(1); // 100 µs
        let mut st = State {
            txbufs: (0..self.txqs.len()).map(|_| TxBuffer::new()).collect(),
            drops: DropList::new(),
            hold: HoldQueue::with_capacity(self.hold_packets),
            neigh: sh.neigh.load_full(),
            neigh_gen: sh.neigh_gen.load(Acquire),
            macs: sh.ports.iter().map(|p| p.mac).collect(),
            l: Local::default(),
            nat: sh
                .nat
                .as_ref()
                .map(|n| Nat::new(&n.cfg, self.idx as u16, n.apps.clone())),
            now_ns: 0,
        };
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
            }
            while let Some((pi, m)) = self.from_control.pop() {
                self.send(&mut st, pi as usize, m);
            }
            if st.nat.is_some() {
                // Replies whose session this worker owns, from the workers they arrived at.
                got += sh.handoff.recv(self.idx, BURST, |m| {
                    st.l.handoff_in += 1;
                    self.nat_inbound(&mut st, m)
                });
                if let Some(n) = st.nat.as_mut() {
                    n.expire_slice(st.now_ns);
                }
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
            st.l.drops.add(DropReason::NeighbourUnresolved, 1);
            drop(m);
        }
        st.drops.free_all();
        if let Some(n) = &st.nat {
            st.l.nat = n.stats;
            st.l.nat_live = n.live();
        }
        me.publish(&st.l, 0, rdtsc());
        log::info!("worker {} stopped", self.idx);
        0
    }

    #[inline]
    fn handle(&mut self, st: &mut State, pi: u16, mut m: Mbuf) {
        if !m.is_contiguous() {
            return drop_pkt(st, DropReason::MultiSegment, m);
        }
        let presence = &self.shared.presence;
        let Some(data) = m.data_mut() else {
            return drop_pkt(st, DropReason::MultiSegment, m);
        };
        let out = presence.process(pi, data);
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
        match out.action {
            Action::Reply => self.send(st, pi as usize, m),
            Action::Forward { port, next_hop } => self.forward(st, port, next_hop, m),
            Action::Consumed => {
                st.l.consumed += 1;
                st.drops.push(m);
            }
            Action::Service => self.service(st, m),
            Action::Overlay => self.overlay(st, m),
            Action::Drop(r) => drop_pkt(st, r, m),
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
                    drop_pkt(st, DropReason::HoldQueueFull, m);
                }
            }
        }
    }

    /// A packet to a VIP or a pool address (valid IPv4, checked by presence): full NAT toward the target,
    /// or back toward the client; replies owned by another worker are handed to it.
    #[inline]
    fn service(&mut self, st: &mut State, mut m: Mbuf) {
        let (Some(nat), Some(ns)) = (st.nat.as_mut(), self.shared.nat.as_ref()) else {
            return drop_pkt(st, DropReason::ProtocolUnhandled, m);
        };
        let Some(d) = m.data_mut() else {
            return drop_pkt(st, DropReason::MultiSegment, m);
        };
        let dst = Ipv4Addr::new(d[30], d[31], d[32], d[33]);
        if nat.pool().contains(dst) {
            return match nat.inbound_or_owner(d, st.now_ns) {
                Ok(Ok(_)) => self.route(st, m),
                Ok(Err(w)) => match self.shared.handoff.send(self.idx, w as usize, m) {
                    Ok(()) => st.l.handoff_out += 1,
                    Err(m) => drop_pkt(st, DropReason::HandoffFull, m),
                },
                Err(r) => drop_pkt(st, r, m),
            };
        }
        let app = match ns.classifier.classify(d) {
            Ok((app, _)) => app,
            Err(r) => return drop_pkt(st, r, m),
        };
        let o = Origin {
            app,
            edge: 0,
            stream: 0,
        };
        match nat.outbound(d, o, st.now_ns) {
            Ok(_) => self.route(st, m),
            Err(r) => drop_pkt(st, r, m),
        }
    }

    /// An overlay packet to this node: the relay stage sends it on toward the next node of its path.
    #[inline]
    fn overlay(&mut self, st: &mut State, mut m: Mbuf) {
        let Some(relay) = self.shared.relay.as_ref() else {
            return drop_pkt(st, DropReason::ProtocolUnhandled, m);
        };
        match relay.relay(&mut m) {
            Verdict::Forward { port, next_hop } => self.forward(st, port, next_hop, m),
            Verdict::Drop(r) => drop_pkt(st, r, m),
            _ => drop_pkt(st, DropReason::ProtocolUnhandled, m),
        }
    }

    /// Reverse NAT for a packet from the target side whose session this worker owns.
    fn nat_inbound(&mut self, st: &mut State, mut m: Mbuf) {
        let (Some(nat), Some(d)) = (st.nat.as_mut(), m.data_mut()) else {
            return drop_pkt(st, DropReason::MultiSegment, m);
        };
        match nat.inbound(d, st.now_ns) {
            Ok(_) => self.route(st, m),
            Err(r) => drop_pkt(st, r, m),
        }
    }

    /// Routes a translated frame by its (new) destination, decrementing the TTL like any router hop.
    fn route(&mut self, st: &mut State, mut m: Mbuf) {
        let Some(d) = m.data_mut() else {
            return drop_pkt(st, DropReason::MultiSegment, m);
        };
        let mut ip = ipv4::Packet::new_unchecked(&mut d[14..]);
        if ip.ttl() <= 1 {
            return drop_pkt(st, DropReason::Ipv4TtlExpired, m);
        }
        ip.decrement_ttl();
        let Some(nh) = self.shared.presence.routes().lookup(ip.dst()) else {
            return drop_pkt(st, DropReason::NoRoute, m);
        };
        self.forward(st, nh.port, nh.addr, m)
    }

    #[inline]
    fn send(&mut self, st: &mut State, port: usize, m: Mbuf) {
        let Some(buf) = st.txbufs.get_mut(port) else {
            return drop_pkt(st, DropReason::NoRoute, m);
        };
        if buf.is_full() {
            let (sent, dropped) = buf.drain(&mut self.txqs[port]);
            st.l.tx += sent as u64;
            st.l.drops.add(DropReason::TxFull, dropped as u64);
        }
        if let Err(m) = buf.push(m) {
            drop_pkt(st, DropReason::TxFull, m);
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
            let (sent, dropped) = buf.drain(q);
            st.l.tx += sent as u64;
            st.l.drops.add(DropReason::TxFull, dropped as u64);
        }
    }

    /// Every ~100 µs: drain tx buffers, pick up a new neighbour table, release or expire held packets,
    /// publish counters and the heartbeat.
    fn on_tick(&mut self, st: &mut State, now: u64) {
        self.drain_all(st);
        let sh = self.shared.clone();
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
                    Released::Expired(item) => drop_pkt(st, DropReason::NeighbourUnresolved, item),
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
        if let Some(n) = &st.nat {
            st.l.nat = n.stats;
            st.l.nat_live = n.live();
        }
        me.publish(&st.l, st.hold.len(), rdtsc());
    }
}

#[inline]
fn drop_pkt(st: &mut State, r: DropReason, m: Mbuf) {
    st.l.drops.add(r, 1);
    st.drops.push(m);
}
