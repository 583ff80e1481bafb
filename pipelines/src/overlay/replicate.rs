//! One copy of each encapsulated packet per path of its destination's path set. The first copy is the
//! original buffer; every other copy is a full copy ([`PacketBuf::replica`]), so no copy writes into a
//! segment another shares (ARCHITECTURE.md "Replicas"). Each copy gets its path id, the outer destination
//! (the path's relay) and the underlay next hop to send it to.
use super::{set_outer_dst, Burst, Verdict, OPT_OFF};
use crate::buf::PacketBuf;
use crate::drop::{DropCounts, DropReason};
use crate::wire::geneve::opt;
use std::fmt;
use std::net::Ipv4Addr;

/// One path: source node -> relay -> destination node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub id: u8,
    pub name: String,
    pub region: String,
    /// The relay's overlay address (outer destination of the copies).
    pub relay: Ipv4Addr,
    /// Port and underlay next hop toward the relay.
    pub port: u16,
    pub next_hop: Ipv4Addr,
    /// Cleared at run time when the path is found dead; the set then sends on the others.
    pub up: bool,
}

/// Why a path set was refused when it was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSetError {
    TooFewPaths(usize),
    SameRegion { a: u8, b: u8, region: String },
    DuplicateId(u8),
}

impl fmt::Display for PathSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathSetError::TooFewPaths(n) => write!(f, "a path set needs at least 2 paths, this one has {n}"),
            PathSetError::SameRegion { a, b, region } => {
                write!(
                    f,
                    "paths {a} and {b} both go through region '{region}'; relay regions must differ"
                )
            }
            PathSetError::DuplicateId(id) => write!(f, "path id {id} appears twice"),
        }
    }
}

/// The paths a destination's packets are copied over: at least two, through pairwise different regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSet {
    paths: Vec<Path>,
}

impl PathSet {
    /// A configured path set: at least 2 paths through pairwise different regions.
    pub fn new(paths: Vec<Path>) -> Result<PathSet, PathSetError> {
        Self::with_min(paths, 2)
    }

    /// A path set chosen at run time from measured paths: it may shrink to one path when the others
    /// failed (ARCHITECTURE.md "Path sets": forwarding goes on, degraded); regions still differ.
    pub fn degraded(paths: Vec<Path>) -> Result<PathSet, PathSetError> {
        Self::with_min(paths, 1)
    }

    fn with_min(paths: Vec<Path>, min: usize) -> Result<PathSet, PathSetError> {
        if paths.len() < min {
            return Err(PathSetError::TooFewPaths(paths.len()));
        }
        for (i, a) in paths.iter().enumerate() {
            for b in &paths[i + 1..] {
                if a.id == b.id {
                    return Err(PathSetError::DuplicateId(a.id));
                }
                if a.region == b.region {
                    return Err(PathSetError::SameRegion {
                        a: a.id,
                        b: b.id,
                        region: a.region.clone(),
                    });
                }
            }
        }
        Ok(PathSet { paths })
    }

    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    /// Marks a path up or down (run time); the set keeps forwarding on what is left.
    pub fn set_up(&mut self, id: u8, up: bool) {
        if let Some(p) = self.paths.iter_mut().find(|p| p.id == id) {
            p.up = up;
        }
    }

    pub fn live(&self) -> impl Iterator<Item = &Path> {
        self.paths.iter().filter(|p| p.up)
    }
}

pub struct Replicate {
    /// Path set per destination index (as in [`super::encap::AppRoute::dest`] and [`super::Meta::dest`]).
    pub sets: Vec<PathSet>,
}

#[inline]
fn stamp<B: PacketBuf>(pkt: &mut B, p: &Path) -> bool {
    let Some(d) = pkt.data_mut() else { return false };
    if d.len() < OPT_OFF + opt::PATH + 1 {
        return false;
    }
    d[OPT_OFF + opt::PATH] = p.id;
    set_outer_dst(d, p.relay);
    true
}

impl Replicate {
    /// Copies every encapsulated packet of the burst over the path set of its destination
    /// (`meta.dest`). Copies are appended to the burst;
    /// copies that find no buffer or no room in the burst are counted in `drops`.
    pub fn run<B: PacketBuf>(&self, burst: &mut Burst<B>, drops: &mut DropCounts) {
        let n = burst.len();
        for i in 0..n {
            if !burst.meta[i].is_next() {
                continue;
            }
            let Some(set) = self.sets.get(burst.meta[i].dest as usize) else {
                burst.meta[i].verdict = Verdict::Drop(DropReason::NoPath);
                continue;
            };
            let mut live = set.live();
            let Some(first) = live.next() else {
                burst.meta[i].verdict = Verdict::Drop(DropReason::NoPath);
                continue;
            };
            for p in live {
                let Some(mut copy) = burst.pkts[i].replica() else {
                    drops.add(DropReason::ReplicaNoBuffer, 1);
                    continue;
                };
                if !stamp(&mut copy, p) {
                    drops.add(DropReason::MultiSegment, 1);
                    continue;
                }
                let mut m = burst.meta[i];
                m.path = p.id;
                m.verdict = Verdict::Forward {
                    port: p.port,
                    next_hop: p.next_hop,
                };
                if burst.push(copy, m).is_err() {
                    drops.add(DropReason::BurstFull, 1);
                }
            }
            if stamp(&mut burst.pkts[i], first) {
                burst.meta[i].path = first.id;
                burst.meta[i].verdict = Verdict::Forward {
                    port: first.port,
                    next_hop: first.next_hop,
                };
            } else {
                burst.meta[i].verdict = Verdict::Drop(DropReason::MultiSegment);
            }
        }
    }
}
