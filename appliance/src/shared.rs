//! What the workers, the control thread and the management thread share: the started ports, the
//! published tables and neighbours, per-thread counters and the rings between threads. Workers only read
//! it, except their own `workers[i]` entry, which only they write.
use crate::stats::{ControlShared, WorkerShared};
use crate::tables::Tables;
use arc_swap::ArcSwap;
use ipnet::Ipv4Net;
use pipelines::handoff::Handoff;
use pipelines::nat::NatConfig;
use pipelines::neigh::NeighSnapshot;
use pipelines::presence::Presence;
use pipelines::MacAddr;
use pmd_bindings::{Mbuf, Mempool, Port};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::Release};
use std::sync::Arc;
use std::time::Instant;

/// A started port as workers and the management thread see it.
pub struct PortRt {
    pub port: Port,
    pub name: String,
    pub mac: MacAddr,
    pub addrs: Vec<Ipv4Net>,
}

/// State shared by workers, the control and the management thread.
pub struct Shared {
    pub stop: Arc<AtomicBool>,
    pub workers: Vec<WorkerShared>,
    pub control: ControlShared,
    pub neigh: ArcSwap<NeighSnapshot>,
    pub neigh_gen: AtomicU64,
    pub ports: Vec<PortRt>,
    pub presence: Presence,
    pub pool: Mempool,
    pub pool_size: u32,
    pub tsc_hz: u64,
    pub started: Instant,
    pub dpdk_version: String,
    /// Full NAT's fixed part (pool, timeouts, table size), when `[nat]` is configured; its applications
    /// are in `tables`. Each worker keeps its own sessions.
    pub nat: Option<NatConfig>,
    /// The reloadable configuration workers read, and its generation (bumped by each reload).
    pub tables: ArcSwap<Tables>,
    pub tables_gen: AtomicU64,
    /// Rings between workers for packets whose state another worker owns.
    pub handoff: Handoff<Mbuf>,
    /// This node's overlay address (fixed; the role's tables are in `tables`).
    pub overlay_addr: Option<std::net::Ipv4Addr>,
    /// Probe replies from each worker to the control thread (one single-producer ring per worker).
    pub probe_replies: Vec<crossbeam_queue::ArrayQueue<ProbeReply>>,
    /// Path measurements and selection, published by the control thread for metrics and /state.
    pub paths: ArcSwap<Vec<PathReport>>,
}

/// A probe reply a worker received (the stages' event, passed on as is).
pub use pipelines::stage::ProbeReply;

/// One path's measurements as the control thread last published them.
#[derive(Debug, Clone)]
pub struct PathReport {
    pub id: u8,
    pub name: String,
    pub dest: u16,
    pub region: String,
    pub stats: pipelines::paths::PathStats,
    /// In the destination's path set now.
    pub selected: bool,
    /// Why the selection would not use it now (None: fit).
    pub unfit: Option<&'static str>,
}

impl Shared {
    /// Publishes new tables (a reload): workers pick them up between bursts.
    pub fn publish_tables(&self, t: Tables) {
        self.tables.store(Arc::new(t));
        self.tables_gen.fetch_add(1, Release);
        self.control.reloads.fetch_add(1, Relaxed);
    }
}
