//! Path probing and path-set selection, run by the control thread (ARCHITECTURE.md "Control plane"):
//! every `overlay.probe.interval_ms` it sends a probe over each candidate path (through worker 0, which
//! owns the tx queues), takes the replies the workers handed over, keeps RTT, jitter and loss per path
//! (`pipelines::paths::PathStats`), and with `[overlay.select]` chooses each destination's path set (the
//! best k fit paths through different regions, with hysteresis). A changed set is published as a new
//! table that workers take between bursts; the measurements are published for metrics and /state.
use crate::config::overlay::ProbeSettings;
use crate::shared::{PathReport, Shared};
use crate::tables::Tables;
use pipelines::overlay::probe::{self, Probe};
use pipelines::overlay::replicate::{Path, PathSet};
use pipelines::overlay::OUTER_LEN;
use pipelines::paths::{Candidate, PathStats, SelectConfig, Unfit};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;

struct Probed {
    dest: u16,
    path: Path,
    stats: PathStats,
    seq: u32,
}

/// What the prober sends from, rebuilt from the tables after each change.
#[derive(Default)]
pub struct Prober {
    paths: Vec<Probed>,
    node: u16,
    addr: Option<Ipv4Addr>,
    udp_base: u16,
    hops: u8,
    settings: Option<ProbeSettings>,
    select: Option<SelectConfig>,
    gen: Option<u64>,
    next_at: u64,
}

impl Prober {
    /// Takes the candidate paths and settings of new tables, keeping the measurements of paths that stay.
    fn rebuild(&mut self, t: &Tables) {
        let mut old = std::mem::take(&mut self.paths);
        self.settings = None;
        self.select = None;
        self.addr = None;
        let Some((o, s)) = t.overlay.as_ref().and_then(|o| o.sender().map(|s| (o, s))) else {
            return;
        };
        self.node = o.node;
        self.addr = Some(o.address);
        self.udp_base = s.udp_base;
        self.hops = s.hop_limit;
        self.settings = Some(s.probe);
        self.select = s.select;
        for (dest, cands) in s.dests.iter().zip(&s.candidates) {
            for p in cands {
                let kept = old
                    .iter()
                    .position(|q| q.dest == *dest && q.path.id == p.id)
                    .map(|i| old.swap_remove(i));
                self.paths.push(match kept {
                    Some(mut q) => {
                        q.path = p.clone();
                        q
                    }
                    None => Probed {
                        dest: *dest,
                        path: p.clone(),
                        stats: PathStats::new(s.probe.loss_gain),
                        seq: 0,
                    },
                });
            }
        }
    }

    /// One round, called by the control thread every millisecond with the TSC clock in ns. Probes to send
    /// go to `send` with the neighbour MAC of their next hop (`mac`; None: not resolved yet, which
    /// `resolve` is asked to do).
    pub fn round(
        &mut self,
        sh: &Shared,
        now: u64,
        mac: impl Fn(u16, Ipv4Addr) -> Option<pipelines::MacAddr>,
        mut resolve: impl FnMut(u16, Ipv4Addr),
        mut send: impl FnMut(u16, &[u8]) -> bool,
    ) {
        let gen = sh.tables_gen.load(Acquire);
        if self.gen != Some(gen) {
            self.gen = Some(gen);
            self.rebuild(&sh.tables.load());
        }
        for q in &sh.probe_replies {
            while let Some(r) = q.pop() {
                if let Some(p) = self.paths.iter_mut().find(|p| p.path.id == r.path) {
                    p.stats.on_reply(r.seq, r.at_ns);
                }
            }
        }
        let (Some(set), Some(addr)) = (self.settings, self.addr) else {
            return;
        };
        if set.interval_ns == 0 || now < self.next_at {
            return;
        }
        self.next_at = now + set.interval_ns;
        let mut frame = [0u8; OUTER_LEN];
        for p in &mut self.paths {
            p.stats.expire(now, set.timeout_ns);
            let port_mac = sh.ports.get(p.path.port as usize).map(|x| x.mac);
            let (Some(src_mac), Some(dst_mac)) = (port_mac, mac(p.path.port, p.path.next_hop)) else {
                resolve(p.path.port, p.path.next_hop);
                continue;
            };
            let pr = Probe {
                eth_src: src_mac,
                eth_dst: dst_mac,
                src: addr,
                node: self.node,
                relay: p.path.relay,
                dest: p.dest,
                path: p.path.id,
                udp_src: self.udp_base,
                hops: self.hops,
                seq: p.seq,
                now_ns: now,
            };
            if probe::build(&mut frame, &pr).is_some() && send(p.path.port, &frame) {
                p.stats.on_sent(p.seq, now);
                p.seq = p.seq.wrapping_add(1);
            }
        }
        if let Some(cfg) = self.select {
            self.select_sets(sh, &cfg, now);
        }
        self.publish(sh, now);
    }

    /// Chooses each destination's set; publishes the tables when one changed.
    fn select_sets(&mut self, sh: &Shared, cfg: &SelectConfig, now: u64) {
        let tables = sh.tables.load();
        let Some(s) = tables.overlay.as_ref().and_then(|o| o.sender()) else {
            return;
        };
        for (i, dest) in s.dests.iter().enumerate() {
            let cands: Vec<Candidate> = self
                .paths
                .iter()
                .filter(|p| p.dest == *dest)
                .map(|p| Candidate {
                    id: p.path.id,
                    region: p.path.region.clone(),
                    stats: p.stats.clone(),
                })
                .collect();
            let current: Vec<u8> = s.sets[i].paths().iter().map(|p| p.id).collect();
            let chosen = cfg.select(&current, &cands, now);
            let (mut a, mut b) = (current.clone(), chosen.clone());
            a.sort_unstable();
            b.sort_unstable();
            if chosen.is_empty() || a == b {
                continue;
            }
            let paths: Vec<Path> = chosen
                .iter()
                .filter_map(|id| s.candidates[i].iter().find(|p| p.id == *id).cloned())
                .collect();
            let Ok(set) = PathSet::degraded(paths) else { continue };
            if chosen.len() < cfg.k {
                log::warn!(
                    "toward node {dest}: only {} fit path(s) through different regions; forwarding degraded",
                    chosen.len()
                );
            }
            log::info!("toward node {dest}: path set {current:?} -> {chosen:?}");
            let d = *dest;
            sh.tables.rcu(|t| {
                let mut n = Tables::clone(t);
                if let Some(s) = n.overlay.as_mut().and_then(|o| o.sender_mut()) {
                    if let Some(j) = s.dests.iter().position(|x| *x == d) {
                        s.sets[j] = set.clone();
                    }
                }
                n
            });
            sh.tables_gen.fetch_add(1, Release);
            sh.control.path_set_changes.fetch_add(1, Relaxed);
        }
    }

    fn publish(&self, sh: &Shared, now: u64) {
        let tables = sh.tables.load();
        let sender = tables.overlay.as_ref().and_then(|o| o.sender());
        let cfg = self.select.unwrap_or_default();
        let reports = self
            .paths
            .iter()
            .map(|p| {
                let selected = sender.is_some_and(|s| {
                    s.dests
                        .iter()
                        .position(|d| *d == p.dest)
                        .is_some_and(|i| s.sets[i].paths().iter().any(|q| q.id == p.path.id))
                });
                let c = Candidate {
                    id: p.path.id,
                    region: p.path.region.clone(),
                    stats: p.stats.clone(),
                };
                PathReport {
                    id: p.path.id,
                    name: p.path.name.clone(),
                    dest: p.dest,
                    region: p.path.region.clone(),
                    stats: p.stats.clone(),
                    selected,
                    unfit: cfg.fitness(&c, now).err().map(|u| match u {
                        Unfit::NeverAnswered => "never_answered",
                        Unfit::Silent => "silent",
                        Unfit::Lossy => "lossy",
                    }),
                }
            })
            .collect();
        sh.paths.store(Arc::new(reports));
    }
}
