//! The role pipelines of `overlay::roles`, both directions, on byte buffers: a client's UDP query goes
//! edge (Edge::from_clients) -> two relays -> gateway (Gateway::from_overlay: admit, dedupe, decap, NAT to
//! the target, route); the target's answer goes gateway (Gateway::from_targets: reverse NAT, encap toward
//! the session's edge, two copies) -> relays -> edge (Edge::from_overlay: admit, dedupe, decap, VIP check,
//! route) and reaches the client from the VIP, once, with every checksum right (etherparse parses what
//! comes out).
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use pipelines::buf::{PacketBuf, VecBuf};
use pipelines::overlay::admit::Admit;
use pipelines::overlay::classify::Classifier;
use pipelines::overlay::dedupe::{Dedupe, DedupeConfig};
use pipelines::overlay::encap::Encap;
use pipelines::overlay::mtu::MtuGuard;
use pipelines::overlay::probe::Responder;
use pipelines::overlay::relay::{Hop, Relay};
use pipelines::overlay::replicate::{PathSet, Replicate};
use pipelines::overlay::roles::{Edge, Endpoint, Gateway};
use pipelines::overlay::sample::{self, EDGE, EDGE_NODE, GW, GW_NODE, R1, R2, ROUTER, TARGET, VIP, VNI};
use pipelines::overlay::{parse_outer, OuterRepr, PeerSet};
use pipelines::presence::{PortAddrs, Presence};
use pipelines::route::{Route, RouteTable};
use pipelines::stage::{Burst, Meta, Scratch, Verdict};
use pipelines::wire::geneve::OptRepr;
use pipelines::wire::MacAddr;
use pipelines::{DropReason, Stage};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);

fn frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> VecBuf {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    VecBuf::new(&out, 128)
}

fn one(p: VecBuf) -> Burst<VecBuf> {
    let mut b = Burst::with_capacity(8);
    b.push(p, Meta::new(0)).unwrap();
    b
}

/// Relay `addr` with hops toward the gateway (paths 1, 2) and the edge (paths 3, 4).
fn relay(addr: Ipv4Addr, out: u8, back: u8) -> Relay {
    let hop = |a| Hop {
        addr: a,
        port: 0,
        next_hop: a,
    };
    let hops: HashMap<(u16, u8), Hop> = [((GW_NODE, out), hop(GW)), ((EDGE_NODE, back), hop(EDGE))].into();
    Relay::new(addr, [EDGE, GW], hops)
}

/// Each copy through its path's relay, then into a burst for the far end.
fn across(b: &mut Burst<VecBuf>) -> Burst<VecBuf> {
    let (r1, r2) = (relay(R1, 1, 3), relay(R2, 2, 4));
    let mut out = Burst::with_capacity(8);
    for (mut p, m) in b.drain() {
        assert!(matches!(m.verdict, Verdict::Forward { .. }), "{:?}", m.verdict);
        let v = match m.path {
            1 | 3 => r1.relay(&mut p),
            _ => r2.relay(&mut p),
        };
        assert!(matches!(v, Verdict::Forward { .. }), "relay: {v:?}");
        out.push(p, Meta::new(0)).unwrap();
    }
    out
}

/// The one packet that leaves with `want`; the other must be the duplicate.
fn the_one(b: &mut Burst<VecBuf>, want: Verdict) -> VecBuf {
    let mut sent = Vec::new();
    for (p, m) in b.drain() {
        match m.verdict {
            v if v == want => sent.push(p),
            Verdict::Drop(Stage::Dedupe, DropReason::Duplicate) => {}
            v => panic!("unexpected verdict {v:?}"),
        }
    }
    assert_eq!(sent.len(), 1);
    sent.pop().unwrap()
}

/// The inner IPv4 TTL of a frame.
fn ttl_of(p: &VecBuf) -> u8 {
    p.data()[14 + 8]
}

fn udp_of(p: &VecBuf) -> (Ipv4Addr, Ipv4Addr, u16, u16, Vec<u8>) {
    let s = SlicedPacket::from_ethernet(p.data()).expect("etherparse parses it");
    let Some(NetSlice::Ipv4(ip)) = s.net else {
        panic!("not IPv4")
    };
    let h = ip.header();
    assert_eq!(
        h.to_header().calc_header_checksum(),
        h.header_checksum(),
        "IPv4 checksum"
    );
    let Some(TransportSlice::Udp(u)) = s.transport else {
        panic!("not UDP")
    };
    let (src, dst) = (h.source_addr(), h.destination_addr());
    let want = u
        .to_header()
        .calc_checksum_ipv4_raw(src.octets(), dst.octets(), u.payload())
        .unwrap();
    assert_eq!(u.checksum(), want, "UDP checksum");
    (src, dst, u.source_port(), u.destination_port(), u.payload().to_vec())
}

/// A node's presence: port 0 toward the relays (`overlay`, default route via a router), port 1 toward
/// clients or targets (`inside`, connected) with `extra` routes.
fn presence(overlay: &str, inside: &str, extra: Vec<Route>) -> Arc<Presence> {
    let port = |i: u8, net: &str| PortAddrs {
        mac: MacAddr([2, 0, 0, 0, 9, i]),
        addrs: vec![net.parse().unwrap()],
        arp_extra: vec![],
    };
    let mut routes = vec![
        Route {
            net: overlay.parse().unwrap(),
            port: 0,
            via: None,
        },
        Route {
            net: inside.parse().unwrap(),
            port: 1,
            via: None,
        },
        Route {
            net: "0.0.0.0/0".parse().unwrap(),
            port: 0,
            via: Some(ROUTER),
        },
    ];
    routes.extend(extra);
    Arc::new(
        Presence::new(vec![port(0, overlay), port(1, inside)], RouteTable::new(routes), false)
            .with_overlay(pipelines::wire::geneve::PORT),
    )
}

fn endpoint(node: u16, addr: Ipv4Addr, encap: Encap, replicate: Replicate) -> Endpoint {
    Endpoint {
        mtu: MtuGuard::new(1500),
        encap,
        replicate,
        admit: Admit::new(node, [R1, R2].into_iter().collect(), 0, 1),
        probes: Responder::new(node, addr, 8, &[], &[]),
        dedupe: Dedupe::new(DedupeConfig::default()),
    }
}

/// The edge: clients on 192.168.1.0/24 behind port 1.
fn edge() -> Edge {
    Edge::new(
        presence("10.1.0.1/16", "192.168.1.1/24", vec![]),
        sample::classifier(),
        endpoint(EDGE_NODE, EDGE, sample::encap(0), sample::replicate()),
    )
}

/// Where the edge sends the client's packets: connected, port 1.
const TO_CLIENT: Verdict = Verdict::Forward {
    port: 1,
    next_hop: CLIENT,
};

/// The target-side router of the gateway.
const TARGET_ROUTER: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 254);

/// Where the gateway sends packets to the target: through the target-side router, port 1.
const TO_TARGET: Verdict = Verdict::Forward {
    port: 1,
    next_hop: TARGET_ROUTER,
};

/// The gateway: targets in 10.20.0.0/16 reached through [`TARGET_ROUTER`] on port 1; no direct clients.
fn gateway() -> Gateway {
    let back = PathSet::new(vec![sample::path(3, "eu", R1), sample::path(4, "us", R2)]).unwrap();
    let p = presence(
        "10.4.0.1/16",
        "10.5.0.1/16",
        vec![Route {
            net: "10.20.0.0/16".parse().unwrap(),
            port: 1,
            via: Some(TARGET_ROUTER),
        }],
    );
    Gateway::new(
        p,
        GW,
        Classifier::new(&[], &[]),
        sample::nat(VNI as u16, 1024),
        endpoint(
            GW_NODE,
            GW,
            Encap::new(GW_NODE, GW, 40000, 8, 0, vec![EDGE_NODE], vec![]),
            Replicate::new(vec![back]),
        ),
    )
}

#[test]
fn a_query_and_its_answer_cross_both_roles_once_each() {
    let mut e = edge();
    let mut g = gateway();
    let mut fx = Scratch::default();

    // Client -> VIP:53, out of the edge as two copies.
    let mut b = one(frame(CLIENT, VIP, 5353, 53, b"query"));
    e.from_clients(&mut b, &mut fx.cx(1));
    assert_eq!(b.len(), 2);
    let mut at_gw = across(&mut b);
    g.from_overlay(&mut at_gw, &mut fx.cx(2));
    let q = the_one(&mut at_gw, TO_TARGET);
    let (src, dst, sport, dport, payload) = udp_of(&q);
    assert_eq!((dst, dport, payload.as_slice()), (TARGET, 5353, &b"query"[..]));
    assert!(g.nat.pool().contains(src), "SNAT from the pool, not {src}");
    assert_eq!(ttl_of(&q), 63, "one router hop");
    assert_eq!(g.end.dedupe.totals().discarded, 1);

    // The target answers the pool address; the gateway sends it back over both of its paths to the edge.
    let mut b = one(frame(TARGET, src, 5353, sport, b"answer"));
    g.from_targets(&mut b, &mut fx.cx(3));
    assert_eq!(b.len(), 2);
    for (p, m) in b.pkts.iter().zip(&b.meta) {
        let o = parse_outer(p.data()).unwrap();
        assert_eq!(
            (o.ip_src, o.vni, o.opt.sender, o.opt.dest),
            (GW, VNI, GW_NODE, EDGE_NODE)
        );
        assert_eq!(o.opt.path, m.path);
        assert_eq!(o.ip_dst, if m.path == 3 { R1 } else { R2 });
    }
    let mut at_edge = across(&mut b);
    e.from_overlay(&mut at_edge, &mut fx.cx(4));
    let a = the_one(&mut at_edge, TO_CLIENT);
    let (src, dst, sport, dport, payload) = udp_of(&a);
    assert_eq!(
        (src, dst, sport, dport, payload.as_slice()),
        (VIP, CLIENT, 53, 5353, &b"answer"[..]),
        "the client hears the VIP, never the target"
    );
    assert_eq!(ttl_of(&a), 63, "one router hop");
    assert_eq!(e.end.dedupe.totals().discarded, 1);
    assert_eq!(fx.drops.total(), 0);
}

#[test]
fn edge_refuses_a_decapsulated_packet_not_from_a_vip() {
    let mut e = edge();
    let mut fx = Scratch::default();
    // A well-formed overlay packet from relay 1 whose inner source is the target itself.
    let inner = frame(TARGET, CLIENT, 5353, 5353, b"x");
    let inner = &inner.data()[14..];
    let mut f = vec![0u8; pipelines::overlay::OUTER_LEN + inner.len()];
    OuterRepr {
        eth_src: MacAddr::ZERO,
        eth_dst: MacAddr::ZERO,
        ip_src: R1,
        ip_dst: EDGE,
        udp_src: 40000,
        vni: VNI,
        opt: OptRepr {
            flags: 0,
            hops: 7,
            path: 3,
            sender: GW_NODE,
            dest: EDGE_NODE,
            stream: 0,
            key: 0,
            seq: 1,
            tstamp: 0,
        },
    }
    .emit(&mut f, inner.len());
    f[pipelines::overlay::OUTER_LEN..].copy_from_slice(inner);
    let mut b = one(VecBuf::new(&f, 64));
    e.from_overlay(&mut b, &mut fx.cx(0));
    assert_eq!(b.meta[0].verdict, Verdict::Drop(Stage::Inner, DropReason::NotFromVip));
    // The same from a host that is not a peer never gets that far.
    let peers: PeerSet = [R2].into_iter().collect();
    e.end.admit.peers = peers;
    let mut b = one(VecBuf::new(&f, 64));
    e.from_overlay(&mut b, &mut fx.cx(0));
    assert_eq!(b.meta[0].verdict, Verdict::Drop(Stage::Admit, DropReason::NotAPeer));
}

#[test]
fn gateway_answers_an_oversized_target_packet_with_fragmentation_needed() {
    let mut g = gateway();
    let mut fx = Scratch::default();
    // A session first (the client's query), then a 1480-byte answer with DF: too big for the overlay.
    let mut e = edge();
    let mut b = one(frame(CLIENT, VIP, 5353, 53, b"query"));
    e.from_clients(&mut b, &mut fx.cx(1));
    let mut at_gw = across(&mut b);
    g.from_overlay(&mut at_gw, &mut fx.cx(2));
    let q = the_one(&mut at_gw, TO_TARGET);
    let (pool, _, port, _, _) = udp_of(&q);
    let mut b = one(frame(TARGET, pool, 5353, port, &[7u8; 1452]));
    g.from_targets(&mut b, &mut fx.cx(3));
    assert_eq!(b.len(), 1);
    assert_eq!(b.meta[0].verdict, Verdict::Reply);
    let s = SlicedPacket::from_ethernet(b.pkts[0].data()).unwrap();
    let Some(NetSlice::Ipv4(ip)) = s.net else { panic!() };
    assert_eq!(
        (ip.header().source_addr(), ip.header().destination_addr()),
        (pool, TARGET),
        "from the pool address back to the target"
    );
    let Some(TransportSlice::Icmpv4(icmp)) = s.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 4));
    assert_eq!(
        u16::from_be_bytes([icmp.bytes5to8()[2], icmp.bytes5to8()[3]]),
        1500 - 64
    );
}

/// Addresses a frame to port `i` of a node built by [`presence`] (as a neighbour would).
fn to_port(mut p: VecBuf, i: u8) -> VecBuf {
    p.data_mut().unwrap()[..6].copy_from_slice(&[2, 0, 0, 0, 9, i]);
    p
}

/// A gateway as a worker runs it, a received burst at a time: presence sorts the packets into lanes
/// (a ping to its own address answered, the overlay's copies, a client at its own VIP), each lane's
/// stages run, and every packet comes back with a final verdict. Packets other workers hand over go to
/// their lane by address: the overlay address to the overlay's stages, a pool address to the replies'.
#[test]
fn a_gateway_role_sorts_each_burst_into_its_lanes() {
    use pipelines::overlay::classify::Service;
    use pipelines::overlay::roles::Role;
    use pipelines::stage::Lane;
    let nat = sample::nat(VNI as u16, 1024);
    let pool = nat.pool().addrs().to_vec();
    let gw_vip = Ipv4Addr::new(100, 64, 9, 9);
    let mut inside = PortAddrs {
        mac: MacAddr([2, 0, 0, 0, 9, 1]),
        addrs: vec!["10.5.0.1/16".parse().unwrap()],
        arp_extra: pool.clone(),
    };
    inside.arp_extra.push(gw_vip);
    let outside = PortAddrs {
        mac: MacAddr([2, 0, 0, 0, 9, 0]),
        addrs: vec!["10.4.0.1/16".parse().unwrap()],
        arp_extra: vec![],
    };
    let routes = RouteTable::new(vec![
        Route {
            net: "10.4.0.1/16".parse().unwrap(),
            port: 0,
            via: None,
        },
        Route {
            net: "10.5.0.1/16".parse().unwrap(),
            port: 1,
            via: None,
        },
        Route {
            net: "10.20.0.0/16".parse().unwrap(),
            port: 1,
            via: Some(TARGET_ROUTER),
        },
        Route {
            net: "0.0.0.0/0".parse().unwrap(),
            port: 0,
            via: Some(ROUTER),
        },
    ]);
    let p = Arc::new(
        Presence::new(vec![outside, inside], routes, false)
            .with_overlay(pipelines::wire::geneve::PORT)
            .with_pool(pool.clone()),
    );
    let back = PathSet::new(vec![sample::path(3, "eu", R1), sample::path(4, "us", R2)]).unwrap();
    let direct = Classifier::new(
        &[Service {
            vip: gw_vip,
            proto: 17,
            port: 53,
            app: VNI as u16,
        }],
        &[],
    );
    let mut role = Role::Gateway(Box::new(Gateway::new(
        p,
        GW,
        direct,
        nat,
        endpoint(
            GW_NODE,
            GW,
            Encap::new(GW_NODE, GW, 40000, 8, 0, vec![EDGE_NODE], vec![]),
            Replicate::new(vec![back]),
        ),
    )));
    let mut e = edge();
    let mut fx = Scratch::default();

    // One received burst: a ping to the gateway's own address, both copies of a client's query from the
    // edge, and a query from a client that reached the gateway's own VIP.
    let mut b: Burst<VecBuf> = Burst::with_capacity(64);
    let mut ping = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 9, 1])
        .ipv4(Ipv4Addr::new(10, 5, 0, 9).octets(), [10, 5, 0, 1], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut ping, b"hi")
        .unwrap();
    b.push(VecBuf::new(&ping, 128), Meta::new(1)).unwrap();
    let mut q = one(frame(CLIENT, VIP, 5353, 53, b"query"));
    e.from_clients(&mut q, &mut fx.cx(1));
    for (p, _) in across(&mut q).drain() {
        b.push(to_port(p, 0), Meta::new(0)).unwrap();
    }
    let direct_client = Ipv4Addr::new(10, 5, 7, 7);
    b.push(
        to_port(frame(direct_client, gw_vip, 6000, 53, b"direct"), 1),
        Meta::new(1),
    )
    .unwrap();
    role.run(&mut b, &mut fx.cx(2));
    let v: Vec<Verdict> = b.meta.iter().map(|m| m.verdict).collect();
    assert_eq!(
        v,
        [
            Verdict::Reply,
            TO_TARGET,
            Verdict::Drop(Stage::Dedupe, DropReason::Duplicate),
            TO_TARGET,
        ]
    );
    let (from_edge, _, edge_port, ..) = udp_of(&b.pkts[1]);
    let (from_direct, ..) = udp_of(&b.pkts[3]);
    assert!(pool.contains(&from_edge) && pool.contains(&from_direct));

    // Handed over by other workers: the target's answer to the edge's client (a pool address: the
    // replies' stages, two copies toward the edge) and an overlay packet (the overlay's stages).
    let mut h: Burst<VecBuf> = Burst::with_capacity(64);
    h.push(frame(TARGET, from_edge, 5353, edge_port, b"answer"), Meta::new(0))
        .unwrap();
    let mut q = one(frame(CLIENT, VIP, 5354, 53, b"again"));
    e.from_clients(&mut q, &mut fx.cx(3));
    let (copy, _) = across(&mut q).drain().next().unwrap();
    h.push(copy, Meta::new(0)).unwrap();
    role.run_handed(&mut h, &mut fx.cx(4));
    let mut paths: Vec<u8> = Vec::new();
    for (p, m) in h.pkts.iter().zip(&h.meta) {
        match m.verdict {
            Verdict::Forward { port: 0, next_hop } if next_hop == ROUTER => {
                let o = parse_outer(p.data()).unwrap();
                assert_eq!((o.opt.dest, o.vni), (EDGE_NODE, VNI));
                paths.push(m.path);
            }
            v => assert_eq!(v, TO_TARGET),
        }
    }
    paths.sort();
    assert_eq!(paths, [3, 4], "{:?}", h.meta);
    assert_eq!(h.len(), 3);

    // The answer to the direct client goes straight back to it, not over the overlay.
    let mut d: Burst<VecBuf> = Burst::with_capacity(8);
    let reply = frame(TARGET, from_direct, 5353, udp_of(&b.pkts[3]).2, b"to you");
    d.push(to_port(reply, 1), Meta::new(1)).unwrap();
    role.run(&mut d, &mut fx.cx(5));
    assert_eq!(
        d.meta[0].verdict,
        Verdict::Forward {
            port: 1,
            next_hop: direct_client
        }
    );
    let (src, dst, sport, dport, _) = udp_of(&d.pkts[0]);
    assert_eq!((src, dst, sport, dport), (gw_vip, direct_client, 53, 6000));
    // Nothing was left for a lane without stages.
    assert!(!d.meta.iter().any(|m| matches!(m.verdict, Verdict::Lane(Lane::Service))));
}
