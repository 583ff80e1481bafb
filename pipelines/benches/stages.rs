//! Per-stage cost on synthetic bursts of 32 packets, for one hot flow and for realistic working sets
//! (10 k flows / streams). Throughput is in packets; `scripts/bench-table.sh` turns criterion's estimates
//! into the ns-per-packet table in the README. Burst construction happens outside the timed region.
//!
//! The test buffer is a Vec: its `replica` allocates and copies, where an mbuf would come from a mempool,
//! so the replicate figure includes the allocator.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::PacketBuilder;
use pipelines::buf::VecBuf;
use pipelines::overlay::admit::Admit;
use pipelines::overlay::classify::Classifier;
use pipelines::overlay::decap::Decap;
use pipelines::overlay::dedupe::{Dedupe, DedupeConfig};
use pipelines::overlay::mtu::MtuGuard;
use pipelines::overlay::relay::{Hop, Relay};
use pipelines::overlay::PeerSet;
use pipelines::presence::{PortAddrs, Presence};
use pipelines::route::{Route, RouteTable};
use pipelines::stage::{Burst, Ctx, Meta, Scratch, Verdict};
use pipelines::MacAddr;
use pipelines::{DropReason, Stage};
use std::collections::HashMap;
use std::net::Ipv4Addr;

const N: usize = 32;
use pipelines::overlay::sample::{self, EDGE, GW, R1, VIP};

/// A 64-byte-class TCP frame from client `c` (flow index) to the VIP.
fn client_frame(c: u32, syn: bool) -> Vec<u8> {
    let src = (0x0a00_0000 + c).to_be_bytes();
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, VIP.octets(), 64)
        .tcp((c % 60000) as u16 + 1024, 80, 1, 1000);
    let mut out = Vec::new();
    if syn {
        b.syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
            .write(&mut out, &[])
            .unwrap();
    } else {
        b.write(&mut out, &[0u8; 6]).unwrap();
    }
    out
}

fn burst(frames: &[Vec<u8>], offset: usize) -> Burst<VecBuf> {
    let mut b = Burst::with_capacity(N * 2);
    for i in 0..N {
        b.push(VecBuf::new(&frames[(offset + i) % frames.len()], 128), Meta::new(0))
            .unwrap();
    }
    b
}

/// Encapsulated frames of `flows` flows, one copy per path: what relays and gateways receive.
fn overlay_frames(flows: u32, per_flow: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut c = sample::classifier();
    let mut e = sample::encap(0);
    let mut r = sample::replicate();
    let mut fx = Scratch::default();
    let (mut p1, mut p2) = (Vec::new(), Vec::new());
    for round in 0..per_flow {
        for f in 0..flows {
            let _ = round;
            let mut b = Burst::with_capacity(4);
            b.push(VecBuf::new(&client_frame(f, false), 128), Meta::new(0)).unwrap();
            let cx = &mut fx.cx(0);
            c.run(&mut b, cx);
            e.run(&mut b, cx);
            r.run(&mut b, cx);
            for (p, m) in b.drain() {
                if m.path == 1 {
                    p1.push(p.to_vec())
                } else {
                    p2.push(p.to_vec())
                }
            }
        }
    }
    (p1, p2)
}

/// Measures `routine` over bursts made by `setup`, twice: "warm" (each burst built right before it is
/// processed, so its packets are in cache, as after an rx burst and prefetch) and "cold" (criterion builds
/// a large batch of bursts first, so most packets have left the cache by the time they are processed).
/// The routine gets a context of its own (drops and events accumulate there, as in a worker).
fn measure<S, R>(c: &mut Criterion, name: &str, mut setup: S, mut routine: R)
where
    S: FnMut(usize) -> Burst<VecBuf>,
    R: FnMut(&mut Burst<VecBuf>, &mut Ctx),
{
    let mut fx = Scratch::default();
    for (group, size) in [
        ("stage", BatchSize::PerIteration),
        ("stage_cold", BatchSize::SmallInput),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(N as u64));
        let mut off = 0;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    off += N;
                    setup(off)
                },
                |mut bu| {
                    routine(&mut bu, &mut fx.cx(1));
                    bu
                },
                size,
            )
        });
        g.finish();
    }
}

fn bench(c: &mut Criterion) {
    let hot = vec![client_frame(7, false)];
    let many: Vec<Vec<u8>> = (0..10_000).map(|f| client_frame(f, false)).collect();
    let syn: Vec<Vec<u8>> = (0..64).map(|f| client_frame(f, true)).collect();

    let presence = Presence::new(
        vec![PortAddrs {
            mac: MacAddr([2, 0, 0, 0, 0, 2]),
            addrs: vec!["10.9.0.2/24".parse().unwrap()],
            arp_extra: vec![],
        }],
        RouteTable::new(vec![Route {
            net: "0.0.0.0/0".parse().unwrap(),
            port: 0,
            via: Some(Ipv4Addr::new(10, 9, 0, 1)),
        }]),
        true,
    );
    // The presence stage of every role: here transit packets, forwarded.
    measure(
        c,
        "presence_forward/10k_flows",
        |o| burst(&many, o),
        |bu, cx| presence.run(bu, cx),
    );

    let mut cl = sample::classifier();
    measure(c, "classify/hot_flow", |o| burst(&hot, o), |bu, cx| cl.run(bu, cx));
    measure(c, "classify/10k_flows", |o| burst(&many, o), |bu, cx| cl.run(bu, cx));

    let mut guard = MtuGuard::new(1500);
    measure(c, "mtu_guard/pass", |o| burst(&many, o), |bu, cx| guard.run(bu, cx));
    measure(c, "mtu_guard/syn_clamp", |o| burst(&syn, o), |bu, cx| guard.run(bu, cx));

    // Setup's own context (outside the timed region).
    let mut sx = Scratch::default();
    let mut classified = |cl: &mut Classifier, frames: &[Vec<u8>], o: usize| {
        let mut bu = burst(frames, o);
        cl.run(&mut bu, &mut sx.cx(1));
        bu
    };
    // Encap as the edge runs it: following the path sets, it writes the first path's relay and id.
    let mut rep = sample::replicate();
    let mut e = sample::encap(0);
    e.follow(&rep);
    measure(
        c,
        "encap/hot_flow",
        |o| classified(&mut cl, &hot, o),
        |bu, cx| e.run(bu, cx),
    );
    let mut e = sample::encap(0);
    e.follow(&rep);
    measure(
        c,
        "encap/10k_flows",
        |o| classified(&mut cl, &many, o),
        |bu, cx| e.run(bu, cx),
    );

    let mut e = sample::encap(0);
    e.follow(&rep);
    let mut sx = Scratch::default();
    measure(
        c,
        "replicate_2_paths/10k_flows",
        |o| {
            let mut bu = classified(&mut cl, &many, o);
            e.run(&mut bu, &mut sx.cx(1));
            bu
        },
        |bu, cx| rep.run(bu, cx),
    );

    let (p1, p2) = overlay_frames(10_000, 1);
    let mut hops = HashMap::new();
    hops.insert(
        (4u16, 1u8),
        Hop {
            addr: GW,
            port: 0,
            next_hop: Ipv4Addr::new(10, 2, 0, 254),
        },
    );
    let mut relay = Relay::new(R1, [EDGE], hops);
    measure(c, "relay/10k_flows", |o| burst(&p1, o), |bu, cx| relay.run(bu, cx));

    // Gateway side: both copies of each packet (as two relays deliver them), half are duplicates. Admission
    // (the outer headers parsed once, sender and node checked) runs with dedupe, as in the role's list.
    let peers: PeerSet = [EDGE].into_iter().collect();
    let interleave = |a: &[Vec<u8>], b: &[Vec<u8>]| -> Vec<Vec<u8>> {
        a.iter().zip(b).flat_map(|(x, y)| [x.clone(), y.clone()]).collect()
    };
    let (hp1, hp2) = overlay_frames(1, 4096);
    let (mp1, mp2) = overlay_frames(10_000, 2);
    for (name, frames) in [
        ("dedupe_2_copies/hot_stream", interleave(&hp1, &hp2)),
        ("dedupe_2_copies/10k_flows", interleave(&mp1, &mp2)),
    ] {
        let mut dd = Dedupe::new(DedupeConfig {
            window: 1024,
            reset_ns: u64::MAX / 2,
            max_streams: 16384,
        });
        let mut admit = Admit::new(4, peers.clone(), 0, 1);
        {
            // What is measured is admission and the window: every packet is admitted and either passed
            // or a duplicate (checked on a burst of its own, before the measured state exists).
            let (mut a, mut d) = (admit.clone(), Dedupe::new(dd.config()));
            let mut fx = Scratch::default();
            let mut bu = burst(&frames, 0);
            a.run(&mut bu, &mut fx.cx(1));
            d.run(&mut bu, &mut fx.cx(1));
            assert!(bu
                .meta
                .iter()
                .all(|m| m.is_next() || m.verdict == Verdict::Drop(Stage::Dedupe, DropReason::Duplicate)));
            assert_eq!(bu.meta.iter().filter(|m| m.is_next()).count(), N / 2);
        }
        measure(
            c,
            name,
            |o| burst(&frames, o),
            |bu, cx| {
                admit.run(bu, cx);
                dd.run(bu, cx);
            },
        );
    }

    // In the pipeline decap runs after admission, which leaves the inner offset in the metadata.
    let mut decap = Decap { vni_is_app: false };
    measure(
        c,
        "decap/10k_flows",
        |o| {
            let mut bu = burst(&p2, o);
            for m in bu.meta.iter_mut() {
                m.inner_off = pipelines::overlay::OUTER_LEN as u16;
            }
            bu
        },
        |bu, cx| decap.run(bu, cx),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
