//! Gateway NAT cost per packet on bursts of 32 (the burst form with its prefetch passes):
//! - `new_sessions`: every packet opens a session (UDP, distinct clients); criterion's elements/s is the
//!   new-session rate of one core. The table is replaced, untimed, before it fills.
//! - `established_*`: translation of packets of live sessions, client -> target (`out`) and target ->
//!   client (`in`), for one hot flow and for 1 million live sessions hit at random (another count with
//!   `NAT_BENCH_SESSIONS=N`, e.g. 65536 to see a table that fits the last-level cache). The pool has
//!   4 pairs per session (`PAIRS_PER_SESSION`); `*_tight_pool` runs the same on a pool only about 5 %
//!   larger than the session count, where many sessions live off their home line.
//!
//! Only the stage call is timed (`iter_custom`); building the burst is not. `scripts/bench-table.sh nat`
//! turns the estimates into the README table.
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use etherparse::PacketBuilder;
use pipelines::buf::VecBuf;
use pipelines::nat::Nat;
use pipelines::overlay::sample;
use pipelines::stage::{Burst, Ctx, Meta, Scratch};
use std::time::{Duration, Instant};

const N: usize = 32;
const VIP: [u8; 4] = [100, 64, 0, 1];
const APP: u16 = 1;
/// Live sessions of the established benchmarks (and the table size of new_sessions): 2^20, or
/// `NAT_BENCH_SESSIONS` (then the benchmarks are named after it).
fn live_sessions() -> usize {
    std::env::var("NAT_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1 << 20)
}

/// A 64-byte-class UDP frame from client number `c` to the VIP.
fn client(c: u32) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4((0x0a00_0000 + (c >> 8)).to_be_bytes(), VIP, 64)
        .udp(1024 + (c & 0xff) as u16, 53)
        .write(&mut out, &[0u8; 18])
        .unwrap();
    out
}

fn burst(frames: &[&[u8]]) -> Burst<VecBuf> {
    let mut b = Burst::with_capacity(N);
    for f in frames {
        let mut m = Meta::new(0);
        m.app = APP;
        b.push(VecBuf::new(f, 0), m).unwrap();
    }
    b
}

/// Times `iters` bursts made by `next` through `stage`.
fn timed(
    iters: u64,
    mut next: impl FnMut() -> Burst<VecBuf>,
    mut stage: impl FnMut(&mut Burst<VecBuf>, &mut Ctx),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut fx = Scratch::default();
    for _ in 0..iters {
        let mut b = next();
        let t = Instant::now();
        stage(&mut b, &mut fx.cx(1));
        total += t.elapsed();
        assert!(b.meta.iter().all(|m| m.is_next()), "every packet translated");
    }
    total
}

/// `nat` with a session for every client frame of `fresh`, and the target's reply to each.
fn established(mut live: Nat, fresh: &[Vec<u8>]) -> (Nat, Vec<Vec<u8>>) {
    let sessions = fresh.len();
    let mut replies = Vec::with_capacity(sessions);
    for f in fresh {
        let mut f = f.clone();
        live.outbound(
            &mut f,
            pipelines::nat::Origin {
                app: APP,
                ..Default::default()
            },
            0,
        )
        .unwrap();
        // Mirror the translated packet into the target's reply (same checksums: the sums are symmetric).
        let mut r = f.clone();
        r.copy_within(30..34, 26);
        r[30..34].copy_from_slice(&f[26..30]);
        r.copy_within(36..38, 34);
        r[36..38].copy_from_slice(&f[34..36]);
        replies.push(r);
    }
    assert_eq!(live.live()[1], sessions as u64);
    eprintln!(
        "{} sessions on {} pool pairs, {} off their home line",
        sessions,
        live.table().pairs(),
        live.table().spilled()
    );
    (live, replies)
}

/// Benchmarks `name`: bursts of `frames` picked at random through `nat`, client side (`out`) or target side.
fn random_flows(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    nat: &mut Nat,
    frames: &[Vec<u8>],
    out: bool,
    pick: &mut impl FnMut() -> usize,
) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || {
                    let refs: Vec<&[u8]> = (0..N).map(|_| frames[pick()].as_slice()).collect();
                    burst(&refs)
                },
                |bu, cx| {
                    if out {
                        nat.run_outbound(bu, cx)
                    } else {
                        nat.run_inbound(bu, cx)
                    }
                },
            )
        })
    });
}

fn bench(c: &mut Criterion) {
    let sessions = live_sessions();
    let many = if sessions == 1 << 20 {
        "1M_sessions".to_string()
    } else {
        format!("{sessions}_sessions")
    };
    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(N as u64));

    // New sessions: fresh clients until the table is nearly full, then a fresh table (untimed).
    let fresh: Vec<Vec<u8>> = (0..sessions as u32).map(client).collect();
    g.bench_function("new_sessions", |b| {
        let mut n = sample::nat(APP, sessions);
        let mut at = 0usize;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if at + N > fresh.len() {
                    n = sample::nat(APP, sessions);
                    at = 0;
                }
                let refs: Vec<&[u8]> = fresh[at..at + N].iter().map(|v| v.as_slice()).collect();
                at += N;
                total += timed(1, || burst(&refs), |bu, cx| n.run_outbound(bu, cx));
            }
            total
        })
    });

    // 1 M live sessions, and their translated replies.
    let (mut live, replies) = established(sample::nat(APP, sessions), &fresh);
    let hot_out = vec![fresh[7].as_slice(); N];
    let hot_in = vec![replies[7].as_slice(); N];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut pick = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % sessions as u64) as usize
    };

    g.bench_function("established_out/hot_flow", |b| {
        b.iter_custom(|iters| timed(iters, || burst(&hot_out), |bu, cx| live.run_outbound(bu, cx)))
    });
    g.bench_function("established_in/hot_flow", |b| {
        b.iter_custom(|iters| timed(iters, || burst(&hot_in), |bu, cx| live.run_inbound(bu, cx)))
    });
    random_flows(
        &mut g,
        &format!("established_out/{many}"),
        &mut live,
        &fresh,
        true,
        &mut pick,
    );
    random_flows(
        &mut g,
        &format!("established_in/{many}"),
        &mut live,
        &replies,
        false,
        &mut pick,
    );
    drop(live);

    // The same on a pool barely larger than the session count.
    let (mut tight, replies) = established(sample::nat_with_pool(APP, sessions, sessions), &fresh);
    let name = |dir: &str| format!("established_{dir}/{many}_tight_pool");
    random_flows(&mut g, &name("out"), &mut tight, &fresh, true, &mut pick);
    random_flows(&mut g, &name("in"), &mut tight, &replies, false, &mut pick);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
