//! Duplicate removal under two paths with independent random loss and a skew smaller than the window:
//! every sequence number is delivered exactly once unless it was lost on both paths, and `lost` counts
//! exactly the numbers lost on both that have left the window since the stream's first packet.
use pipelines::overlay::dedupe::{Decision, Dedupe, DedupeConfig};
use proptest::prelude::*;

/// A small deterministic generator, so a failing case reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn two_lossy_skewed_paths_deliver_every_number_once(
        n in 1usize..3000,
        loss_a in 0.0f64..0.4,
        loss_b in 0.0f64..0.4,
        window in prop::sample::select(vec![64u32, 128, 1024]),
        skew_frac in 0.0f64..0.9,
        seed in 1u64..u64::MAX,
        start in any::<u32>(),
    ) {
        let mut rng = Rng(seed);
        // Path B runs `skew` sequence numbers behind path A; each arrival jitters by up to one slot.
        let skew = (skew_frac * (window as f64 - 2.0)) as u64;
        let mut lost_a = vec![false; n];
        let mut lost_b = vec![false; n];
        let mut events = Vec::new();
        for i in 0..n {
            lost_a[i] = rng.chance(loss_a);
            lost_b[i] = rng.chance(loss_b);
            if !lost_a[i] {
                events.push((i as u64 * 10 + rng.next() % 10, 0u8, i));
            }
            if !lost_b[i] {
                events.push(((i as u64 + skew) * 10 + rng.next() % 10, 1u8, i));
            }
        }
        events.sort();
        let mut d = Dedupe::new(DedupeConfig { window, reset_ns: u64::MAX / 2, max_streams: 4 });
        let mut delivered = vec![0u32; n];
        for &(t, path, i) in &events {
            match d.check(9, 3, start.wrapping_add(i as u32), path, t).unwrap() {
                Decision::Pass => delivered[i] += 1,
                Decision::Duplicate => {}
                Decision::Rogue => prop_assert!(false, "rogue at {i}: skew {skew} < window {window}"),
            }
        }
        for i in 0..n {
            let expect = u32::from(!(lost_a[i] && lost_b[i]));
            prop_assert_eq!(delivered[i], expect, "seq index {}", i);
        }
        let c = d.stream(9, 3).unwrap_or_default();
        prop_assert_eq!(c.passed as usize, delivered.iter().filter(|&&x| x == 1).count());
        prop_assert_eq!(c.passed + c.discarded, events.len() as u64);
        prop_assert_eq!((c.rogue, c.resets), (0, 0));
        // Lost: lost on both paths, after the first packet's number, and out of the window by now.
        if let Some(&(_, _, origin)) = events.first() {
            let max = (0..n).rev().find(|&i| delivered[i] == 1).unwrap();
            let expect = (origin + 1..n)
                .filter(|&i| lost_a[i] && lost_b[i] && i + window as usize <= max)
                .count();
            prop_assert_eq!(c.lost as usize, expect);
        }
    }
}
