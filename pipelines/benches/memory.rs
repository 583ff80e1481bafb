//! What a cache miss costs on this machine, for reading the NAT figures: random 64-byte lines of a 96 MB
//! region (the size of a million NAT sessions and their index), in memory marked `MADV_HUGEPAGE` as the
//! NAT table is (`pipelines::huge::HugeSlice`).
//! - `dependent`: a pointer chase, one line after another: the latency of one miss.
//! - `independent_32`: bursts of 32 loads of random lines, none waiting for another: what the core
//!   sustains when misses overlap, as they do when a stage prefetches across a burst.
//!
//!   cargo bench -p pipelines --bench memory
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipelines::huge::HugeSlice;
use std::hint::black_box;

const LINES: usize = 96 << 20 >> 6;
const WORDS: usize = 8;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn bench(c: &mut Criterion) {
    // One random cycle through every line: word 0 of each line holds the next line's index.
    let mut order: Vec<u32> = (0..LINES as u32).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..LINES).rev() {
        order.swap(i, (xorshift(&mut x) % (i as u64 + 1)) as usize);
    }
    let mut mem = HugeSlice::filled(LINES * WORDS, 0u64);
    for w in order.windows(2) {
        mem[w[0] as usize * WORDS] = w[1] as u64;
    }
    mem[order[LINES - 1] as usize * WORDS] = order[0] as u64;

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
    g.throughput(Throughput::Elements(32));
    g.bench_function("independent_32", |b| {
        b.iter(|| {
            let mut idx = [0usize; 32];
            for i in idx.iter_mut() {
                *i = (xorshift(&mut x) % LINES as u64) as usize * WORDS;
            }
            let mut s = 0u64;
            for &i in &idx {
                s = s.wrapping_add(mem[i]);
            }
            black_box(s)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
