//! The replicate stage on real mbufs: every copy but the first is `rte_pktmbuf_copy` from the packet's
//! own mempool (per-lcore cache of 256), as in the appliance. Bursts of 32 encapsulated 64-byte-class
//! packets, two paths, so 32 copies per burst. Starts the EAL once (--no-huge, a file prefix of its own).
//!
//!   cargo bench -p pmd-bindings --bench replicate
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::PacketBuilder;
use pipelines::buf::{PacketBuf, VecBuf};
use pipelines::drop::DropCounts;
use pipelines::overlay::{sample, Burst, Meta};
use pmd_bindings::{Eal, Mbuf, Mempool, SocketId};

const N: usize = 32;

fn frames() -> Vec<(Vec<u8>, Meta)> {
    let vip = sample::VIP.octets();
    let c = sample::classifier();
    let mut e = sample::encap(0);
    let mut b = Burst::with_capacity(1024);
    for f in 0..1024u32 {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4((0x0a00_0000 + f).to_be_bytes(), vip, 64)
            .tcp(1024 + f as u16, 80, 1, 1000)
            .write(&mut out, &[0u8; 6])
            .unwrap();
        b.push(VecBuf::new(&out, 128), Meta::new(0)).unwrap();
    }
    c.run(&mut b);
    e.run(&mut b, 1);
    b.drain().map(|(p, m)| (p.to_vec(), m)).collect()
}

fn bench(c: &mut Criterion) {
    let prefix = format!("bench{}", std::process::id());
    let eal = Eal::init(&[
        "bench",
        "-l",
        "0",
        "--no-pci",
        "--no-huge",
        "-m",
        "256",
        "--file-prefix",
        &prefix,
        "--log-level",
        "lib.eal:error",
    ])
    .expect("EAL");
    let pool = Mempool::new(&eal, "bench", 16383, 256, 2048 + 128, SocketId(-1)).unwrap();
    let encapsulated = frames();
    let rep = sample::replicate();
    let mut g = c.benchmark_group("mbuf");
    g.throughput(Throughput::Elements(N as u64));
    let mut off = 0;
    g.bench_function("replicate_2_paths", |b| {
        b.iter_batched(
            || {
                let mut bu: Burst<Mbuf> = Burst::with_capacity(2 * N);
                for i in 0..N {
                    let (f, m) = &encapsulated[(off + i) % encapsulated.len()];
                    let mut mb = pool.alloc().unwrap();
                    assert!(mb.append(f.len() as u16));
                    mb.data_mut().unwrap().copy_from_slice(f);
                    bu.push(mb, *m).map_err(|_| ()).unwrap();
                }
                off += N;
                bu
            },
            |mut bu| {
                rep.run(&mut bu, &mut DropCounts::default());
                assert_eq!(bu.len(), 2 * N);
                bu
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    let _ = PacketBuf::len(&pool.alloc().unwrap());
    drop(eal);
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}

criterion_group!(benches, bench);
criterion_main!(benches);
