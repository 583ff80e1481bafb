//! One copy of each encapsulated packet per path of its destination's path set. The first copy is the
//! original buffer; every other copy is a full copy ([`PacketBuf::replicate_into`]: in bulk for mbufs),
//! so no copy writes into a segment another shares (ARCHITECTURE.md "Replicas"). Each copy gets its path id, the outer destination
//! (the path's relay) and the underlay next hop to send it to.
use super::{outer_csum, set_outer_dst, write_outer_dst, OPT_OFF, OUTER_LEN};
use crate::buf::PacketBuf;
use crate::checksum;
use crate::drop::{DropCounts, DropReason, Stage};
use crate::stage::{Burst, Ctx, Verdict};
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

/// What replicate needs of a live path, packed: a destination's live paths sit side by side.
#[derive(Debug, Clone, Copy)]
struct Out {
    relay: Ipv4Addr,
    next_hop: Ipv4Addr,
    port: u16,
    id: u8,
    /// The outer header checksum's change from the set's first live path to this one (RFC 1624): a
    /// copy of a packet stamped for the first path gets its checksum without reading its header back.
    from_first: u32,
}

/// The replicate stage: path sets per destination index (as in [`super::encap::AppRoute::dest`] and
/// [`crate::stage::Meta::dest`]), and, built from them whenever they change, the live paths of each.
#[derive(Debug, Clone)]
pub struct Replicate {
    sets: Vec<PathSet>,
    /// Per destination: where its live paths start in `outs`, and how many there are.
    live: Vec<(u32, u32)>,
    outs: Vec<Out>,
}

/// Stamps a packet for path `p`; returns its new outer checksum, None when it cannot be written.
#[inline]
fn stamp<B: PacketBuf>(pkt: &mut B, p: &Out) -> Option<u16> {
    let d = pkt.data_mut()?;
    if d.len() < OUTER_LEN {
        return None;
    }
    d[OPT_OFF + opt::PATH] = p.id;
    Some(set_outer_dst(d, p.relay))
}

/// Stamps the bytes of a copy of a packet stamped for its set's first path, whose outer checksum was
/// `csum`: writes only, nothing is read back.
#[inline(always)]
fn restamp(d: &mut [u8], csum: u16, p: &Out) -> bool {
    if d.len() < OUTER_LEN {
        return false;
    }
    d[OPT_OFF + opt::PATH] = p.id;
    write_outer_dst(d, p.relay, checksum::adjust(csum, p.from_first));
    true
}

/// Copies are made in chunks of this many (one bulk buffer allocation per chunk).
const CHUNK: usize = 64;

/// The copies a pass over the burst found to make: source index, the source's outer checksum (stamped
/// for the first path), and the path (index in `outs`).
struct Copies {
    from: [u16; CHUNK],
    csum: [u16; CHUNK],
    via: [u32; CHUNK],
    len: usize,
}

impl Replicate {
    pub fn new(sets: Vec<PathSet>) -> Replicate {
        let mut r = Replicate {
            sets,
            live: Vec::new(),
            outs: Vec::new(),
        };
        r.rebuild();
        r
    }

    /// Replaces the path sets (a reload or a new selection).
    pub fn set_sets(&mut self, sets: Vec<PathSet>) {
        self.sets = sets;
        self.rebuild();
    }

    /// Marks path `id` of destination `dest`'s set up or down.
    pub fn set_up(&mut self, dest: usize, id: u8, up: bool) {
        if let Some(s) = self.sets.get_mut(dest) {
            s.set_up(id, up);
            self.rebuild();
        }
    }

    /// The path a packet to destination `dest` takes first (the original buffer's; copies take the
    /// others): what encap writes into the outer header when it is given this stage
    /// ([`super::encap::Encap::follow`]).
    #[inline]
    pub fn first_hop(&self, dest: u16) -> Option<(u8, Ipv4Addr)> {
        match self.live.get(dest as usize) {
            Some(&(s, l)) if l > 0 => {
                let o = &self.outs[s as usize];
                Some((o.id, o.relay))
            }
            _ => None,
        }
    }

    fn rebuild(&mut self) {
        self.outs.clear();
        self.live.clear();
        for set in &self.sets {
            let start = self.outs.len() as u32;
            let first = set.live().next().map_or(0, |p| u32::from(p.relay));
            self.outs.extend(set.live().map(|p| Out {
                relay: p.relay,
                next_hop: p.next_hop,
                port: p.port,
                id: p.id,
                from_first: checksum::delta32(first, u32::from(p.relay)),
            }));
            self.live.push((start, self.outs.len() as u32 - start));
        }
    }

    /// Copies every encapsulated packet of the burst over the path set of its destination
    /// (`meta.dest`). The packet itself goes on the first live path; its copies, appended to the burst,
    /// on the others. Copies are made after the pass over the burst, in bulk (see
    /// [`PacketBuf::replicate_into`]); copies that find no buffer or no room in the burst are counted in
    /// `drops`. Bursts hold at most 65536 packets (indices are 16-bit).
    pub fn run<B: PacketBuf>(&mut self, burst: &mut Burst<B>, cx: &mut Ctx) {
        let drops = &mut *cx.drops;
        let n = burst.len();
        // The copies to make: source index, its outer checksum, and the path (index in `outs`).
        let mut todo = Copies {
            from: [0; CHUNK],
            csum: [0; CHUNK],
            via: [0; CHUNK],
            len: 0,
        };
        for i in 0..n {
            if !burst.meta[i].is_next() {
                continue;
            }
            let (start, len) = match self.live.get(burst.meta[i].dest as usize) {
                Some(&(s, l)) if l > 0 => (s as usize, l as usize),
                _ => {
                    burst.meta[i].verdict = Verdict::Drop(Stage::Replicate, DropReason::NoPath);
                    continue;
                }
            };
            let first = &self.outs[start];
            // Stamped before it is copied (unless encap did it, from this table): copies then only change
            // the path id and outer destination.
            let m = &burst.meta[i];
            let csum = if m.stamped && m.path == first.id {
                burst.pkts[i].data().get(..OUTER_LEN).map(outer_csum)
            } else {
                stamp(&mut burst.pkts[i], first)
            };
            let Some(csum) = csum else {
                burst.meta[i].verdict = Verdict::Drop(Stage::Replicate, DropReason::NotWritable);
                continue;
            };
            let m = &mut burst.meta[i];
            m.path = first.id;
            m.stamped = true;
            m.verdict = Verdict::Forward {
                port: first.port,
                next_hop: first.next_hop,
            };
            for k in start + 1..start + len {
                if todo.len == CHUNK {
                    self.copies(burst, &todo, drops);
                    todo.len = 0;
                }
                let c = todo.len;
                (todo.from[c], todo.csum[c], todo.via[c]) = (i as u16, csum, k as u32);
                todo.len += 1;
            }
        }
        self.copies(burst, &todo, drops);
    }

    /// Appends a copy of `burst.pkts[from[k]]` for path `outs[via[k]]`, stamped as it is made, for each
    /// `k` that finds room and a buffer.
    fn copies<B: PacketBuf>(&self, burst: &mut Burst<B>, todo: &Copies, drops: &mut DropCounts) {
        let want = todo.len.min(burst.capacity().saturating_sub(burst.len()));
        drops.add(Stage::Replicate, DropReason::BurstFull, (todo.len - want) as u64);
        if want == 0 {
            return;
        }
        let mut ok = [false; CHUNK];
        let made = B::replicate_into(&mut burst.pkts, &todo.from[..want], |k, d| {
            ok[k] = restamp(d, todo.csum[k], &self.outs[todo.via[k] as usize]);
        });
        drops.add(Stage::Replicate, DropReason::ReplicaNoBuffer, (want - made) as u64);
        for ((&src, &v), &ok) in todo.from[..made].iter().zip(&todo.via).zip(&ok) {
            let p = &self.outs[v as usize];
            let mut m = burst.meta[src as usize];
            m.path = p.id;
            m.verdict = if ok {
                Verdict::Forward {
                    port: p.port,
                    next_hop: p.next_hop,
                }
            } else {
                Verdict::Drop(Stage::Replicate, DropReason::NotWritable)
            };
            burst.meta.push(m);
        }
    }
}
