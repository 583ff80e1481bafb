//! The control thread: owns the neighbour table. Workers send it misses and ARP senders through bounded
//! lock-free rings; it sends ARP requests by handing frames to a worker (which owns the tx queues) and
//! publishes the resolved entries as a new read-only snapshot that workers pick up between bursts.
use crate::runtime::Shared;
use crate::worker::{ToControl, ToWorker};
use pipelines::neigh::{emit_arp_request, NeighConfig, NeighbourTable, Solicit, ARP_FRAME_LEN};
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
            if changed {
                self.publish();
            }
            self.update_counters();
            std::thread::sleep(Duration::from_millis(1));
        }
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
