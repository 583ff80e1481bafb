//! The measured worker loop, the generator and sink, and one role's measurement in one process.
use crate::roles::{Pipeline, Traffic};
use hdrhistogram::Histogram;
use pipelines::drop::DropCounts;
use pipelines::stage::{Burst as PBurst, Ctx, Events, Meta, Verdict};
use pipelines::MacAddr;
use pmd_bindings::{rdtsc, Burst, DropList, Mbuf, Mempool, RxQueue, TxBuffer, TxQueue};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

pub const BURST: usize = 32;

/// Buffers the sink has read, going back to the worker to be freed there, as a NIC's transmit completions
/// are freed by the core that sent them (so a worker's mempool cache gets its own buffers back).
pub type Completions = crossbeam_queue::ArrayQueue<Mbuf>;

/// Counters the worker and the generator publish for the per-second report (single writer each).
#[derive(Default)]
pub struct Live {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    pub drops: AtomicU64,
    pub gen_tx: AtomicU64,
    pub gen_full: AtomicU64,
    pub sink_rx: AtomicU64,
}

/// What the worker counted over one phase.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerTotals {
    pub rx: u64,
    pub tx: u64,
    pub drops: u64,
    pub busy_cycles: u64,
    pub cycles: u64,
    pub allocs: u64,
}

/// Runs `pipe` on packets from `rxq`, sending what it keeps to `txq`, until `stop` or `until_tsc`.
#[allow(clippy::too_many_arguments)]
pub fn worker(
    pipe: &mut Pipeline,
    rxq: &mut RxQueue,
    txq: &mut TxQueue,
    stop: &AtomicBool,
    until_tsc: u64,
    tsc_hz: u64,
    live: &Live,
    drops: &mut DropCounts,
    done: Option<&Completions>,
) -> WorkerTotals {
    let mut rxb: Burst<BURST> = Burst::new();
    let mut b: PBurst<Mbuf> = PBurst::with_capacity(4 * BURST);
    let mut txb: TxBuffer<{ 4 * BURST }> = TxBuffer::new();
    let mut dl: DropList<{ 4 * BURST }> = DropList::new();
    // What the stages find for a control thread (none of the measured lanes makes any), taken after each
    // burst as the appliance's worker does.
    let mut events = Events::with_capacity(4 * BURST);
    let (src, dst) = (MacAddr([2, 0, 0, 0, 0, 0x10]), MacAddr([2, 0, 0, 0, 0, 0x20]));
    let mut t = WorkerTotals::default();
    let allocs0 = crate::alloc::count();
    let start = rdtsc();
    let mut polls = 0u32;
    loop {
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(64) && (stop.load(Relaxed) || rdtsc() >= until_tsc) {
            break;
        }
        if let Some(q) = done {
            if !q.is_empty() {
                let t0 = rdtsc();
                for _ in 0..4 * BURST {
                    match q.pop() {
                        Some(m) => dl.push(m),
                        None => break,
                    }
                }
                dl.free_all();
                t.busy_cycles += rdtsc() - t0;
            }
        }
        let n = rxq.rx_burst(&mut rxb);
        if n == 0 {
            continue;
        }
        let t0 = rdtsc();
        let now_ns = (t0 as u128 * 1_000_000_000 / tsc_hz as u128) as u64;
        while let Some(m) = rxb.pop() {
            let _ = b.push(m, Meta::new(0));
        }
        pipe.run(
            &mut b,
            &mut Ctx {
                now_ns,
                drops,
                events: &mut events,
            },
        );
        events.learned.clear();
        events.probe_replies.clear();
        for (mut m, meta) in b.drain() {
            match meta.verdict {
                Verdict::Forward { .. } => {
                    pipelines::overlay::set_l2(&mut m, src, dst);
                    if let Err(m) = txb.push(m) {
                        dl.push(m);
                        t.drops += 1;
                    }
                }
                Verdict::Drop(s, r) => {
                    drops.add(s, r, 1);
                    t.drops += 1;
                    dl.push(m);
                }
                _ => {
                    t.drops += 1;
                    dl.push(m);
                }
            }
        }
        let (sent, dropped) = txq.send(&mut txb);
        dl.free_all();
        t.rx += n as u64;
        t.tx += sent as u64;
        t.drops += dropped as u64;
        t.busy_cycles += rdtsc() - t0;
        live.rx.store(t.rx, Relaxed);
        live.tx.store(t.tx, Relaxed);
        live.drops.store(t.drops, Relaxed);
    }
    t.cycles = rdtsc() - start;
    t.allocs = crate::alloc::count() - allocs0;
    t
}

/// The generator and sink (one core): cycles through the role's frames, writes a sequence number where
/// the gateway needs one and its TSC into every packet, sends bursts of 32; reads back what the worker
/// sent and records the latency of every packet.
pub struct Generator {
    pub traffic: Traffic,
    pub pool: Mempool,
    pub txq: TxQueue,
    pub rxq: RxQueue,
    next: usize,
    seq: Vec<u32>,
    rng: u64,
    /// Per-copy loss probability (gateway input), in 1/2^32.
    loss: u64,
    /// Probability that the second copy of a packet is sent at all (gateway input), in 1/2^32.
    dup: u64,
    /// Probability that a packet starts a new flow (a source address never used before), in 1/2^32.
    new_flow: u64,
    fresh: u32,
    pub hist: Histogram<u64>,
    /// Where read buffers go (in-process: back to the worker); None frees them here.
    pub completions: Option<Arc<Completions>>,
    pub sent: u64,
    pub full: u64,
    pub received: u64,
    tsc_hz: u64,
}

impl Generator {
    pub fn new(traffic: Traffic, pool: Mempool, txq: TxQueue, rxq: RxQueue, mix: Mix, tsc_hz: u64) -> Generator {
        let seq = vec![0; traffic.counters];
        Generator {
            traffic,
            pool,
            txq,
            rxq,
            next: 0,
            seq,
            rng: 0x2545_f491_4f6c_dd1d,
            loss: prob(mix.loss),
            dup: prob(mix.dup_ratio),
            new_flow: prob(mix.new_flows),
            fresh: 0,
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram"),
            completions: None,
            sent: 0,
            full: 0,
            received: 0,
            tsc_hz,
        }
    }

    /// New input (the next role): sequence counters start over, the counts and histogram too.
    pub fn reset(&mut self, traffic: Traffic) {
        self.seq = vec![0; traffic.counters];
        self.traffic = traffic;
        self.next = 0;
        self.sent = 0;
        self.full = 0;
        self.received = 0;
        self.hist.reset();
    }

    /// True with probability p (in 1/2^32).
    #[inline]
    fn chance(&mut self, p: u64) -> bool {
        if p == 0 {
            return false;
        }
        if p >= 1 << 32 {
            return true;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng & 0xffff_ffff) < p
    }

    /// Runs until `stop`; `pps` paces the sending (None: as fast as the ring takes them).
    pub fn run(&mut self, stop: &AtomicBool, pps: Option<f64>, live: &Live) {
        let mut txb: TxBuffer<BURST> = TxBuffer::new();
        let mut rxb: Burst<BURST> = Burst::new();
        let mut done: DropList<BURST> = DropList::new();
        let interval = pps.map(|r| (BURST as f64 * self.tsc_hz as f64 / r.max(1.0)) as u64);
        let mut next_send = rdtsc();
        let n = self.traffic.frames.len();
        let mut seq = 0u32;
        let mut fresh: Option<u32> = None;
        while !stop.load(Relaxed) {
            let now = rdtsc();
            if interval.is_none_or(|_| now >= next_send) {
                if let Some(iv) = interval {
                    next_send = next_send.max(now.saturating_sub(iv * 4)) + iv;
                }
                for _ in 0..BURST {
                    let i = self.next;
                    self.next = if i + 1 == n { 0 } else { i + 1 };
                    let first = !self.traffic.pairs || i.is_multiple_of(2);
                    if self.traffic.pairs && first {
                        let c = self.traffic.counter[i / 2] as usize;
                        seq = self.seq[c];
                        self.seq[c] = seq.wrapping_add(1);
                    }
                    if first {
                        fresh = self.chance(self.new_flow).then(|| {
                            self.fresh = self.fresh.wrapping_add(1);
                            0xac10_0000 | (self.fresh & 0x000f_ffff)
                        });
                    }
                    if self.traffic.pairs && (self.chance(self.loss) || (!first && !self.chance(self.dup))) {
                        continue;
                    }
                    let f = &self.traffic.frames[i];
                    let Some(mut m) = self.pool.alloc() else { break };
                    if !m.append(f.len() as u16) {
                        continue;
                    }
                    let Some(d) = m.data_mut() else { continue };
                    d.copy_from_slice(f);
                    if self.traffic.pairs {
                        let at = pipelines::overlay::OPT_OFF + 12;
                        d[at..at + 4].copy_from_slice(&seq.to_be_bytes());
                    }
                    let ts = self.traffic.ts_in;
                    if d.len() >= ts + 8 {
                        d[ts..ts + 8].copy_from_slice(&now.to_le_bytes());
                    }
                    if let Some(src) = fresh {
                        // A new flow: another client source address (172.16/12), header checksum patched.
                        let ip = self.traffic.inner;
                        if d.len() >= ip + 20 {
                            let old = u32::from_be_bytes([d[ip + 12], d[ip + 13], d[ip + 14], d[ip + 15]]);
                            let c = u16::from_be_bytes([d[ip + 10], d[ip + 11]]);
                            let c = pipelines::checksum::update32(c, old, src);
                            d[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
                            d[ip + 12..ip + 16].copy_from_slice(&src.to_be_bytes());
                        }
                    }
                    let _ = txb.push(m);
                }
                let (sent, dropped) = self.txq.send(&mut txb);
                self.sent += sent as u64;
                self.full += dropped as u64;
                live.gen_tx.store(self.sent, Relaxed);
                live.gen_full.store(self.full, Relaxed);
            }
            self.sink(&mut rxb, &mut done);
            live.sink_rx.store(self.received, Relaxed);
        }
    }

    /// Reads back what the worker sent: latency per packet, then the buffers go back to the pool.
    #[inline]
    pub fn sink(&mut self, rxb: &mut Burst<BURST>, done: &mut DropList<BURST>) -> usize {
        let n = self.rxq.rx_burst(rxb);
        if n == 0 {
            return 0;
        }
        let now = rdtsc();
        let at = self.traffic.ts_out;
        while let Some(m) = rxb.pop() {
            let d = m.data();
            if d.len() >= at + 8 {
                let ts = u64::from_le_bytes(d[at..at + 8].try_into().unwrap_or([0; 8]));
                let ns = (now.saturating_sub(ts) as u128 * 1_000_000_000 / self.tsc_hz as u128) as u64;
                let _ = self.hist.record(ns.max(1));
            }
            match &self.completions {
                Some(q) => {
                    if let Err(m) = q.push(m) {
                        done.push(m);
                    }
                }
                None => done.push(m),
            }
        }
        done.free_all();
        self.received += n as u64;
        n
    }

    /// Takes back whatever is still queued toward the sink (end of a run).
    pub fn drain_sink(&mut self) {
        let mut rxb: Burst<BURST> = Burst::new();
        let mut done: DropList<BURST> = DropList::new();
        for _ in 0..100_000 {
            if self.sink(&mut rxb, &mut done) == 0 {
                break;
            }
        }
    }
}

/// What the generator mixes into the input.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Gateway: probability that each copy is lost on its path.
    pub loss: f64,
    /// Gateway: probability that a packet's second copy is sent (1: every packet arrives twice).
    pub dup_ratio: f64,
    /// Probability that a packet opens a new flow (a new NAT session at the gateway).
    pub new_flows: f64,
}

fn prob(p: f64) -> u64 {
    (p.clamp(0.0, 1.0) * 4294967296.0) as u64
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let us = |v: u64| v as f64 / 1000.0;
        Latency {
            samples: h.len(),
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// Shared slot through which the generator moves to its lcore and back between phases.
pub type GenSlot = Arc<Mutex<Option<Generator>>>;
