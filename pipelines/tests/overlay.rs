//! Overlay stage tests: packets built with etherparse's PacketBuilder, run through the stages on VecBuf
//! bursts, verdicts, counters and bytes checked, checksums verified with etherparse.
use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use pipelines::buf::{PacketBuf, VecBuf};
use pipelines::overlay::admit::Admit;
use pipelines::overlay::classify::{Classifier, Service};
use pipelines::overlay::decap::{self, Decap};
use pipelines::overlay::dedupe::{Dedupe, DedupeConfig};
use pipelines::overlay::encap::{AppRoute, Encap};
use pipelines::overlay::mtu::{MtuAction, MtuGuard};
use pipelines::overlay::relay::{Hop, Relay};
use pipelines::overlay::replicate::{PathSet, PathSetError, Replicate};
use pipelines::overlay::sample::path;
use pipelines::overlay::{parse_outer, PeerSet, OUTER_LEN};
use pipelines::stage::{Burst, Meta, Scratch, Verdict};
use pipelines::wire::geneve::OptRepr;
use pipelines::{DropReason, Stage};
use std::collections::HashMap;
use std::net::Ipv4Addr;

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xc1];
const EDGE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xe1];
const CLIENT: [u8; 4] = [192, 168, 1, 10];
const VIP: [u8; 4] = [100, 64, 0, 1];
const EDGE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const R1: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const R2: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 1);
const GW: Ipv4Addr = Ipv4Addr::new(10, 4, 0, 1);
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 254);
const EDGE_NODE: u16 = 1;
const GW_NODE: u16 = 4;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn tcp_frame(payload: &[u8], syn_mss: Option<u16>) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, EDGE_MAC)
        .ipv4(CLIENT, VIP, 64)
        .tcp(40000, 80, 7, 64000);
    let b = match syn_mss {
        Some(m) => b.syn().options(&[TcpOptionElement::MaximumSegmentSize(m)]).unwrap(),
        None => b,
    };
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp_frame(dport: u16, payload: &[u8], df: bool) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, EDGE_MAC)
        .ipv4(CLIENT, VIP, 64)
        .udp(5353, dport)
        .write(&mut out, payload)
        .unwrap();
    if !df {
        out[20] = 0; // clear DF (etherparse sets it)
        out[24] = 0;
        out[25] = 0;
        let c = pipelines::checksum::checksum(&out[14..34]);
        out[24..26].copy_from_slice(&c.to_be_bytes());
    }
    out
}

fn classifier() -> Classifier {
    Classifier::new(
        &[
            Service {
                vip: VIP.into(),
                proto: 6,
                port: 80,
                app: 0,
            },
            Service {
                vip: VIP.into(),
                proto: 17,
                port: 53,
                app: 1,
            },
        ],
        &[(VIP.into(), 0)],
    )
}

fn burst_of(frames: &[Vec<u8>]) -> Burst<VecBuf> {
    let mut b = Burst::with_capacity(64);
    for f in frames {
        b.push(VecBuf::new(f, 128), Meta::new(0)).unwrap();
    }
    b
}

fn edge_stages() -> (Classifier, MtuGuard, Encap, Replicate) {
    let encap = Encap::new(
        EDGE_NODE,
        EDGE,
        40000,
        8,
        2,
        vec![GW_NODE],
        vec![AppRoute { vni: 0x1234, dest: 0 }, AppRoute { vni: 0x99, dest: 0 }],
    );
    let set = PathSet::new(vec![path(11, "eu", R1), path(12, "us", R2)]).unwrap();
    (classifier(), MtuGuard::new(1500), encap, Replicate::new(vec![set]))
}

#[test]
fn classify_by_vip_protocol_and_port() {
    let mut c = classifier();
    let mut b = burst_of(&[
        tcp_frame(b"x", None),
        udp_frame(53, b"q", true),
        udp_frame(54, b"q", true),
        tcp_frame(b"", None),
    ]);
    // Make the last one go to another VIP.
    b.pkts[3] = VecBuf::new(
        &{
            let mut o = Vec::new();
            PacketBuilder::ethernet2(CLIENT_MAC, EDGE_MAC)
                .ipv4(CLIENT, [100, 64, 0, 2], 64)
                .tcp(1, 80, 1, 1)
                .write(&mut o, b"")
                .unwrap();
            o
        },
        128,
    );
    c.run(&mut b, &mut Scratch::default().cx(0));
    assert_eq!((b.meta[0].verdict, b.meta[0].app), (Verdict::Next, 0));
    assert_eq!((b.meta[1].verdict, b.meta[1].app), (Verdict::Next, 1));
    assert_eq!(
        b.meta[2].verdict,
        Verdict::Drop(Stage::Classify, DropReason::NoApplication)
    );
    assert_eq!(
        b.meta[3].verdict,
        Verdict::Drop(Stage::Classify, DropReason::NoApplication)
    );
    // Same flow, same hash; ICMP echo by VIP.
    assert_eq!(c.classify(&tcp_frame(b"other", None)).unwrap().1, b.meta[0].flow_hash);
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, EDGE_MAC)
        .ipv4(CLIENT, VIP, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut ping, b"p")
        .unwrap();
    assert_eq!(c.classify(&ping).unwrap().0, 0);
    let mut bad = tcp_frame(b"x", None);
    bad[24] ^= 1;
    assert_eq!(c.classify(&bad), Err(DropReason::Ipv4Checksum));
    assert!(c.classify(&bad[..20]).is_err());
}

#[test]
fn mss_is_clamped_so_the_encapsulated_segment_fits() {
    let g = MtuGuard::new(1500);
    assert_eq!((g.overlay_mtu, g.mss()), (1436, 1396));
    let mut p = VecBuf::new(&tcp_frame(b"", Some(1460)), 128);
    assert_eq!(g.apply(&mut p), MtuAction::Clamped { from: 1460 });
    let s = SlicedPacket::from_ethernet(p.data()).unwrap();
    let Some(TransportSlice::Tcp(t)) = s.transport else {
        panic!()
    };
    let h = t.to_header();
    assert!(h
        .options_iterator()
        .any(|o| matches!(o, Ok(TcpOptionElement::MaximumSegmentSize(1396)))));
    assert_eq!(h.checksum, h.calc_checksum_ipv4_raw(CLIENT, VIP, t.payload()).unwrap());
    let mut small = VecBuf::new(&tcp_frame(b"", Some(1200)), 128);
    assert_eq!(g.apply(&mut small), MtuAction::Pass);
}

#[test]
fn oversized_df_packet_gets_fragmentation_needed_with_the_overlay_mtu() {
    let g = MtuGuard::new(1500);
    let big = udp_frame(53, &[7u8; 1437 - 28], true); // IPv4 total 1437 > 1436
    let mut p = VecBuf::new(&big, 128);
    assert_eq!(g.apply(&mut p), MtuAction::FragNeeded);
    let s = SlicedPacket::from_ethernet(p.data()).unwrap();
    let eth = s.link.as_ref().unwrap().to_header().unwrap().ethernet2().unwrap();
    assert_eq!((eth.source, eth.destination), (EDGE_MAC, CLIENT_MAC));
    let Some(NetSlice::Ipv4(ipv4)) = &s.net else { panic!() };
    let h = ipv4.header().to_header();
    assert_eq!((h.source, h.destination), (VIP, CLIENT));
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let Some(TransportSlice::Icmpv4(icmp)) = s.transport else {
        panic!()
    };
    match icmp.icmp_type() {
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu,
        }) => {
            assert_eq!(next_hop_mtu, 1436)
        }
        t => panic!("{t:?}"),
    }
    assert_eq!(icmp.header().checksum, icmp.icmp_type().calc_checksum(icmp.payload()));
    assert_eq!(&icmp.payload()[..20], &big[14..34], "quotes the original header");
    assert_eq!(icmp.payload().len(), 28);
    // Without DF: dropped, counted as too big.
    let mut p = VecBuf::new(&udp_frame(53, &[7u8; 1437 - 28], false), 128);
    assert_eq!(g.apply(&mut p), MtuAction::Drop(DropReason::TooBig));
    // Exactly the overlay MTU passes.
    let mut p = VecBuf::new(&udp_frame(53, &[7u8; 1436 - 28], true), 128);
    assert_eq!(g.apply(&mut p), MtuAction::Pass);
}

#[test]
fn encap_writes_the_decided_outer_headers() {
    let (mut c, _, mut e, _) = edge_stages();
    let frame = tcp_frame(b"hello overlay", None);
    let mut b = burst_of(&[frame.clone(), frame.clone()]);
    let mut fx = Scratch::default();
    c.run(&mut b, &mut fx.cx(123_456));
    e.run(&mut b, &mut fx.cx(123_456));
    let p = &b.pkts[0];
    assert_eq!(p.len(), OUTER_LEN + frame.len() - 14);
    let o = parse_outer(p.data()).unwrap();
    let stream = (2u16 << 8) | (b.meta[0].flow_hash & 0xff) as u16;
    assert_eq!(b.meta[0].stream, stream);
    assert_eq!(
        o.opt,
        OptRepr {
            flags: 0,
            hops: 8,
            path: 0,
            sender: EDGE_NODE,
            dest: GW_NODE,
            stream,
            key: 0,
            seq: 0,
            tstamp: 123_456
        }
    );
    assert_eq!(
        parse_outer(b.pkts[1].data()).unwrap().opt.seq,
        1,
        "same (destination, stream): next number"
    );
    assert_eq!(
        (o.vni, o.udp_src, o.udp_csum, o.inner_off),
        (0x1234, 40000 + stream, 0, OUTER_LEN)
    );
    // Independent parse of the outer headers.
    let s = SlicedPacket::from_ethernet(p.data()).unwrap();
    let Some(NetSlice::Ipv4(ipv4)) = &s.net else { panic!() };
    let h = ipv4.header().to_header();
    assert!(h.dont_fragment);
    assert_eq!((h.time_to_live, h.source), (64, EDGE.octets()));
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let Some(TransportSlice::Udp(u)) = s.transport else {
        panic!()
    };
    assert_eq!((u.destination_port(), u.checksum()), (6081, 0));
    assert_eq!(&u.payload()[36..], &frame[14..], "inner packet unchanged");
}

#[test]
fn encap_strips_ethernet_padding_and_needs_headroom() {
    let (c, _, mut e, _) = edge_stages();
    let mut f = tcp_frame(b"", None);
    f.extend_from_slice(&[0; 6]); // padded to 60 bytes
    let mut p = VecBuf::new(&f, 128);
    let (app, h) = c.classify(p.data()).unwrap();
    e.encap(&mut p, app, h, 0).unwrap();
    assert_eq!(p.len(), OUTER_LEN + 40);
    let mut p = VecBuf::new(&tcp_frame(b"", None), 32);
    assert_eq!(e.encap(&mut p, 0, 0, 0), Err(DropReason::NoHeadroom));
}

#[test]
fn path_sets_need_two_paths_in_different_regions() {
    assert_eq!(PathSet::new(vec![path(1, "eu", R1)]), Err(PathSetError::TooFewPaths(1)));
    assert!(matches!(
        PathSet::new(vec![path(1, "eu", R1), path(2, "eu", R2)]),
        Err(PathSetError::SameRegion { .. })
    ));
    assert_eq!(
        PathSet::new(vec![path(1, "eu", R1), path(1, "us", R2)]),
        Err(PathSetError::DuplicateId(1))
    );
}

#[test]
fn replicate_makes_one_independent_copy_per_path() {
    let (mut c, _, mut e, mut r) = edge_stages();
    let mut b = burst_of(&[tcp_frame(b"one", None), tcp_frame(b"two", None)]);
    let mut fx = Scratch::default();
    c.run(&mut b, &mut fx.cx(0));
    e.run(&mut b, &mut fx.cx(0));
    r.run(&mut b, &mut fx.cx(0));
    assert_eq!(b.len(), 4);
    assert_eq!(fx.drops.total(), 0);
    let mut seen = Vec::new();
    for (p, m) in b.pkts.iter().zip(&b.meta) {
        let o = parse_outer(p.data()).unwrap();
        assert_eq!(
            m.verdict,
            Verdict::Forward {
                port: 0,
                next_hop: ROUTER
            }
        );
        assert_eq!(o.opt.path, m.path);
        let relay = if m.path == 11 { R1 } else { R2 };
        assert_eq!(o.ip_dst, relay);
        let (h, _) = etherparse::Ipv4Header::from_slice(&p.data()[14..]).unwrap();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        seen.push((o.opt.seq, o.opt.path));
    }
    seen.sort();
    assert_eq!(seen, vec![(0, 11), (0, 12), (1, 11), (1, 12)]);
    // Writing one copy leaves its twin alone.
    let mut b2 = b;
    b2.pkts[0].data_mut().unwrap()[OUTER_LEN + 30] ^= 0xff;
    assert_ne!(b2.pkts[0].data()[OUTER_LEN + 30], b2.pkts[2].data()[OUTER_LEN + 30]);
}

#[test]
fn encap_toward_the_path_set_gives_what_replicate_would_have_written() {
    // Encap following the path sets stamps the first path itself; replicate then leaves the original's
    // bytes alone. The result is the same, byte for byte, as encap then replicate stamping it. Also
    // when the first path is down (the first live one is stamped) and when a set has no live path.
    for down in [None, Some(11), Some(12)] {
        let frames = [
            tcp_frame(b"one", None),
            udp_frame(53, b"q", true),
            tcp_frame(b"two", None),
        ];
        let run = |toward: bool| {
            let (mut c, _, mut e, mut r) = edge_stages();
            if let Some(id) = down {
                r.set_up(0, id, false);
            }
            let mut b = burst_of(&frames);
            let mut fx = Scratch::default();
            c.run(&mut b, &mut fx.cx(7));
            if toward {
                e.follow(&r);
                e.run(&mut b, &mut fx.cx(7));
                assert!(b.meta.iter().all(|m| m.stamped && m.path == r.first_hop(0).unwrap().0));
            } else {
                e.run(&mut b, &mut fx.cx(7));
                assert!(b.meta.iter().all(|m| !m.stamped));
            }
            r.run(&mut b, &mut fx.cx(7));
            b.drain()
                .map(|(p, m)| (p.to_vec(), m.path, m.verdict))
                .collect::<Vec<_>>()
        };
        let (plain, toward) = (run(false), run(true));
        assert_eq!(plain.len(), if down.is_some() { 3 } else { 6 });
        assert_eq!(plain, toward, "path {down:?} down");
    }
    let (mut c, _, mut e, mut r) = edge_stages();
    r.set_up(0, 11, false);
    r.set_up(0, 12, false);
    assert_eq!(r.first_hop(0), None);
    let mut b = burst_of(&[tcp_frame(b"x", None)]);
    let mut fx = Scratch::default();
    c.run(&mut b, &mut fx.cx(0));
    e.follow(&r);
    e.run(&mut b, &mut fx.cx(0));
    assert!(!b.meta[0].stamped);
    r.run(&mut b, &mut fx.cx(0));
    assert_eq!(b.meta[0].verdict, Verdict::Drop(Stage::Replicate, DropReason::NoPath));
}

#[test]
fn replicate_degrades_to_the_live_paths_and_counts_a_full_burst() {
    let (mut c, _, mut e, mut r) = edge_stages();
    r.set_up(0, 12, false);
    let mut b = burst_of(&[tcp_frame(b"x", None)]);
    let mut fx = Scratch::default();
    c.run(&mut b, &mut fx.cx(0));
    e.run(&mut b, &mut fx.cx(0));
    r.run(&mut b, &mut fx.cx(0));
    assert_eq!(b.len(), 1, "one path left: one copy, still forwarded");
    assert_eq!(b.meta[0].path, 11);
    r.set_up(0, 11, false);
    let mut b = burst_of(&[tcp_frame(b"x", None)]);
    c.run(&mut b, &mut fx.cx(0));
    e.run(&mut b, &mut fx.cx(0));
    r.run(&mut b, &mut fx.cx(0));
    assert_eq!(b.meta[0].verdict, Verdict::Drop(Stage::Replicate, DropReason::NoPath));
    // A burst without room for the copies.
    let (mut c, _, mut e, mut r) = edge_stages();
    let mut b = Burst::with_capacity(1);
    b.push(VecBuf::new(&tcp_frame(b"x", None), 128), Meta::new(0)).unwrap();
    c.run(&mut b, &mut fx.cx(0));
    e.run(&mut b, &mut fx.cx(0));
    r.run(&mut b, &mut fx.cx(0));
    assert_eq!(fx.drops.get(Stage::Replicate, DropReason::BurstFull), 1);
    assert!(matches!(b.meta[0].verdict, Verdict::Forward { .. }));
}

fn relay(addr: Ipv4Addr) -> Relay {
    let mut hops = HashMap::new();
    hops.insert(
        (GW_NODE, 11),
        Hop {
            addr: GW,
            port: 1,
            next_hop: ip("10.2.0.254"),
        },
    );
    hops.insert(
        (GW_NODE, 12),
        Hop {
            addr: GW,
            port: 1,
            next_hop: ip("10.3.0.254"),
        },
    );
    Relay::new(addr, [EDGE, GW], hops)
}

fn encapsulated(payloads: &[&[u8]]) -> Burst<VecBuf> {
    let (mut c, _, mut e, mut r) = edge_stages();
    let frames: Vec<Vec<u8>> = payloads.iter().map(|p| tcp_frame(p, None)).collect();
    let mut b = burst_of(&frames);
    let mut fx = Scratch::default();
    c.run(&mut b, &mut fx.cx(0));
    e.run(&mut b, &mut fx.cx(0));
    r.run(&mut b, &mut fx.cx(0));
    b
}

#[test]
fn relay_rewrites_toward_the_next_node_and_counts_hops() {
    let mut b = encapsulated(&[b"a"]);
    let i = b.meta.iter().position(|m| m.path == 11).unwrap();
    let before = parse_outer(b.pkts[i].data()).unwrap();
    let v = relay(R1).relay(&mut b.pkts[i]);
    assert_eq!(
        v,
        Verdict::Forward {
            port: 1,
            next_hop: ip("10.2.0.254")
        }
    );
    let after = parse_outer(b.pkts[i].data()).unwrap();
    assert_eq!((after.ip_src, after.ip_dst, after.ttl), (R1, GW, 64));
    assert_eq!(
        after.opt,
        OptRepr {
            hops: before.opt.hops - 1,
            ..before.opt
        }
    );
    assert_eq!(after.udp_src, before.udp_src, "the stream's source port is kept");
    let (h, _) = etherparse::Ipv4Header::from_slice(&b.pkts[i].data()[14..]).unwrap();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
}

#[test]
fn relay_patches_a_nonzero_udp_checksum() {
    let mut b = encapsulated(&[b"checksummed"]);
    let i = b.meta.iter().position(|m| m.path == 11).unwrap();
    {
        let d = b.pkts[i].data_mut().unwrap();
        let mut u = pipelines::wire::udp::Packet::new_unchecked(&mut d[34..]);
        u.fill_checksum(EDGE, R1);
    }
    relay(R1).relay(&mut b.pkts[i]);
    let d = b.pkts[i].data();
    let u = pipelines::wire::udp::Packet::new_checked(&d[34..]).unwrap();
    assert_ne!(u.checksum(), 0);
    assert!(u.verify_checksum(R1, GW));
}

#[test]
fn relay_refuses_what_it_must() {
    let r = relay(R1);
    let b = encapsulated(&[b"a"]);
    let i = b.meta.iter().position(|m| m.path == 11).unwrap();
    let mk = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = b.pkts[i].to_vec();
        f(&mut v);
        VecBuf::new(&v, 64)
    };
    let fix_ip = |v: &mut Vec<u8>| {
        v[24] = 0;
        v[25] = 0;
        let c = pipelines::checksum::checksum(&v[14..34]);
        v[24..26].copy_from_slice(&c.to_be_bytes());
    };
    // From a host that is not a peer.
    let mut p = mk(&|v| {
        v[26..30].copy_from_slice(&[6, 6, 6, 6]);
        fix_ip(v)
    });
    assert_eq!(r.relay(&mut p), Verdict::Drop(Stage::Relay, DropReason::NotAPeer));
    // Hop count exhausted.
    let mut p = mk(&|v| v[pipelines::overlay::OPT_OFF + 1] = 1);
    assert_eq!(r.relay(&mut p), Verdict::Drop(Stage::Relay, DropReason::HopLimit));
    // Unknown path.
    let mut p = mk(&|v| v[pipelines::overlay::OPT_OFF + 2] = 99);
    assert_eq!(r.relay(&mut p), Verdict::Drop(Stage::Relay, DropReason::NoOverlayRoute));
    // Not for this relay.
    let mut p = mk(&|v| {
        v[30..34].copy_from_slice(&R2.octets());
        fix_ip(v)
    });
    assert_eq!(r.relay(&mut p), Verdict::Drop(Stage::Relay, DropReason::NotForUs));
    // Unknown critical option type.
    let mut p = mk(&|v| v[14 + 20 + 8 + 8 + 2] = 0x82);
    assert_eq!(
        r.relay(&mut p),
        Verdict::Drop(Stage::Relay, DropReason::OverlayMalformed)
    );
    // Not Geneve.
    let mut p = mk(&|v| v[36..38].copy_from_slice(&4789u16.to_be_bytes()));
    assert_eq!(
        r.relay(&mut p),
        Verdict::Drop(Stage::Relay, DropReason::ProtocolUnhandled)
    );
}

#[test]
fn edge_relays_gateway_end_to_end_delivers_each_packet_once() {
    let payloads: Vec<Vec<u8>> = (0..20).map(|i| format!("segment {i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    let mut b = encapsulated(&refs);
    assert_eq!(b.len(), 40);
    let (r1, r2) = (relay(R1), relay(R2));
    let mut at_gw: Burst<VecBuf> = Burst::with_capacity(64);
    for (mut p, m) in b.drain() {
        let v = if m.path == 11 {
            r1.relay(&mut p)
        } else {
            r2.relay(&mut p)
        };
        assert!(matches!(v, Verdict::Forward { .. }));
        at_gw.push(p, Meta::new(1)).unwrap();
    }
    let peers: PeerSet = [R1, R2].into_iter().collect();
    let mut admit = Admit::new(GW_NODE, peers, 0, 1);
    let mut dd = Dedupe::new(DedupeConfig::default());
    let mut fx = Scratch::default();
    admit.run(&mut at_gw, &mut fx.cx(0));
    dd.run(&mut at_gw, &mut fx.cx(0));
    Decap { vni_is_app: false }.run(&mut at_gw, &mut fx.cx(0));
    let mut delivered = Vec::new();
    let mut dups = 0;
    for (p, m) in at_gw.drain() {
        match m.verdict {
            Verdict::Next => {
                assert_eq!(m.vni, 0x1234);
                delivered.push(p.data()[14..].to_vec());
            }
            Verdict::Drop(Stage::Dedupe, DropReason::Duplicate) => dups += 1,
            v => panic!("{v:?}"),
        }
    }
    assert_eq!(dups, 20);
    let mut want: Vec<Vec<u8>> = payloads.iter().map(|p| tcp_frame(p, None)[14..].to_vec()).collect();
    want.sort();
    delivered.sort();
    assert_eq!(delivered, want, "inner packets arrive unchanged, once each");
    let t = dd.totals();
    assert_eq!((t.passed, t.discarded, t.lost), (20, 20, 0));
    assert_eq!(dd.paths[11].packets + dd.paths[12].packets, 40);
}

#[test]
fn gateway_refuses_non_peers_and_other_nodes() {
    let b = encapsulated(&[b"a"]);
    let peers: PeerSet = [R1].into_iter().collect();
    let mut dd = Dedupe::new(DedupeConfig::default());
    let mut fx = Scratch::default();
    let mut g: Burst<VecBuf> = Burst::with_capacity(8);
    for p in &b.pkts {
        g.push(p.clone(), Meta::new(0)).unwrap();
    }
    // Straight from the edge (not a peer of this gateway in this test), and for node 9: admission
    // refuses them, duplicate removal after it never sees them.
    Admit::new(GW_NODE, peers, 0, 1).run(&mut g, &mut fx.cx(0));
    dd.run(&mut g, &mut fx.cx(0));
    assert!(g
        .meta
        .iter()
        .all(|m| m.verdict == Verdict::Drop(Stage::Admit, DropReason::NotAPeer)));
    let peers: PeerSet = [EDGE].into_iter().collect();
    for m in g.meta.iter_mut() {
        *m = Meta::new(0);
    }
    Admit::new(9, peers, 0, 1).run(&mut g, &mut fx.cx(0));
    dd.run(&mut g, &mut fx.cx(0));
    assert!(g
        .meta
        .iter()
        .all(|m| m.verdict == Verdict::Drop(Stage::Admit, DropReason::WrongNode)));
    assert_eq!(dd.streams(), 0, "nothing refused reached duplicate removal");
}

#[test]
fn decap_refuses_a_broken_inner_packet() {
    let mut b = encapsulated(&[b"a"]);
    let d = b.pkts[0].data_mut().unwrap();
    d[OUTER_LEN + 10] ^= 0xff; // inner IPv4 checksum
    assert_eq!(decap::decap(&mut b.pkts[0], 0), Err(DropReason::InnerMalformed));
}

#[test]
fn tiny_overlay_mtu_with_ip_options_never_panics() {
    // Found by the inner fuzz target: a 60-byte IPv4 header, DF, above a 68-byte overlay MTU, in a frame
    // too short to quote header + 8 bytes behind the new headers.
    let mut f = udp_frame(53, &[1u8; 20], true);
    let mut ip = f[14..].to_vec();
    let opts = [1u8; 40]; // NOP options
    ip.splice(20..20, opts);
    ip[0] = 0x4f;
    let total = ip.len() as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[10] = 0;
    ip[11] = 0;
    let c = pipelines::checksum::checksum(&ip[..60]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.truncate(14);
    f.extend_from_slice(&ip);
    let g = MtuGuard { overlay_mtu: 68 };
    let mut p = VecBuf::new(&f, 64);
    let a = g.apply(&mut p);
    assert!(
        matches!(a, MtuAction::FragNeeded | MtuAction::Drop(DropReason::TooBig)),
        "{a:?}"
    );
    if a == MtuAction::FragNeeded {
        let (h, rest) = etherparse::Ipv4Header::from_slice(&p.data()[14..]).unwrap();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert!(rest.len() >= 8 + 20);
    }
}
