//! Duplicate removal per (sender node, stream): IEEE 802.1CB's vector recovery algorithm with this
//! project's departures (ARCHITECTURE.md, "Decisions"):
//!
//! - a sliding history window of `window` sequence numbers (a power of two, 64 to 65536), a bit per
//!   number, kept in a ring of 64-bit words and cleared a word at a time;
//! - a packet ahead of the window is accepted and the window jumps to it; numbers that leave the window
//!   unseen count as `lost` (also after a jump), so a long loss burst never stalls the stream;
//! - a packet older than the window is `rogue` and dropped; a copy whose twin was already accepted is
//!   `discarded` (dropped as a duplicate);
//! - a stream silent for `reset_ns` is reset: the next packet starts it afresh (`resets`);
//! - counters per stream: passed, discarded, out-of-order, rogue, lost, resets; per path: packets
//!   received and when last, so a path that stopped delivering can be named (latent errors).
//!
//! Not replay protection: that needs authentication. State is owned by one worker: a stream is pinned to
//! one core by (sender, stream). The stream table and the window memory are allocated once.
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::drop::Stage;
use crate::index::Index;
use crate::stage::{Burst, Ctx, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeConfig {
    /// History window in sequence numbers (a power of two, 64 to 65536).
    pub window: u32,
    /// A stream silent this long is reset.
    pub reset_ns: u64,
    /// Streams tracked at most.
    pub max_streams: usize,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            window: 64,
            reset_ns: 2_000_000_000,
            max_streams: 16384,
        }
    }
}

/// 802.1CB recovery counters (for one stream, or summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub passed: u64,
    pub discarded: u64,
    pub out_of_order: u64,
    pub rogue: u64,
    pub lost: u64,
    pub resets: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.passed += o.passed;
        self.discarded += o.discarded;
        self.out_of_order += o.out_of_order;
        self.rogue += o.rogue;
        self.lost += o.lost;
        self.resets += o.resets;
    }
}

/// The decision for one sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Pass,
    Duplicate,
    Rogue,
}

/// The history of one stream.
#[derive(Debug, Clone, Copy, Default)]
struct Stream {
    key: (u16, u16),
    live: bool,
    /// Highest sequence number accepted.
    max: u32,
    /// First sequence number after the last reset: older numbers inside the window were never tracked,
    /// so their empty bits are not losses.
    origin: u32,
    /// Set once the window has moved entirely past `origin`.
    settled: bool,
    last_ns: u64,
    c: Counters,
}

/// Per-path reception, for latent-error detection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathRx {
    pub packets: u64,
    pub last_ns: u64,
}

pub struct Dedupe {
    cfg: DedupeConfig,
    words_per: usize,
    mask: u32,
    bits: Vec<u64>,
    streams: Vec<Stream>,
    /// Slot of each stream, keyed by `sender << 16 | stream`.
    index: Index,
    free: Vec<u32>,
    /// Counters of streams that were removed (idle), so totals never go back.
    retired: Counters,
    pub paths: [PathRx; 256],
    sweep_at: usize,
}

impl Dedupe {
    /// Panics on a window that is not a power of two in 64..=65536 (configuration validates it first).
    pub fn new(cfg: DedupeConfig) -> Dedupe {
        assert!((64..=65536).contains(&cfg.window) && cfg.window.is_power_of_two());
        let words_per = (cfg.window / 64) as usize;
        let n = cfg.max_streams.max(1);
        let index = Index::with_capacity(n);
        Dedupe {
            cfg,
            words_per,
            mask: cfg.window - 1,
            bits: vec![0; n * words_per],
            streams: vec![Stream::default(); n],
            index,
            free: (0..n as u32).rev().collect(),
            retired: Counters::default(),
            paths: [PathRx::default(); 256],
            sweep_at: 0,
        }
    }

    pub fn config(&self) -> DedupeConfig {
        self.cfg
    }

    /// Streams tracked now.
    pub fn streams(&self) -> usize {
        self.index.len()
    }

    /// Counters of one stream.
    pub fn stream(&self, sender: u16, stream: u16) -> Option<Counters> {
        self.index
            .get(stream_key(sender, stream))
            .map(|i| self.streams[i as usize].c)
    }

    /// Every live stream with its counters.
    pub fn stream_counters(&self) -> impl Iterator<Item = ((u16, u16), Counters)> + '_ {
        self.streams.iter().filter(|s| s.live).map(|s| (s.key, s.c))
    }

    /// Counters summed over all streams, removed ones included.
    pub fn totals(&self) -> Counters {
        let mut t = self.retired;
        for s in self.streams.iter().filter(|s| s.live) {
            t.add(&s.c);
        }
        t
    }

    /// Paths that delivered before but nothing for `after_ns`, while another path delivered within it.
    pub fn silent_paths(&self, now_ns: u64, after_ns: u64) -> impl Iterator<Item = u8> + '_ {
        let fresh = |p: &PathRx| p.packets > 0 && now_ns.saturating_sub(p.last_ns) <= after_ns;
        let any_fresh = self.paths.iter().any(fresh);
        self.paths
            .iter()
            .enumerate()
            .filter(move |(_, p)| any_fresh && p.packets > 0 && now_ns.saturating_sub(p.last_ns) > after_ns)
            .map(|(i, _)| i as u8)
    }

    /// The names of the silent paths (see [`Dedupe::silent_paths`]), for logs and state; `name` maps a
    /// path id to its configured name (an unnamed path shows as `path-N`). Not for the hot path.
    pub fn silent_path_names<'n>(
        &self,
        now_ns: u64,
        after_ns: u64,
        name: impl Fn(u8) -> Option<&'n str>,
    ) -> Vec<String> {
        self.silent_paths(now_ns, after_ns)
            .map(|id| name(id).map(str::to_string).unwrap_or_else(|| format!("path-{id}")))
            .collect()
    }

    /// Decides one packet of (sender, stream) with sequence number `seq` that came over `path`.
    #[inline]
    pub fn check(&mut self, sender: u16, stream: u16, seq: u32, path: u8, now_ns: u64) -> Result<Decision, DropReason> {
        self.note_path(path, now_ns);
        let slot = self.slot_for(sender, stream)?;
        Ok(self.check_slot(slot, seq, now_ns))
    }

    /// Counts a packet received over `path`.
    #[inline(always)]
    fn note_path(&mut self, path: u8, now_ns: u64) {
        let pr = &mut self.paths[path as usize];
        pr.packets += 1;
        pr.last_ns = now_ns;
    }

    /// The slot of (sender, stream), taking a free one for a new stream.
    #[inline]
    fn slot_for(&mut self, sender: u16, stream: u16) -> Result<usize, DropReason> {
        let key = stream_key(sender, stream);
        let bucket = self.index.bucket(key);
        self.slot_for_at(key, bucket)
    }

    /// As `slot_for`, with the key's index bucket computed (and prefetched) beforehand.
    #[inline]
    fn slot_for_at(&mut self, key: u32, bucket: usize) -> Result<usize, DropReason> {
        if let Some(i) = self.index.get_at(key, bucket) {
            return Ok(i as usize);
        }
        let i = self.free.pop().ok_or(DropReason::DedupeTableFull)?;
        if !self.index.insert_at(key, i, bucket) {
            self.free.push(i);
            return Err(DropReason::DedupeTableFull);
        }
        self.streams[i as usize] = Stream {
            key: ((key >> 16) as u16, key as u16),
            ..Default::default()
        };
        Ok(i as usize)
    }

    /// Hints the cache lines `check_slot(slot, seq, ..)` will touch.
    #[inline(always)]
    fn prefetch_slot(&self, slot: usize, seq: u32) {
        crate::prefetch::prefetch(self.streams.as_ptr().wrapping_add(slot));
        let word = slot * self.words_per + ((seq & self.mask) >> 6) as usize;
        crate::prefetch::prefetch(self.bits.as_ptr().wrapping_add(word));
    }

    /// The window decision for sequence number `seq` of the stream in `slot`.
    #[inline]
    fn check_slot(&mut self, slot: usize, seq: u32, now_ns: u64) -> Decision {
        let (w, wp, mask, reset_ns) = (self.cfg.window, self.words_per, self.mask, self.cfg.reset_ns);
        let bits = &mut self.bits[slot * wp..(slot + 1) * wp];
        let s = &mut self.streams[slot];
        if !s.live || now_ns.saturating_sub(s.last_ns) > reset_ns {
            if s.live {
                s.c.resets += 1;
            }
            bits.fill(0);
            s.live = true;
            s.max = seq;
            s.origin = seq;
            s.settled = false;
            set(bits, seq & mask);
            s.last_ns = now_ns;
            s.c.passed += 1;
            return Decision::Pass;
        }
        s.last_ns = now_ns;
        let d = seq.wrapping_sub(s.max) as i32;
        if d > 0 {
            // Ahead: slide the window forward by d; bits that leave it unseen are lost.
            let d = d as u32;
            let leave = d.min(w);
            let oldest = s.max.wrapping_sub(w - 1);
            let mut pre = 0;
            if !s.settled {
                let ahead = s.origin.wrapping_sub(oldest) as i32;
                if ahead <= 0 {
                    s.settled = true;
                } else {
                    pre = (ahead as u32).min(leave);
                }
            }
            clear_range(bits, oldest & mask, pre, mask);
            s.c.lost += count_zeros_and_clear(bits, oldest.wrapping_add(pre) & mask, leave - pre, mask) as u64;
            s.c.lost += (d - leave) as u64;
            s.max = seq;
            set(bits, seq & mask);
            s.c.passed += 1;
            if d != 1 {
                s.c.out_of_order += 1;
            }
            Decision::Pass
        } else if (-(d as i64)) >= w as i64 {
            s.c.rogue += 1;
            Decision::Rogue
        } else if get(bits, seq & mask) {
            s.c.discarded += 1;
            Decision::Duplicate
        } else {
            set(bits, seq & mask);
            s.c.passed += 1;
            s.c.out_of_order += 1;
            Decision::Pass
        }
    }

    /// Removes up to `budget` streams idle for longer than the reset time (their window would be reset
    /// anyway), a slice at a time so a worker never stalls on it.
    pub fn expire(&mut self, now_ns: u64, budget: usize) -> usize {
        let n = self.streams.len();
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            let i = self.sweep_at;
            self.sweep_at = (self.sweep_at + 1) % n;
            let s = self.streams[i];
            if s.live && now_ns.saturating_sub(s.last_ns) > self.cfg.reset_ns {
                self.retired.add(&s.c);
                self.index.remove(stream_key(s.key.0, s.key.1));
                self.streams[i].live = false;
                self.free.push(i as u32);
                removed += 1;
            }
        }
        removed
    }

    /// The stage, after [`super::admit`] (which put each packet's sender, stream, sequence number and
    /// path into its metadata): drops duplicates and rogues. Works in chunks of 32, in three passes so
    /// that memory waits overlap: prefetch each stream's index bucket; find (or take) each stream's slot
    /// and prefetch its state and window word; then run the window logic.
    pub fn run<B: PacketBuf>(&mut self, burst: &mut Burst<B>, cx: &mut Ctx) {
        const CHUNK: usize = 32;
        const NONE: usize = usize::MAX;
        let now_ns = cx.now_ns;
        let n = burst.len();
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            // Per packet: (index bucket, key, seq), then the slot; NONE when it already has a verdict.
            let mut todo = [(NONE, 0u32, 0u32); CHUNK];
            let mut slots = [NONE; CHUNK];
            for (k, m) in burst.meta[start..end].iter().enumerate() {
                if !m.is_next() {
                    continue;
                }
                self.note_path(m.path, now_ns);
                let key = stream_key(m.sender, m.stream);
                let bucket = self.index.bucket(key);
                self.index.prefetch(bucket);
                todo[k] = (bucket, key, m.seq);
            }
            for (k, m) in burst.meta[start..end].iter_mut().enumerate() {
                let (bucket, key, seq) = todo[k];
                if bucket == NONE {
                    continue;
                }
                match self.slot_for_at(key, bucket) {
                    Ok(slot) => {
                        self.prefetch_slot(slot, seq);
                        slots[k] = slot;
                    }
                    Err(r) => m.verdict = Verdict::Drop(Stage::Dedupe, r),
                }
            }
            for (k, m) in burst.meta[start..end].iter_mut().enumerate() {
                if slots[k] == NONE {
                    continue;
                }
                m.verdict = match self.check_slot(slots[k], todo[k].2, now_ns) {
                    Decision::Pass => Verdict::Next,
                    Decision::Duplicate => Verdict::Drop(Stage::Dedupe, DropReason::Duplicate),
                    Decision::Rogue => Verdict::Drop(Stage::Dedupe, DropReason::Rogue),
                };
            }
            start = end;
        }
    }
}

#[inline(always)]
fn stream_key(sender: u16, stream: u16) -> u32 {
    (sender as u32) << 16 | stream as u32
}

#[inline(always)]
fn get(bits: &[u64], i: u32) -> bool {
    bits[(i >> 6) as usize] >> (i & 63) & 1 == 1
}

#[inline(always)]
fn set(bits: &mut [u64], i: u32) {
    bits[(i >> 6) as usize] |= 1 << (i & 63);
}

/// Visits `count` bits of the ring from `start` (wrapping at mask + 1) a word at a time, handing each
/// word index and the mask of the visited bits in it to `f`.
#[inline]
fn for_range(start: u32, count: u32, mask: u32, mut f: impl FnMut(usize, u64)) {
    let mut i = start;
    let mut left = count;
    while left > 0 {
        let bit = i & 63;
        let n = (64 - bit).min(left).min(mask + 1 - i);
        let m = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << bit };
        f((i >> 6) as usize, m);
        left -= n;
        i = (i + n) & mask;
    }
}

fn clear_range(bits: &mut [u64], start: u32, count: u32, mask: u32) {
    for_range(start, count, mask, |w, m| bits[w] &= !m);
}

fn count_zeros_and_clear(bits: &mut [u64], start: u32, count: u32, mask: u32) -> u32 {
    let mut zeros = 0;
    for_range(start, count, mask, |w, m| {
        zeros += (!bits[w] & m).count_ones();
        bits[w] &= !m;
    });
    zeros
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn dd(window: u32) -> Dedupe {
        Dedupe::new(DedupeConfig {
            window,
            reset_ns: 2 * S,
            max_streams: 8,
        })
    }

    fn feed(d: &mut Dedupe, seqs: &[u32]) -> Vec<Decision> {
        seqs.iter().map(|&s| d.check(1, 7, s, 0, 0).unwrap()).collect()
    }

    use Decision::*;

    #[test]
    fn in_order() {
        let mut d = dd(64);
        assert!(feed(&mut d, &(100..300).collect::<Vec<_>>()).iter().all(|x| *x == Pass));
        let c = d.stream(1, 7).unwrap();
        assert_eq!(
            (c.passed, c.discarded, c.out_of_order, c.lost, c.rogue),
            (200, 0, 0, 0, 0)
        );
    }

    #[test]
    fn duplicates_are_discarded() {
        let mut d = dd(64);
        assert_eq!(
            feed(&mut d, &[1, 1, 2, 1, 2, 3, 3]),
            vec![Pass, Duplicate, Pass, Duplicate, Duplicate, Pass, Duplicate]
        );
        let c = d.stream(1, 7).unwrap();
        assert_eq!((c.passed, c.discarded), (3, 4));
    }

    #[test]
    fn reordered_inside_the_window_passes_once() {
        let mut d = dd(64);
        assert_eq!(
            feed(&mut d, &[10, 13, 11, 12, 11, 14]),
            vec![Pass, Pass, Pass, Pass, Duplicate, Pass]
        );
        let c = d.stream(1, 7).unwrap();
        assert_eq!((c.passed, c.out_of_order, c.lost), (5, 3, 0));
    }

    #[test]
    fn too_old_is_rogue() {
        let mut d = dd(64);
        feed(&mut d, &[1000]);
        assert_eq!(feed(&mut d, &[1000 - 63, 1000 - 64, 10]), vec![Pass, Rogue, Rogue]);
        assert_eq!(d.stream(1, 7).unwrap().rogue, 2);
    }

    #[test]
    fn far_ahead_jumps_and_counts_the_gap_lost() {
        let mut d = dd(64);
        feed(&mut d, &(0..10).collect::<Vec<_>>());
        assert_eq!(feed(&mut d, &[1000]), vec![Pass]);
        // 10..=999 were skipped: they left (or never entered) the window unseen.
        assert_eq!(d.stream(1, 7).unwrap().lost, 990 - 63);
        // The numbers still inside the new window may yet arrive.
        assert_eq!(feed(&mut d, &[999, 937, 936]), vec![Pass, Pass, Rogue]);
        feed(&mut d, &[2000]);
        // Lost: 10..=999 but 937 and 999 (988), and 1001..=1936 (936); 1937..=1999 are still inside the
        // window and may yet arrive.
        assert_eq!(d.stream(1, 7).unwrap().lost, 988 + 936);
    }

    #[test]
    fn wrap_around() {
        let mut d = dd(64);
        let seqs: Vec<u32> = (u32::MAX - 20..=u32::MAX).chain(0..20).collect();
        assert!(feed(&mut d, &seqs).iter().all(|x| *x == Pass));
        assert_eq!(
            feed(&mut d, &[u32::MAX, 5, u32::MAX - 5]),
            vec![Duplicate, Duplicate, Duplicate]
        );
        let c = d.stream(1, 7).unwrap();
        assert_eq!((c.passed, c.lost, c.rogue), (41, 0, 0));
    }

    #[test]
    fn reset_after_the_timer() {
        let mut d = dd(64);
        assert_eq!(d.check(1, 7, 500, 0, 0), Ok(Pass));
        assert_eq!(d.check(1, 7, 500, 0, S), Ok(Duplicate));
        // Silent longer than reset_ns: the sender may have restarted at 0.
        assert_eq!(d.check(1, 7, 0, 0, 4 * S), Ok(Pass));
        assert_eq!(d.check(1, 7, 1, 0, 4 * S), Ok(Pass));
        let c = d.stream(1, 7).unwrap();
        assert_eq!((c.resets, c.rogue), (1, 0));
    }

    #[test]
    fn loss_burst_longer_than_the_window_on_every_path_does_not_stall() {
        let mut d = dd(128);
        feed(&mut d, &(0..100).collect::<Vec<_>>());
        // 100..=9999 lost on both paths; then both paths deliver again.
        for s in 10_000..10_100 {
            assert_eq!(d.check(1, 7, s, 0, 0), Ok(Pass));
            assert_eq!(d.check(1, 7, s, 1, 0), Ok(Duplicate));
        }
        let c = d.stream(1, 7).unwrap();
        assert_eq!(c.passed, 200);
        // 100..=9999 never came; 9972..=9999 are still inside the 128-wide window, not yet counted.
        assert_eq!(c.lost, 9900 - 28);
    }

    #[test]
    fn stragglers_older_than_the_first_packet_are_not_lost_and_pass() {
        let mut d = dd(64);
        // The fast path lost seq 0 and delivered 1 first; seq 0 arrives later by the slow path.
        assert_eq!(feed(&mut d, &[1, 0, 2]), vec![Pass, Pass, Pass]);
        feed(&mut d, &[500]);
        let c = d.stream(1, 7).unwrap();
        // 3..=436 left the window unseen; 437..=499 are still inside it; nothing before the first packet
        // (the straggler 0 included) counts.
        assert_eq!(c.lost, 434);
    }

    #[test]
    fn windows_up_to_4096_and_more() {
        for w in [64, 128, 1024, 4096, 65536] {
            let mut d = dd(w);
            feed(&mut d, &[w * 3]);
            assert_eq!(d.check(1, 7, w * 3 - (w - 1), 0, 0), Ok(Pass), "window {w}");
            assert_eq!(d.check(1, 7, w * 3 - w, 0, 0), Ok(Rogue), "window {w}");
        }
    }

    #[test]
    fn streams_are_separate_and_bounded_and_expire() {
        let mut d = dd(64);
        for st in 0..8 {
            assert_eq!(d.check(1, st, 5, 0, 0), Ok(Pass));
        }
        assert_eq!(d.check(2, 0, 5, 0, 0), Err(DropReason::DedupeTableFull));
        assert_eq!(d.check(1, 3, 5, 0, 0), Ok(Duplicate), "existing streams keep working");
        assert_eq!(d.expire(3 * S, 100), 8);
        assert_eq!(d.streams(), 0);
        assert_eq!(d.totals().passed, 8, "totals survive expiry");
        assert_eq!(d.check(2, 0, 5, 0, 3 * S), Ok(Pass));
    }

    #[test]
    fn silent_path_is_named() {
        let mut d = dd(64);
        for s in 0..10u32 {
            d.check(1, 7, s, 3, s as u64 * 1000).unwrap();
            d.check(1, 7, s, 4, s as u64 * 1000).unwrap();
        }
        // Path 4 stops; path 3 goes on.
        for s in 10..20u32 {
            d.check(1, 7, s, 3, s as u64 * 1_000_000).unwrap();
        }
        let silent: Vec<u8> = d.silent_paths(20_000_000, 5_000_000).collect();
        assert_eq!(silent, vec![4]);
        let names = |id: u8| match id {
            3 => Some("edge1-via-eu"),
            4 => Some("edge1-via-us"),
            _ => None,
        };
        assert_eq!(
            d.silent_path_names(20_000_000, 5_000_000, names),
            vec!["edge1-via-us".to_string()]
        );
        assert_eq!(d.paths[3].packets, 20);
        assert_eq!(d.paths[4].packets, 10);
    }
}
