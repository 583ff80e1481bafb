//! The replicate stage on real mbufs, as in the appliance: every copy but the first is a full copy from
//! the packet's own mempool (per-lcore cache of 256), taken in bulk. Each burst of 32 64-byte-class frames
//! is made as the edge's pipeline makes it (the frame copied into a fresh mbuf, as the PMD would, then
//! classify and encap, which writes the first path's relay and id), and only replicate is timed. Two paths give 32 copies per burst; the one-path
//! row is the same stage with one path of the set down (no copies), for comparison. One hot flow, and
//! 10 k flows. Starts the EAL once with a file prefix of its own, on 4 KB pages, or on hugepages with
//! `BENCH_HUGEPAGES=1` (reserved and mounted beforehand, as on a gateway box):
//!
//!   cargo bench -p pmd-bindings --bench replicate
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::PacketBuilder;
use pipelines::overlay::sample;
use pipelines::stage::{Burst, Meta, Scratch};
use pmd_bindings::{Eal, Mbuf, Mempool, SocketId};

const N: usize = 32;

/// A 64-byte-class TCP frame from client `f` to the VIP.
fn client_frame(f: u32) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4((0x0a00_0000 + f).to_be_bytes(), sample::VIP.octets(), 64)
        .tcp(1024 + (f % 60000) as u16, 80, 1, 1000)
        .write(&mut out, &[0u8; 6])
        .unwrap();
    out
}

fn bench(c: &mut Criterion) {
    let prefix = format!("bench{}", std::process::id());
    let huge = std::env::var("BENCH_HUGEPAGES").is_ok_and(|v| v == "1");
    let mut args = vec![
        "bench",
        "-l",
        "0",
        "--no-pci",
        "--file-prefix",
        &prefix,
        "--log-level",
        "lib.eal:error",
    ];
    args.extend(if huge {
        &["--in-memory"][..]
    } else {
        &["--no-huge", "-m", "256"][..]
    });
    let eal = Eal::init(&args).expect("EAL");
    let pool = Mempool::new(&eal, "bench", 16383, 256, 2048 + 128, SocketId(-1)).unwrap();
    let mut classify = sample::classifier();
    let mut encap = sample::encap(0);
    let two = sample::replicate();
    let mut one = sample::replicate();
    one.set_up(0, 2, false);
    // Contexts of their own for the setup (classify, encap) and the timed replicate.
    let (mut sx, mut fx) = (Scratch::default(), Scratch::default());
    let hot = vec![client_frame(7)];
    let many: Vec<Vec<u8>> = (0..10_000).map(client_frame).collect();

    let mut g = c.benchmark_group("mbuf");
    g.throughput(Throughput::Elements(N as u64));
    let mut off = 0;
    for (name, frames, mut rep, copies) in [
        ("replicate_2_paths/hot_flow", &hot, two.clone(), N),
        ("replicate_2_paths/10k_flows", &many, two, N),
        ("replicate_1_path/10k_flows", &many, one, 0),
    ] {
        // Encap follows the row's path sets, as the edge's does.
        encap.follow(&rep);
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut bu: Burst<Mbuf> = Burst::with_capacity(2 * N);
                    for i in 0..N {
                        let f = &frames[(off + i) % frames.len()];
                        let mut mb = pool.alloc().unwrap();
                        assert!(mb.append(f.len() as u16));
                        mb.data_mut().unwrap().copy_from_slice(f);
                        bu.push(mb, Meta::new(0)).map_err(|_| ()).unwrap();
                    }
                    off += N;
                    let cx = &mut sx.cx(1);
                    classify.run(&mut bu, cx);
                    encap.run(&mut bu, cx);
                    bu
                },
                |mut bu| {
                    rep.run(&mut bu, &mut fx.cx(1));
                    assert_eq!(bu.len(), N + copies);
                    bu
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
    drop(eal);
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}

criterion_group!(benches, bench);
criterion_main!(benches);
