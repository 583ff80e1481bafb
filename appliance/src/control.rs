//! The control thread: owns the neighbour table. Workers send it misses and ARP senders through bounded
//! lock-free rings; it sends ARP requests by handing frames to a worker (which owns the tx queues) and
//! publishes the resolved entries as a new read-only snapshot that workers pick up between bursts.
use crate::shared::Shared;
use crate::worker::{ToControl, ToWorker};
use pipelines::neigh::{emit_arp_request, NeighConfig, NeighEvent, NeighbourTable, Solicit, ARP_FRAME_LEN};
use pmd_bindings::Mempool;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Minimum Ethernet frame without FCS.
const MIN_FRAME: usize = 60;

pub struct Control {
    pub shared: Arc<Shared>,
    pub table: NeighbourTable,
    pub from_workers: Vec<Arc<ToControl>>,
    pub to_worker: Arc<ToWorker>,
    pub pool: Mempool,
    pub prober: crate::prober::Prober,
}

impl Control {
    pub fn new(
        shared: Arc<Shared>,
        cfg: NeighConfig,
        statics: &[(usize, std::net::Ipv4Addr, pipelines::MacAddr)],
        from_workers: Vec<Arc<ToControl>>,
        to_worker: Arc<ToWorker>,
        pool: Mempool,
    ) -> Self {
        let mut table = NeighbourTable::new(cfg);
        for &(port, ip, mac) in statics {
            table.add_static(port as u16, ip, mac);
        }
        let c = Control {
            shared,
            table,
            from_workers,
            to_worker,
            pool,
            prober: Default::default(),
        };
        c.publish();
        c
    }

    fn publish(&self) {
        self.shared.neigh.store(Arc::new(self.table.snapshot()));
        self.shared.neigh_gen.fetch_add(1, Release);
        let c = &self.shared.control;
        c.entries.store(self.table.len() as u64, Relaxed);
    }

    fn update_counters(&self) {
        let c = &self.shared.control;
        let s = self.table.stats;
        c.entries.store(self.table.len() as u64, Relaxed);
        c.requests_sent.store(s.requests_sent, Relaxed);
        c.resolved.store(s.resolved, Relaxed);
        c.failed.store(s.failed, Relaxed);
        c.table_full.store(s.table_full, Relaxed);
    }

    /// Runs until the stop flag is set, waking every millisecond.
    pub fn run(mut self) {
        let start = Instant::now();
        let mut solicits: Vec<Solicit> = Vec::with_capacity(64);
        while !self.shared.stop.load(Relaxed) {
            let now = start.elapsed().as_nanos() as u64;
            let mut changed = false;
            for q in &self.from_workers {
                while let Some(ev) = q.pop() {
                    let (s, ch) = self.table.on_event(ev, now);
                    changed |= ch;
                    solicits.extend(s);
                }
            }
            changed |= self.table.tick(now, &mut solicits);
            for s in solicits.drain(..) {
                self.send_request(s);
            }
            changed |= self.probe_round(now, &mut solicits);
            for s in solicits.drain(..) {
                self.send_request(s);
            }
            if changed {
                self.publish();
            }
            self.update_counters();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Path probes: sends what is due through worker 0, resolving next hops that are not known yet.
    /// Returns whether the neighbour table changed.
    fn probe_round(&mut self, now: u64, solicits: &mut Vec<Solicit>) -> bool {
        let sh = self.shared.clone();
        let tsc_ns = (pmd_bindings::rdtsc() as u128 * 1_000_000_000 / sh.tsc_hz.max(1) as u128) as u64;
        let mut prober = std::mem::take(&mut self.prober);
        let neigh = sh.neigh.load();
        let mut unresolved = Vec::new();
        let (pool, to_worker) = (&self.pool, &self.to_worker);
        prober.round(
            &sh,
            tsc_ns,
            |port, ip| neigh.lookup(port, ip),
            |port, ip| unresolved.push((port, ip)),
            |port, frame| {
                let Some(mut m) = pool.alloc() else { return false };
                if !m.append(frame.len() as u16) {
                    return false;
                }
                let Some(d) = m.data_mut() else { return false };
                d.copy_from_slice(frame);
                to_worker.push((port, m)).is_ok()
            },
        );
        self.prober = prober;
        let mut changed = false;
        for (port, ip) in unresolved {
            let (s, ch) = self.table.on_event(NeighEvent::Resolve { port, ip }, now);
            changed |= ch;
            solicits.extend(s);
        }
        changed
    }

    fn send_request(&self, s: Solicit) {
        let Some(port) = self.shared.presence.port(s.port) else {
            return;
        };
        let Some(src_ip) = port.source_for(s.target) else {
            return;
        };
        let Some(mut m) = self.pool.alloc() else {
            self.shared.control.tx_failed.fetch_add(1, Relaxed);
            return;
        };
        if !m.append(MIN_FRAME as u16) {
            self.shared.control.tx_failed.fetch_add(1, Relaxed);
            return;
        }
        let Some(d) = m.data_mut() else { return };
        d.fill(0);
        emit_arp_request(&mut d[..ARP_FRAME_LEN], port.mac, src_ip, s.target, s.dst);
        log::debug!("ARP request for {} on port {}", s.target, s.port);
        if self.to_worker.push((s.port, m)).is_err() {
            self.shared.control.tx_failed.fetch_add(1, Relaxed);
        }
    }
}
