//! What memory costs on this machine, for reading the NAT figures: random 64-byte lines of a 96 MB region
//! (the size of a million NAT sessions and their index; `MEMORY_BENCH_MB` for another size), in memory
//! marked `MADV_HUGEPAGE` as the NAT table is (`pipelines::huge::HugeSlice`).
//! - `dependent`: a pointer chase, one line after another: the latency of one miss.
//! - `independent_32`: bursts of 32 loads of random lines, none waiting for another: what the core
//!   sustains when misses overlap.
//! - `burst_lookahead_N/work_W`: what a stage that needs one random line per packet pays: bursts of 32,
//!   the line of packet k + N prefetched while packet k is handled (its line read and one word written,
//!   then W rounds of multiply-rotate standing for the rest of the packet's work; W = 0: the lookup alone).
//!   `burst_upfront` prefetches all 32 lines first, as a pass over the burst does. `resident/work_W` is
//!   the same work on lines that stay in cache (a 256 KB region): the difference is what memory adds.
//!
//!   cargo bench -p pipelines --bench memory
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipelines::huge::HugeSlice;
use pipelines::prefetch::prefetch;
use std::hint::black_box;

const WORDS: usize = 8;
const BURST: usize = 32;

fn lines() -> usize {
    let mb = std::env::var("MEMORY_BENCH_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&m| m >= 1)
        .unwrap_or(96);
    (mb << 20) >> 6
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// `rounds` of dependent multiply-rotate: work that needs no memory.
#[inline(always)]
fn work(mut v: u64, rounds: u32) -> u64 {
    for _ in 0..rounds {
        v = v.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7) ^ 3;
    }
    v
}

/// One burst: the line of packet k + `ahead` is prefetched as packet k is handled (`ahead` = 32: all
/// first); each packet reads its line's first word, writes its second, then works.
#[inline(always)]
fn burst(mem: &mut [u64], idx: &[usize; BURST], ahead: usize, rounds: u32) -> u64 {
    for &i in &idx[..ahead.min(BURST)] {
        prefetch(mem.as_ptr().wrapping_add(i));
    }
    let mut acc = 0u64;
    for k in 0..BURST {
        if k + ahead < BURST {
            prefetch(mem.as_ptr().wrapping_add(idx[k + ahead]));
        }
        let i = idx[k];
        let v = mem[i];
        mem[i + 1] = v;
        acc ^= work(v ^ k as u64, rounds);
    }
    acc
}

fn bench(c: &mut Criterion) {
    let lines = lines();
    // One random cycle through every line: word 0 of each line holds the next line's index.
    let mut order: Vec<u32> = (0..lines as u32).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..lines).rev() {
        order.swap(i, (xorshift(&mut x) % (i as u64 + 1)) as usize);
    }
    let mut mem = HugeSlice::filled(lines * WORDS, 0u64);
    for w in order.windows(2) {
        mem[w[0] as usize * WORDS] = w[1] as u64;
    }
    mem[order[lines - 1] as usize * WORDS] = order[0] as u64;

    let mut g = c.benchmark_group("memory");
    const STEPS: u64 = 1024;
    g.throughput(Throughput::Elements(STEPS));
    let mut at = 0u64;
    g.bench_function("dependent", |b| {
        b.iter(|| {
            for _ in 0..STEPS {
                at = mem[at as usize * WORDS];
            }
            black_box(at)
        })
    });
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("independent_32", |b| {
        b.iter(|| {
            let mut idx = [0usize; BURST];
            for i in idx.iter_mut() {
                *i = (xorshift(&mut x) % lines as u64) as usize * WORDS;
            }
            let mut s = 0u64;
            for &i in &idx {
                s = s.wrapping_add(mem[i]);
            }
            black_box(s)
        })
    });
    let resident = (256 << 10) / 64;
    let cases = [
        ("resident/work_0", resident, BURST, 0),
        ("resident/work_10", resident, BURST, 10),
        ("burst_upfront/work_0", lines, BURST, 0),
        ("burst_upfront/work_10", lines, BURST, 10),
        ("burst_lookahead_8/work_0", lines, 8, 0),
        ("burst_lookahead_8/work_10", lines, 8, 10),
        ("burst_lookahead_16/work_10", lines, 16, 10),
    ];
    for (name, span, ahead, rounds) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut idx = [0usize; BURST];
                for i in idx.iter_mut() {
                    *i = (xorshift(&mut x) % span as u64) as usize * WORDS;
                }
                black_box(burst(&mut mem, &idx, ahead, rounds))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
