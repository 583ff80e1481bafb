//! `[dataplane]`: the worker lcores, their queues and the packet buffer pool.
//!
//! ```toml
//! [dataplane]
//! workers = [1, 2]            # lcores that run a worker loop (in the EAL core list, at most 64)
//! idle = "adaptive"           # busy (poll without pause) or adaptive (short sleeps when idle)
//! idle_max_us = 500           # longest sleep of an idle adaptive worker, 1 to 100000
//! mbufs = 16383               # packet buffers (default: what the queues need, at least 8191)
//! mbuf_cache = 256            # per-lcore buffer cache, at most 512
//! rx_desc = 1024              # descriptors per queue: a power of two from 64 to 16384
//! tx_desc = 1024
//! forwarding = false          # route IPv4 packets not addressed to the appliance
//! ```
use super::problem::{problem, Problem};
use super::text;
use crate::eal_args::EalArgs;
use serde::Deserialize;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum IdleMode {
    /// Poll without pause (lowest latency, one core per worker at 100 %).
    Busy,
    /// Back off with short sleeps when bursts come back empty.
    Adaptive,
}

text::named!(IdleMode, "busy" => IdleMode::Busy, "adaptive" => IdleMode::Adaptive);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    /// Lcores that run a worker loop; each gets one rx and one tx queue on every port.
    pub workers: Vec<u32>,
    #[serde(default = "d_idle")]
    pub idle: IdleMode,
    /// Longest sleep of an idle adaptive worker, in microseconds.
    #[serde(default = "d_idle_max_us")]
    pub idle_max_us: u32,
    /// Packet buffers in the pool; by default what the queues need (see `mbufs_needed`), at least 8191.
    #[serde(default)]
    pub mbufs: Option<u32>,
    #[serde(default = "d_mbuf_cache")]
    pub mbuf_cache: u32,
    #[serde(default = "d_desc")]
    pub rx_desc: u16,
    #[serde(default = "d_desc")]
    pub tx_desc: u16,
    /// Route IPv4 packets not addressed to the appliance (an l3fwd-style router); off by default.
    #[serde(default)]
    pub forwarding: bool,
}

fn d_idle() -> IdleMode {
    IdleMode::Adaptive
}
fn d_idle_max_us() -> u32 {
    500
}
fn d_mbuf_cache() -> u32 {
    256
}
fn d_desc() -> u16 {
    1024
}

/// Buffers the rings and per-worker buffers can hold at once, plus a margin, for `ports` ports, workers
/// that each hold up to `hold_packets` and hand-off rings of `handoff_ring` packets.
pub fn mbufs_needed(d: &Dataplane, ports: usize, hold_packets: u32, handoff_ring: u32) -> u64 {
    let nworkers = d.workers.len().max(1) as u64;
    let nports = ports.max(1) as u64;
    let handoff = nworkers * (nworkers - 1) * handoff_ring as u64;
    nports * nworkers * (d.rx_desc as u64 + d.tx_desc as u64)
        + nworkers * (d.mbuf_cache as u64 + 64 * nports + hold_packets as u64)
        + handoff
        + 512
}

/// Checks `[dataplane]` against the EAL arguments and the `need`ed buffers ([`mbufs_needed`]); returns
/// the pool size: the configured one, or `need` rounded up to 2^k - 1 (DPDK's preferred size), at least
/// 8191.
pub fn validate(d: &Dataplane, eal: &EalArgs, need: u64, errs: &mut Vec<Problem>) -> u32 {
    workers(d, eal, errs);
    for (name, v) in [("rx_desc", d.rx_desc), ("tx_desc", d.tx_desc)] {
        if !(64..=16384).contains(&v) || !v.is_power_of_two() {
            errs.push(problem(
                format!("dataplane.{name}"),
                format!("{v} must be a power of two from 64 to 16384"),
            ));
        }
    }
    if d.mbuf_cache > 512 {
        errs.push(problem(
            "dataplane.mbuf_cache",
            format!("{} is above DPDK's limit of 512", d.mbuf_cache),
        ));
    }
    if !(1..=100_000).contains(&d.idle_max_us) {
        errs.push(problem(
            "dataplane.idle_max_us",
            "must be from 1 to 100000 (a worker must loop at least every 0.1 s)",
        ));
    }
    match d.mbufs {
        Some(m) if (m as u64) < need => errs.push(problem(
            "dataplane.mbufs",
            format!(
                "{m} buffers is fewer than the {need} the queues need (ports x workers x (rx_desc + tx_desc), plus caches, tx buffers and hold queues)"
            ),
        )),
        Some(m) if m > 16 * 1024 * 1024 => errs.push(problem("dataplane.mbufs", format!("{m} is above 16M"))),
        _ => {}
    }
    d.mbufs.unwrap_or_else(|| {
        let need = need.max(8191) + 1;
        (need.next_power_of_two() - 1).min(u32::MAX as u64) as u32
    })
}

/// The worker lcores: at least one, at most 64, each once and in the EAL core list.
fn workers(d: &Dataplane, eal: &EalArgs, errs: &mut Vec<Problem>) {
    if d.workers.is_empty() {
        errs.push(problem("dataplane.workers", "at least one worker lcore is needed"));
    }
    let mut seen = BTreeSet::new();
    let enabled = eal.enabled_lcores();
    for (i, w) in d.workers.iter().enumerate() {
        if !seen.insert(*w) {
            errs.push(problem(
                format!("dataplane.workers[{i}]"),
                format!("lcore {w} is listed twice"),
            ));
        }
        if let Some((l, text)) = &enabled {
            if !l.contains(w) {
                errs.push(problem(
                    format!("dataplane.workers[{i}]"),
                    format!("lcore {w} is not in the EAL core list ({text})"),
                ));
            }
        }
    }
    if d.workers.len() > 64 {
        errs.push(problem("dataplane.workers", "at most 64 workers"));
    }
}
