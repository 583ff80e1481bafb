//! Untrusted overlay frames: outer Ethernet/IPv4/UDP/Geneve/option parsing, the relay rewrite, probe
//! replies, duplicate removal, decapsulation and the edge's overlay side (VIP check, MSS clamp) must never
//! panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipelines::buf::{PacketBuf, VecBuf};
use pipelines::overlay::dedupe::{Dedupe, DedupeConfig};
use pipelines::overlay::mtu::MtuGuard;
use pipelines::overlay::relay::{Hop, Relay};
use pipelines::overlay::roles::{EdgeIn, EdgeOut};
use pipelines::overlay::{decap, parse_outer, probe, sample, PeerSet};
use pipelines::stage::{Burst, Meta};
use std::collections::HashMap;
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    let _ = parse_outer(data);
    let me = Ipv4Addr::new(10, 2, 0, 1);
    // Whatever the frame says, make it look addressed to us from a peer some of the time.
    let mut peers = PeerSet::default();
    if data.len() >= 34 {
        peers.insert(Ipv4Addr::new(data[26], data[27], data[28], data[29]));
    }
    let mut hops = HashMap::new();
    for p in 0..=255u8 {
        hops.insert(
            (data.get(52).copied().unwrap_or(0) as u16, p),
            Hop {
                addr: Ipv4Addr::new(10, 4, 0, 1),
                port: 0,
                next_hop: me,
            },
        );
    }
    let relay = Relay::new(me, peers.iter().copied(), hops);
    let mut p = VecBuf::new(data, 128);
    let _ = relay.relay(&mut p);
    let _ = parse_outer(p.data());

    let mut dd = Dedupe::new(DedupeConfig {
        window: 64,
        reset_ns: 1000,
        max_streams: 4,
    });
    let mut b = Burst::with_capacity(4);
    let _ = b.push(VecBuf::new(data, 128), Meta::new(0));
    let _ = b.push(VecBuf::new(data, 128), Meta::new(0));
    let node = data.get(60).copied().unwrap_or(0) as u16;
    dd.run(&mut b, node, &peers, 5);
    decap::run(&mut b);
    let mut q = VecBuf::new(data, 0);
    let _ = decap::decap(&mut q, data.first().copied().unwrap_or(0) as usize);

    // Probes: the cheap flag read, and the reply built in place from whatever parsed.
    let _ = probe::flags(data);
    if let Ok(o) = parse_outer(data) {
        let mut f = data.to_vec();
        let _ = probe::reply_in_place(&mut f, &o, me, 4, 3, 8);
    }

    // The edge's overlay side.
    let out = EdgeOut {
        classify: sample::classifier(),
        mtu: MtuGuard::new(data.get(1).map_or(1500, |b| 576 + *b as u16 * 4)),
        encap: sample::encap(0),
        replicate: sample::replicate(),
    };
    let mut edge_in = EdgeIn {
        node,
        peers,
        dedupe: Dedupe::new(DedupeConfig::default()),
    };
    let mut b = Burst::with_capacity(2);
    let _ = b.push(VecBuf::new(data, 128), Meta::new(0));
    edge_in.run(&mut b, &out, 7);
});
