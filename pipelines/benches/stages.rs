//! Per-stage cost on synthetic bursts of 32 packets, for one hot flow and for realistic working sets
//! (10 k flows / streams). Throughput is in packets; `scripts/bench-table.sh` turns criterion's estimates
//! into the ns-per-packet table in the README. Burst construction happens outside the timed region.
//!
//! The test buffer is a Vec: its `replica` allocates and copies, where an mbuf would come from a mempool,
//! so the replicate figure includes the allocator.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::PacketBuilder;
use pipelines::buf::VecBuf;
use pipelines::drop::DropCounts;
use pipelines::overlay::dedupe::{Dedupe, DedupeConfig};
use pipelines::overlay::mtu::MtuGuard;
use pipelines::overlay::relay::{Hop, Relay};
use pipelines::overlay::{decap, PeerSet};
use pipelines::presence::{PortAddrs, Presence};
use pipelines::route::{Route, RouteTable};
use pipelines::stage::{Burst, Meta};
use pipelines::MacAddr;
use std::collections::HashMap;
use std::hint::black_box;
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
    let c = sample::classifier();
    let mut e = sample::encap(0);
    let r = sample::replicate();
    let (mut p1, mut p2) = (Vec::new(), Vec::new());
    for round in 0..per_flow {
        for f in 0..flows {
            let _ = round;
            let mut b = Burst::with_capacity(4);
            b.push(VecBuf::new(&client_frame(f, false), 128), Meta::new(0)).unwrap();
            c.run(&mut b);
            e.run(&mut b, 0);
            r.run(&mut b, &mut DropCounts::default());
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
fn measure<S, R>(c: &mut Criterion, name: &str, mut setup: S, mut routine: R)
where
    S: FnMut(usize) -> Burst<VecBuf>,
    R: FnMut(&mut Burst<VecBuf>),
{
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
                    routine(&mut bu);
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
    measure(
        c,
        "presence_forward/10k_flows",
        |o| burst(&many, o),
        |bu| {
            for p in bu.pkts.iter_mut() {
                black_box(presence.process(0, pipelines::buf::PacketBuf::data_mut(p).unwrap()));
            }
        },
    );

    let cl = sample::classifier();
    measure(c, "classify/hot_flow", |o| burst(&hot, o), |bu| cl.run(bu));
    measure(c, "classify/10k_flows", |o| burst(&many, o), |bu| cl.run(bu));

    let guard = MtuGuard::new(1500);
    measure(
        c,
        "mtu_guard/pass",
        |o| burst(&many, o),
        |bu| {
            guard.run(bu);
        },
    );
    measure(
        c,
        "mtu_guard/syn_clamp",
        |o| burst(&syn, o),
        |bu| {
            guard.run(bu);
        },
    );

    let classified = |frames: &[Vec<u8>], o: usize| {
        let mut bu = burst(frames, o);
        cl.run(&mut bu);
        bu
    };
    // Encap as the edge runs it: given the path table, it writes the first path's relay and id.
    let rep = sample::replicate();
    let mut e = sample::encap(0);
    measure(
        c,
        "encap/hot_flow",
        |o| classified(&hot, o),
        |bu| e.run_toward(bu, 1, &rep),
    );
    let mut e = sample::encap(0);
    measure(
        c,
        "encap/10k_flows",
        |o| classified(&many, o),
        |bu| e.run_toward(bu, 1, &rep),
    );

    let mut e = sample::encap(0);
    measure(
        c,
        "replicate_2_paths/10k_flows",
        |o| {
            let mut bu = classified(&many, o);
            e.run_toward(&mut bu, 1, &rep);
            bu
        },
        |bu| rep.run(bu, &mut DropCounts::default()),
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
    let relay = Relay::new(R1, [EDGE], hops);
    measure(c, "relay/10k_flows", |o| burst(&p1, o), |bu| relay.run(bu));

    // Gateway side: both copies of each packet (as two relays deliver them), half are duplicates.
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
        measure(c, name, |o| burst(&frames, o), |bu| dd.run(bu, 4, &peers, 1));
    }

    // In the pipeline decap runs after dedupe, which leaves the inner offset in the metadata.
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
        decap::run,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
