//! Per-worker counters. Each worker counts into plain integers and publishes them on its ~100 µs tick as
//! single-writer relaxed atomics, which the management thread reads; nothing else writes them.
use pipelines::drop::DropCounts;
use pipelines::nat::NatStats;
use pipelines::overlay::dedupe::{Counters, PathRx};
use pipelines::{DropReason, Stage};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What one worker counts, locally.
#[derive(Debug, Clone, Default)]
pub struct Local {
    pub rx: u64,
    pub tx: u64,
    /// Packets used up without a reply (ARP replies handed to the control thread).
    pub consumed: u64,
    pub idle_sleeps: u64,
    pub loops: u64,
    /// Events to the control thread lost because its ring was full.
    pub control_ring_full: u64,
    pub drops: DropCounts,
    /// Packets handed to the worker owning their NAT session, and received from others.
    pub handoff_out: u64,
    pub handoff_in: u64,
    pub nat: NatStats,
    /// Live NAT sessions by protocol (tcp, udp, icmp).
    pub nat_live: [u64; 3],
    /// Live NAT sessions kept off their home line (a pool close to the session count makes many).
    pub nat_away: u64,
    /// Path probes answered for other nodes, and probe replies handed to the control thread.
    pub probes_answered: u64,
    pub probe_replies: u64,
}

/// The published copy of a worker's counters, plus its heartbeat.
#[repr(align(64))]
pub struct WorkerShared {
    pub lcore: u32,
    rx: AtomicU64,
    tx: AtomicU64,
    consumed: AtomicU64,
    idle_sleeps: AtomicU64,
    loops: AtomicU64,
    control_ring_full: AtomicU64,
    hold_len: AtomicU64,
    drops: [[AtomicU64; DropReason::COUNT]; Stage::COUNT],
    handoff_out: AtomicU64,
    handoff_in: AtomicU64,
    nat_created: [AtomicU64; 3],
    nat_expired: [AtomicU64; 3],
    nat_live: [AtomicU64; 3],
    nat_away: AtomicU64,
    nat_out: AtomicU64,
    nat_in: AtomicU64,
    /// TSC at the worker's last completed loop iteration (published on its tick).
    pub heartbeat: AtomicU64,
    /// Debug fault injection: milliseconds the worker should stall at its next tick.
    pub stall_ms: AtomicU64,
    /// Duplicate removal (edge, gateway): passed, discarded, out of order, rogue, lost, resets; streams.
    dedupe: [AtomicU64; 6],
    dedupe_streams: AtomicU64,
    /// Packets received and sent per overlay path id (edge, gateway).
    path_rx: [AtomicU64; 256],
    path_tx: [AtomicU64; 256],
}

impl WorkerShared {
    pub fn new(lcore: u32, now_tsc: u64) -> Self {
        WorkerShared {
            lcore,
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            idle_sleeps: AtomicU64::new(0),
            loops: AtomicU64::new(0),
            control_ring_full: AtomicU64::new(0),
            hold_len: AtomicU64::new(0),
            drops: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            handoff_out: AtomicU64::new(0),
            handoff_in: AtomicU64::new(0),
            nat_created: Default::default(),
            nat_expired: Default::default(),
            nat_live: Default::default(),
            nat_away: AtomicU64::new(0),
            nat_out: AtomicU64::new(0),
            nat_in: AtomicU64::new(0),
            heartbeat: AtomicU64::new(now_tsc),
            stall_ms: AtomicU64::new(0),
            dedupe: Default::default(),
            dedupe_streams: AtomicU64::new(0),
            path_rx: std::array::from_fn(|_| AtomicU64::new(0)),
            path_tx: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The overlay counters, published less often than the others (every millisecond): they are 500
    /// words. Called only by the owning worker.
    pub fn publish_overlay(&self, c: &Counters, streams: usize, rx: &[PathRx; 256], tx: &[u64; 256]) {
        let v = [c.passed, c.discarded, c.out_of_order, c.rogue, c.lost, c.resets];
        for (a, v) in self.dedupe.iter().zip(v) {
            a.store(v, Relaxed);
        }
        self.dedupe_streams.store(streams as u64, Relaxed);
        for i in 0..256 {
            self.path_rx[i].store(rx[i].packets, Relaxed);
            self.path_tx[i].store(tx[i], Relaxed);
        }
    }

    /// Duplicate-removal counters and tracked streams.
    pub fn dedupe(&self) -> (Counters, u64) {
        let v: [u64; 6] = std::array::from_fn(|i| self.dedupe[i].load(Relaxed));
        (
            Counters {
                passed: v[0],
                discarded: v[1],
                out_of_order: v[2],
                rogue: v[3],
                lost: v[4],
                resets: v[5],
            },
            self.dedupe_streams.load(Relaxed),
        )
    }

    /// Packets (received, sent) on overlay path `id`.
    pub fn path(&self, id: u8) -> (u64, u64) {
        (
            self.path_rx[id as usize].load(Relaxed),
            self.path_tx[id as usize].load(Relaxed),
        )
    }

    /// Called only by the owning worker.
    #[inline]
    pub fn publish(&self, l: &Local, hold_len: usize, now_tsc: u64) {
        self.rx.store(l.rx, Relaxed);
        self.tx.store(l.tx, Relaxed);
        self.consumed.store(l.consumed, Relaxed);
        self.idle_sleeps.store(l.idle_sleeps, Relaxed);
        self.loops.store(l.loops, Relaxed);
        self.control_ring_full.store(l.control_ring_full, Relaxed);
        self.hold_len.store(hold_len as u64, Relaxed);
        // Only the stages that dropped anything: the others' counters are all zero, as published.
        for (s, row) in l.drops.rows() {
            for (a, v) in self.drops[s.index()].iter().zip(row) {
                a.store(*v, Relaxed);
            }
        }
        self.handoff_out.store(l.handoff_out, Relaxed);
        self.handoff_in.store(l.handoff_in, Relaxed);
        for p in 0..3 {
            self.nat_created[p].store(l.nat.created[p], Relaxed);
            self.nat_expired[p].store(l.nat.expired[p], Relaxed);
            self.nat_live[p].store(l.nat_live[p], Relaxed);
        }
        self.nat_away.store(l.nat_away, Relaxed);
        self.nat_out.store(l.nat.translated_out, Relaxed);
        self.nat_in.store(l.nat.translated_in, Relaxed);
        self.heartbeat.store(now_tsc, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            lcore: self.lcore,
            rx: self.rx.load(Relaxed),
            tx: self.tx.load(Relaxed),
            consumed: self.consumed.load(Relaxed),
            idle_sleeps: self.idle_sleeps.load(Relaxed),
            loops: self.loops.load(Relaxed),
            control_ring_full: self.control_ring_full.load(Relaxed),
            hold_len: self.hold_len.load(Relaxed),
            drops: DropCounts::from_fn(|s, r| self.drops[s.index()][r.index()].load(Relaxed)),
            heartbeat: self.heartbeat.load(Relaxed),
            handoff_out: self.handoff_out.load(Relaxed),
            handoff_in: self.handoff_in.load(Relaxed),
            nat: NatStats {
                created: std::array::from_fn(|p| self.nat_created[p].load(Relaxed)),
                expired: std::array::from_fn(|p| self.nat_expired[p].load(Relaxed)),
                translated_out: self.nat_out.load(Relaxed),
                translated_in: self.nat_in.load(Relaxed),
            },
            nat_live: std::array::from_fn(|p| self.nat_live[p].load(Relaxed)),
            nat_away: self.nat_away.load(Relaxed),
        }
    }
}

/// A worker's counters as read by another thread.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub lcore: u32,
    pub rx: u64,
    pub tx: u64,
    pub consumed: u64,
    pub idle_sleeps: u64,
    pub loops: u64,
    pub control_ring_full: u64,
    pub hold_len: u64,
    pub drops: DropCounts,
    pub heartbeat: u64,
    pub handoff_out: u64,
    pub handoff_in: u64,
    pub nat: NatStats,
    pub nat_live: [u64; 3],
    pub nat_away: u64,
}

/// Counters of the control thread (neighbour resolution).
#[derive(Default)]
pub struct ControlShared {
    pub entries: AtomicU64,
    pub requests_sent: AtomicU64,
    pub resolved: AtomicU64,
    pub failed: AtomicU64,
    pub table_full: AtomicU64,
    /// ARP requests that could not be handed to a worker (no mbuf or ring full).
    pub tx_failed: AtomicU64,
    /// Configuration reloads applied and refused.
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// Path sets replaced by the selection.
    pub path_set_changes: AtomicU64,
}

/// Health: the age in seconds of the stalest worker heartbeat, given the current TSC.
pub fn stalest_age_secs(heartbeats: impl Iterator<Item = u64>, now_tsc: u64, tsc_hz: u64) -> f64 {
    heartbeats
        .map(|h| now_tsc.saturating_sub(h) as f64 / tsc_hz.max(1) as f64)
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_read_back() {
        let w = WorkerShared::new(3, 0);
        let mut l = Local {
            rx: 5,
            tx: 4,
            consumed: 1,
            ..Default::default()
        };
        l.drops.add(Stage::Presence, DropReason::Ipv4Checksum, 2);
        w.publish(&l, 7, 1234);
        let s = w.snapshot();
        assert_eq!(
            (s.lcore, s.rx, s.tx, s.consumed, s.hold_len, s.heartbeat),
            (3, 5, 4, 1, 7, 1234)
        );
        assert_eq!(s.drops.get(Stage::Presence, DropReason::Ipv4Checksum), 2);
        assert_eq!(s.drops.total(), 2);
    }

    #[test]
    fn health_age() {
        let hz = 1_000_000;
        assert_eq!(
            stalest_age_secs([1_000_000u64, 2_000_000].into_iter(), 2_000_000, hz),
            1.0
        );
        assert!(
            stalest_age_secs([2_500_000u64].into_iter(), 2_000_000, hz) == 0.0,
            "heartbeat after now"
        );
        assert!(stalest_age_secs(std::iter::empty(), 5, hz) == 0.0);
    }
}
