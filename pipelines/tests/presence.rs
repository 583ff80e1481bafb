//! Presence stage tests: frames built with etherparse's PacketBuilder, verdicts and bytes checked with
//! etherparse as the independent parser.
use etherparse::{
    ArpEthIpv4Packet, ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv4Type, NetSlice, PacketBuilder,
    SlicedPacket, TransportSlice,
};
use pipelines::presence::{Learn, PortAddrs, Presence};
use pipelines::route::{Route, RouteTable};
use pipelines::stage::{Lane, Verdict};
use pipelines::Stage;
use pipelines::{DropReason, MacAddr};
use proptest::prelude::*;
use std::net::Ipv4Addr;

const ME: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const ME1: [u8; 6] = [0x02, 0, 0, 0, 1, 0x01];
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const MY_IP: [u8; 4] = [10, 0, 0, 2];
const PEER_IP: [u8; 4] = [10, 0, 0, 1];

fn presence(forwarding: bool) -> Presence {
    let p0 = PortAddrs {
        mac: MacAddr(ME),
        addrs: vec!["10.0.0.2/24".parse().unwrap()],
        arp_extra: vec!["10.0.0.50".parse().unwrap()],
    };
    let p1 = PortAddrs {
        mac: MacAddr(ME1),
        addrs: vec!["10.1.0.2/24".parse().unwrap()],
        arp_extra: vec![],
    };
    let routes = RouteTable::new(vec![
        Route {
            net: "10.0.0.2/24".parse().unwrap(),
            port: 0,
            via: None,
        },
        Route {
            net: "10.1.0.2/24".parse().unwrap(),
            port: 1,
            via: None,
        },
        Route {
            net: "192.168.0.0/16".parse().unwrap(),
            port: 1,
            via: Some("10.1.0.1".parse().unwrap()),
        },
    ]);
    Presence::new(vec![p0, p1], routes, forwarding)
}

fn arp_frame(op: ArpOperation, eth_dst: [u8; 6], sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let arp = ArpPacket::new(ArpHardwareId::ETHERNET, EtherType::IPV4, op, &sha, &spa, &tha, &tpa).unwrap();
    let b = PacketBuilder::ethernet2(sha, eth_dst).arp(arp);
    let mut out = Vec::new();
    b.write(&mut out).unwrap();
    out
}

fn ping(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(PEER, ME)
        .ipv4(src, dst, ttl)
        .icmpv4_echo_request(0x1234, 7);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

#[test]
fn arp_request_for_own_address_is_answered_in_place() {
    let p = presence(false);
    let mut f = arp_frame(ArpOperation::REQUEST, [0xff; 6], PEER, PEER_IP, [0; 6], MY_IP);
    let out = p.process(0, &mut f);
    assert_eq!(out.verdict, Verdict::Reply);
    assert_eq!(
        out.learn,
        Some(Learn {
            ip: Ipv4Addr::from(PEER_IP),
            mac: MacAddr(PEER),
            for_us: true
        })
    );
    let s = SlicedPacket::from_ethernet(&f).unwrap();
    let eth = s.link.unwrap().to_header().unwrap().ethernet2().unwrap();
    assert_eq!((eth.source, eth.destination), (ME, PEER));
    let arp = ArpPacket::from_slice(&f[14..]).unwrap().try_eth_ipv4().unwrap();
    assert_eq!(
        arp,
        ArpEthIpv4Packet {
            operation: ArpOperation::REPLY,
            sender_mac: ME,
            sender_ipv4: MY_IP,
            target_mac: PEER,
            target_ipv4: PEER_IP
        }
    );
}

#[test]
fn arp_for_extra_address_is_answered_and_its_packets_go_to_the_service() {
    let p = presence(false);
    let mut f = arp_frame(ArpOperation::REQUEST, [0xff; 6], PEER, PEER_IP, [0; 6], [10, 0, 0, 50]);
    assert_eq!(p.process(0, &mut f).verdict, Verdict::Reply);
    // Not answered as an own address: the role's stages (NAT, overlay) take a valid packet to it.
    let mut f = ping(PEER_IP, [10, 0, 0, 50], 64, b"x");
    let before = f.clone();
    let o = p.process(0, &mut f);
    assert_eq!(o.verdict, Verdict::Lane(Lane::Service));
    assert_eq!(f, before, "left as it came");
    let mut bad = ping(PEER_IP, [10, 0, 0, 50], 64, b"x");
    bad[24] ^= 1;
    assert_eq!(
        p.process(0, &mut bad).verdict,
        Verdict::Drop(Stage::Presence, DropReason::Ipv4Checksum)
    );
}

#[test]
fn packets_to_a_pool_address_go_to_the_return_lane() {
    let p = presence(false).with_pool(vec!["10.0.0.50".parse().unwrap()]);
    let mut f = ping(PEER_IP, [10, 0, 0, 50], 64, b"x");
    assert_eq!(p.process(0, &mut f).verdict, Verdict::Lane(Lane::Return));
    // A pool address that is not a service address of any port is not claimed.
    let p = presence(false).with_pool(vec!["10.0.0.51".parse().unwrap()]);
    let mut f = ping(PEER_IP, [10, 0, 0, 51], 64, b"x");
    assert_eq!(
        p.process(0, &mut f).verdict,
        Verdict::Drop(Stage::Presence, DropReason::NotForUs)
    );
}

#[test]
fn arp_cases() {
    let p = presence(false);
    // Request for someone else: dropped, but the sender is offered for refresh only.
    let mut f = arp_frame(ArpOperation::REQUEST, [0xff; 6], PEER, PEER_IP, [0; 6], [10, 0, 0, 77]);
    let o = p.process(0, &mut f);
    assert_eq!(o.verdict, Verdict::Drop(Stage::Presence, DropReason::ArpNotForUs));
    // Our address on the other port is not answered on this port (per-port addresses).
    let mut f = arp_frame(ArpOperation::REQUEST, [0xff; 6], PEER, PEER_IP, [0; 6], [10, 1, 0, 2]);
    assert_eq!(
        p.process(0, &mut f).verdict,
        Verdict::Drop(Stage::Presence, DropReason::ArpNotForUs)
    );
    // A reply goes to the control thread.
    let mut f = arp_frame(ArpOperation::REPLY, ME, PEER, PEER_IP, ME, MY_IP);
    let o = p.process(0, &mut f);
    assert_eq!(o.verdict, Verdict::Consumed);
    assert_eq!(o.learn.unwrap().ip, Ipv4Addr::from(PEER_IP));
    // Gratuitous ARP refreshes.
    let mut f = arp_frame(ArpOperation::REQUEST, [0xff; 6], PEER, PEER_IP, [0; 6], PEER_IP);
    assert_eq!(p.process(0, &mut f).verdict, Verdict::Consumed);
    // ARP probe (sender 0.0.0.0) for our address: answered, nothing learned.
    let mut f = arp_frame(ArpOperation::REQUEST, [0xff; 6], PEER, [0, 0, 0, 0], [0; 6], MY_IP);
    let o = p.process(0, &mut f);
    assert_eq!((o.verdict, o.learn), (Verdict::Reply, None));
    // Unknown operation and truncated ARP.
    let mut f = arp_frame(ArpOperation(9), [0xff; 6], PEER, PEER_IP, [0; 6], MY_IP);
    assert_eq!(
        p.process(0, &mut f).verdict,
        Verdict::Drop(Stage::Presence, DropReason::ArpOpUnsupported)
    );
    let mut f = arp_frame(ArpOperation::REQUEST, [0xff; 6], PEER, PEER_IP, [0; 6], MY_IP);
    f.truncate(14 + 20);
    assert_eq!(
        p.process(0, &mut f).verdict,
        Verdict::Drop(Stage::Presence, DropReason::ArpMalformed)
    );
}

#[test]
fn l2_filter() {
    let p = presence(false);
    let mut f = ping(PEER_IP, MY_IP, 64, b"x");
    f[0..6].copy_from_slice(&[0x02, 9, 9, 9, 9, 9]);
    assert_eq!(
        p.process(0, &mut f).verdict,
        Verdict::Drop(Stage::Presence, DropReason::OtherHost)
    );
    let mut f = vec![0u8; 13];
    assert_eq!(
        p.process(0, &mut f).verdict,
        Verdict::Drop(Stage::Presence, DropReason::EthTruncated)
    );
    let mut f = ping(PEER_IP, MY_IP, 64, b"x");
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(
        p.process(0, &mut f).verdict,
        Verdict::Drop(Stage::Presence, DropReason::EtherTypeUnsupported)
    );
    // Unknown port index.
    let mut f = ping(PEER_IP, MY_IP, 64, b"x");
    assert_eq!(
        p.process(7, &mut f).verdict,
        Verdict::Drop(Stage::Presence, DropReason::OtherHost)
    );
}

#[test]
fn echo_request_gets_a_valid_reply() {
    let p = presence(false);
    let mut f = ping(PEER_IP, MY_IP, 5, b"hello, appliance");
    // Ethernet padding after the IP packet must not confuse length handling.
    f.extend_from_slice(&[0u8; 6]);
    assert_eq!(p.process(0, &mut f).verdict, Verdict::Reply);
    let s = SlicedPacket::from_ethernet(&f).unwrap();
    let eth = s.link.unwrap().to_header().unwrap().ethernet2().unwrap();
    assert_eq!((eth.source, eth.destination), (ME, PEER));
    let Some(NetSlice::Ipv4(ip)) = s.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!((h.source, h.destination, h.time_to_live), (MY_IP, PEER_IP, 64));
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let Some(TransportSlice::Icmpv4(icmp)) = s.transport else {
        panic!("not icmp")
    };
    match icmp.icmp_type() {
        Icmpv4Type::EchoReply(e) => assert_eq!((e.id, e.seq), (0x1234, 7)),
        t => panic!("{t:?}"),
    }
    assert_eq!(icmp.payload(), b"hello, appliance");
    assert_eq!(icmp.header().checksum, icmp.icmp_type().calc_checksum(icmp.payload()));
}

#[test]
fn ipv4_validation_reasons() {
    let p = presence(false);
    let base = ping(PEER_IP, MY_IP, 64, b"0123456789");
    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Mutation, DropReason)> = vec![
        (
            "truncated",
            Box::new(|f| f.truncate(14 + 19)),
            DropReason::Ipv4Truncated,
        ),
        ("version 6", Box::new(|f| f[14] = 0x65), DropReason::Ipv4Version),
        ("ihl 4", Box::new(|f| f[14] = 0x44), DropReason::Ipv4HeaderLength),
        (
            "ihl 15 > packet",
            Box::new(|f| {
                f[14] = 0x4f;
                f.truncate(14 + 40)
            }),
            DropReason::Ipv4HeaderLength,
        ),
        (
            "total < header",
            Box::new(|f| f[16..18].copy_from_slice(&10u16.to_be_bytes())),
            DropReason::Ipv4TotalLength,
        ),
        (
            "total > frame",
            Box::new(|f| f[16..18].copy_from_slice(&1000u16.to_be_bytes())),
            DropReason::Ipv4TotalLength,
        ),
        ("checksum", Box::new(|f| f[24] ^= 0x55), DropReason::Ipv4Checksum),
        (
            "multicast source",
            Box::new(|f| {
                f[26] = 224;
                fix(f)
            }),
            DropReason::Ipv4BadSource,
        ),
        (
            "ttl 0",
            Box::new(|f| {
                f[22] = 0;
                fix(f)
            }),
            DropReason::Ipv4TtlExpired,
        ),
        (
            "fragment",
            Box::new(|f| {
                f[20] = 0x20;
                fix(f)
            }),
            DropReason::Ipv4Fragment,
        ),
        (
            "udp to us",
            Box::new(|f| {
                f[23] = 17;
                fix(f)
            }),
            DropReason::ProtocolUnhandled,
        ),
        (
            "icmp checksum",
            Box::new(|f| f[14 + 20 + 2] ^= 1),
            DropReason::IcmpMalformed,
        ),
        (
            "icmp not echo",
            Box::new(|f| {
                f[14 + 20] = 13;
                fix_icmp(f)
            }),
            DropReason::IcmpUnhandled,
        ),
        (
            "to other host",
            Box::new(|f| {
                f[33] = 9;
                fix(f)
            }),
            DropReason::NotForUs,
        ),
        (
            "ip broadcast frame",
            Box::new(|f| f[0..6].copy_from_slice(&[0xff; 6])),
            DropReason::OtherHost,
        ),
    ];
    for (name, mutate, reason) in cases {
        let mut f = base.clone();
        mutate(&mut f);
        assert_eq!(
            p.process(0, &mut f).verdict,
            Verdict::Drop(Stage::Presence, reason),
            "{name}"
        );
    }
}

fn fix(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let c = pipelines::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

fn fix_icmp(f: &mut [u8]) {
    let total = u16::from_be_bytes([f[16], f[17]]) as usize;
    f[36] = 0;
    f[37] = 0;
    let c = pipelines::checksum::checksum(&f[34..14 + total]);
    f[36..38].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn forwarding_routes_and_decrements_ttl() {
    let p = presence(true);
    let mut f = ping(PEER_IP, [192, 168, 5, 5], 9, b"x");
    assert_eq!(
        p.process(0, &mut f).verdict,
        Verdict::Forward {
            port: 1,
            next_hop: "10.1.0.1".parse().unwrap()
        }
    );
    let (h, _) = etherparse::Ipv4Header::from_slice(&f[14..]).unwrap();
    assert_eq!(h.time_to_live, 8);
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let mut f = ping(PEER_IP, [10, 1, 0, 9], 9, b"x");
    assert_eq!(
        p.process(0, &mut f).verdict,
        Verdict::Forward {
            port: 1,
            next_hop: "10.1.0.9".parse().unwrap()
        }
    );
    let mut f = ping(PEER_IP, [8, 8, 8, 8], 9, b"x");
    assert_eq!(
        p.process(0, &mut f).verdict,
        Verdict::Drop(Stage::Presence, DropReason::NoRoute)
    );
    let mut f = ping(PEER_IP, [10, 1, 0, 9], 1, b"x");
    assert_eq!(
        p.process(0, &mut f).verdict,
        Verdict::Drop(Stage::Presence, DropReason::Ipv4TtlExpired)
    );
    // Our address on another port is still ours (weak host model): answered, not forwarded.
    let mut f = ping(PEER_IP, [10, 1, 0, 2], 9, b"x");
    assert_eq!(p.process(0, &mut f).verdict, Verdict::Reply);
}

proptest! {
    #[test]
    fn any_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..120), fwd in any::<bool>(), port in 0u16..3) {
        let p = presence(fwd);
        let _ = p.process(port, &mut b);
    }

    #[test]
    fn mutated_valid_frames_never_panic(idx in 0usize..60, val in any::<u8>(), cut in 0usize..64, fwd in any::<bool>()) {
        let p = presence(fwd);
        for mut f in [ping(PEER_IP, MY_IP, 64, b"payload-bytes"), arp_frame(ArpOperation::REQUEST, [0xff; 6], PEER, PEER_IP, [0; 6], MY_IP)] {
            let i = idx % f.len();
            f[i] = val;
            f.truncate(f.len().saturating_sub(cut % 8));
            let _ = p.process(0, &mut f);
        }
    }
}

#[test]
fn udp_to_the_overlay_port_goes_to_the_overlay_lane_only_when_the_overlay_is_on() {
    let udp = |dport: u16| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(PEER, ME)
            .ipv4(PEER_IP, MY_IP, 64)
            .udp(40000, dport)
            .write(&mut out, &[0u8; 16])
            .unwrap();
        out
    };
    let off = presence(false);
    let on = presence(false).with_overlay(6081);
    let mut f = udp(6081);
    let before = f.clone();
    let o = on.process(0, &mut f);
    assert_eq!(o.verdict, Verdict::Lane(Lane::Overlay));
    assert_eq!(f, before, "left as it came");
    assert_eq!(
        on.process(0, &mut udp(6082)).verdict,
        Verdict::Drop(Stage::Presence, DropReason::ProtocolUnhandled),
        "another port has no service"
    );
    assert_eq!(
        off.process(0, &mut udp(6081)).verdict,
        Verdict::Drop(Stage::Presence, DropReason::ProtocolUnhandled),
        "without the overlay, 6081 is a port like any other"
    );
}
