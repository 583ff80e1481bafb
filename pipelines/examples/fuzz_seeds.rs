//! Writes valid frames as seed corpora for the fuzz targets (fuzz/fuzz_targets): client frames (TCP SYN,
//! UDP, ICMP echo, ARP) for `inner`, encapsulated and relayed overlay frames for `outer`, so the fuzzers
//! start past the first checksum.
//!
//!   cargo run -p pipelines --example fuzz_seeds -- fuzz/corpus
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, TcpOptionElement};
use pipelines::buf::{PacketBuf, VecBuf};
use pipelines::overlay::sample;
use pipelines::stage::{Burst, Meta, Scratch};
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let vip = sample::VIP.octets();
    let (m1, m2) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut inner: Vec<Vec<u8>> = Vec::new();
    let mut out = Vec::new();
    PacketBuilder::ethernet2(m1, m2)
        .ipv4([10, 0, 0, 1], vip, 64)
        .tcp(40000, 80, 1, 1000)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap()
        .write(&mut out, &[])
        .unwrap();
    inner.push(out);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(m1, m2)
        .ipv4([10, 0, 0, 1], vip, 64)
        .udp(5000, 53)
        .write(&mut out, &[7u8; 1500])
        .unwrap();
    inner.push(out);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(m1, m2)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4_echo_request(1, 2)
        .write(&mut out, b"ping")
        .unwrap();
    inner.push(out);
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &m1,
        &[10, 0, 0, 1],
        &[0; 6],
        &[10, 0, 0, 2],
    )
    .unwrap();
    let mut out = Vec::new();
    PacketBuilder::ethernet2(m1, [0xff; 6])
        .arp(arp)
        .write(&mut out)
        .unwrap();
    inner.push(out);

    // Overlay frames: the TCP and UDP client frames encapsulated over two paths.
    let mut classifier = sample::classifier();
    let mut encap = sample::encap(0);
    let mut rep = sample::replicate();
    let mut fx = Scratch::default();
    let mut b = Burst::with_capacity(16);
    for f in &inner[..2] {
        b.push(VecBuf::new(f, 128), Meta::new(0)).unwrap();
    }
    let cx = &mut fx.cx(42);
    classifier.run(&mut b, cx);
    encap.run(&mut b, cx);
    rep.run(&mut b, cx);
    let outer: Vec<Vec<u8>> = b.pkts.iter().map(|p| p.data().to_vec()).collect();

    for (name, frames) in [("inner", &inner), ("outer", &outer)] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (i, f) in frames.iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), f).unwrap();
        }
        println!("{} seeds in {}", frames.len(), d.display());
    }
}
