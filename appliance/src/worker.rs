//! The run-to-completion worker loop: rx burst on each port -> presence stage -> tx by output port
//! (buffered, drained on a TSC deadline) -> bulk free of drops. Adaptive idle mode backs off with short
//! sleeps when bursts come back empty.
use crate::config::IdleMode;
use crate::runtime::Shared;
use crate::stats::Local;
use crossbeam_queue::ArrayQueue;
use pipelines::hold::{HoldQueue, Released};
use pipelines::neigh::{NeighEvent, NeighSnapshot};
use pipelines::presence::Action;
use pipelines::{DropReason, MacAddr};
use pmd_bindings::{rdtsc, Burst, DropList, Mbuf, RxQueue, TxBuffer, TxQueue};
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
        };
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
            Action::Forward { port, next_hop } => match st.neigh.lookup(port, next_hop) {
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
            },
            Action::Consumed => {
                st.l.consumed += 1;
                st.drops.push(m);
            }
            Action::Drop(r) => drop_pkt(st, r, m),
        }
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
        me.publish(&st.l, st.hold.len(), rdtsc());
    }
}

#[inline]
fn drop_pkt(st: &mut State, r: DropReason, m: Mbuf) {
    st.l.drops.add(r, 1);
    st.drops.push(m);
}
