//! Untrusted overlay frames: outer Ethernet/IPv4/UDP/Geneve/option parsing, the relay rewrite, admission,
//! probe replies, duplicate removal, decapsulation and the edge's overlay side (admission, probes, VIP
//! check, MSS clamp, routing) must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipelines::buf::{PacketBuf, VecBuf};
use pipelines::overlay::admit::Admit;
use pipelines::overlay::decap::{self, Decap};
use pipelines::overlay::dedupe::{Dedupe, DedupeConfig};
use pipelines::overlay::mtu::MtuGuard;
use pipelines::overlay::probe::Responder;
use pipelines::overlay::relay::{Hop, Relay};
use pipelines::overlay::roles::{Edge, Endpoint};
use pipelines::overlay::{parse_outer, probe, sample, PeerSet};
use pipelines::presence::{PortAddrs, Presence};
use pipelines::route::{Route, RouteTable};
use pipelines::stage::{Burst, Meta, Scratch};
use pipelines::MacAddr;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

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
    let mut fx = Scratch::default();
    let mut b = Burst::with_capacity(4);
    let _ = b.push(VecBuf::new(data, 128), Meta::new(0));
    let _ = b.push(VecBuf::new(data, 128), Meta::new(0));
    let node = data.get(60).copied().unwrap_or(0) as u16;
    // Two workers some of the time, so that streams another worker owns are handed over.
    let workers = 1 + data.get(2).map_or(0, |b| (b & 1) as u16);
    Admit::new(node, peers.clone(), 0, workers).run(&mut b, &mut fx.cx(5));
    dd.run(&mut b, &mut fx.cx(5));
    Decap {
        vni_is_app: data.get(3).is_some_and(|b| b & 1 == 1),
    }
    .run(&mut b, &mut fx.cx(5));
    let mut q = VecBuf::new(data, 0);
    let _ = decap::decap(&mut q, data.first().copied().unwrap_or(0) as usize);

    // Probes: the reply built in place from whatever parsed.
    if let Ok(o) = parse_outer(data) {
        let mut f = data.to_vec();
        let _ = probe::reply_in_place(&mut f, &o, me, 4, 3, 8);
    }

    // The edge's overlay side; probes from the frame's own sender and source are answered (a path back
    // through that relay).
    let sender = data.get(58..60).map_or(0, |s| u16::from_be_bytes([s[0], s[1]]));
    let relay_addr = data.get(26..30).map_or(me, |a| Ipv4Addr::new(a[0], a[1], a[2], a[3]));
    let presence = Presence::new(
        vec![PortAddrs {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            addrs: vec!["10.1.0.1/16".parse().unwrap()],
            arp_extra: vec![],
        }],
        RouteTable::new(vec![Route {
            net: "0.0.0.0/0".parse().unwrap(),
            port: 0,
            via: Some(sample::ROUTER),
        }]),
        false,
    );
    let mut edge = Edge::new(
        Arc::new(presence),
        sample::classifier(),
        Endpoint {
            mtu: MtuGuard::new(data.get(1).map_or(1500, |b| 576 + *b as u16 * 4)),
            encap: sample::encap(0),
            replicate: sample::replicate(),
            admit: Admit::new(node, peers, 0, 1),
            probes: Responder::new(
                node,
                sample::EDGE,
                8,
                &[sender],
                &[vec![sample::path(1, "eu", relay_addr)]],
            ),
            dedupe: Dedupe::new(DedupeConfig::default()),
        },
    );
    let mut b = Burst::with_capacity(2);
    let _ = b.push(VecBuf::new(data, 128), Meta::new(0));
    edge.from_overlay(&mut b, &mut fx.cx(7));
});
