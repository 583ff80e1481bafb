//! Gateway NAT: translation cases for TCP, UDP, ICMP echo and ICMP errors checked with etherparse (an
//! independent parser, checksums included), a translate / reverse-translate property test, TCP states and
//! timeouts on an injected clock, exhaustion of a tiny pool and table, and the hand-off of replies to the
//! owning worker between two threads.
use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::{Icmpv4Type, Ipv4HeaderSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use pipelines::buf::{PacketBuf, VecBuf};
use pipelines::handoff::Handoff;
use pipelines::nat::table::TICK_NS;
use pipelines::nat::{Nat, NatApp, NatApps, NatConfig, NatRule, NatTarget, Origin, Pool, Timeouts};
use pipelines::stage::{Burst, Meta, Scratch, Verdict};
use pipelines::DropReason;
use pipelines::Stage;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use std::sync::Arc;

const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT: [u8; 4] = [192, 168, 1, 10];
const VIP: [u8; 4] = [100, 64, 0, 1];
const T1: [u8; 4] = [10, 20, 0, 10];
const T2: [u8; 4] = [10, 20, 0, 11];
const P1: [u8; 4] = [10, 30, 0, 1];
const ROUTER: [u8; 4] = [10, 20, 0, 254];
const APP: u16 = 3;
const ORIGIN: Origin = Origin {
    app: APP,
    edge: 7,
    stream: 0x0142,
};
const SEC: u64 = 1_000_000_000;
const TCP: u8 = 6;
const UDP: u8 = 17;

fn apps(t1_up: bool, t2: Option<bool>) -> Arc<NatApps> {
    let mut targets = vec![NatTarget {
        addr: T1.into(),
        up: t1_up,
    }];
    if let Some(up) = t2 {
        targets.push(NatTarget { addr: T2.into(), up });
    }
    let app = NatApp {
        rules: vec![
            NatRule {
                proto: TCP,
                port: 80,
                target_port: 8080,
            },
            NatRule {
                proto: UDP,
                port: 53,
                target_port: 5353,
            },
        ],
        targets,
        icmp: true,
    };
    let mut v = vec![None; APP as usize + 1];
    v[APP as usize] = Some(app);
    Arc::new(NatApps { apps: v })
}

fn config(addrs: &[[u8; 4]], lo: u16, hi: u16, workers: u16, max: usize) -> NatConfig {
    NatConfig {
        max_sessions: max,
        timeouts: Timeouts::default(),
        pool: Pool::new(addrs.iter().map(|a| Ipv4Addr::from(*a)).collect(), lo, hi, workers).unwrap(),
    }
}

fn nat() -> Nat {
    Nat::new(&config(&[P1], 1024, 65535, 2, 1000), 0, apps(true, None))
}

fn tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: &str, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(A, B)
        .ipv4(src, dst, 64)
        .tcp(sp, dp, 1000, 64000);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'R' => b.rst(),
            _ => b,
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(A, B)
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn echo(src: [u8; 4], dst: [u8; 4], id: u16, request: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(A, B).ipv4(src, dst, 64);
    let b = if request {
        b.icmpv4_echo_request(id, 9)
    } else {
        b.icmpv4_echo_reply(id, 9)
    };
    let mut out = Vec::new();
    b.write(&mut out, b"ping-payload").unwrap();
    out
}

/// An ICMP error from `src` to `dst` quoting `quote` (an IPv4 packet, possibly cut).
fn icmp_error(src: [u8; 4], dst: [u8; 4], t: Icmpv4Type, quote: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(A, B)
        .ipv4(src, dst, 64)
        .icmpv4(t)
        .write(&mut out, quote)
        .unwrap();
    out
}

/// What etherparse sees in a frame: (src, dst, sport, dport); panics unless every checksum is right.
fn decode(f: &[u8]) -> ([u8; 4], [u8; 4], u16, u16) {
    let s = SlicedPacket::from_ethernet(f).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &s.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 header checksum");
    let (src, dst) = (h.source, h.destination);
    match s.transport.unwrap() {
        TransportSlice::Tcp(t) => {
            let th = t.to_header();
            assert_eq!(
                th.checksum,
                th.calc_checksum_ipv4_raw(src, dst, t.payload()).unwrap(),
                "TCP"
            );
            (src, dst, th.source_port, th.destination_port)
        }
        TransportSlice::Udp(u) => {
            let uh = u.to_header();
            if uh.checksum != 0 {
                assert_eq!(
                    uh.checksum,
                    uh.calc_checksum_ipv4_raw(src, dst, u.payload()).unwrap(),
                    "UDP"
                );
            }
            (src, dst, uh.source_port, uh.destination_port)
        }
        TransportSlice::Icmpv4(i) => {
            assert_eq!(i.header().checksum, i.icmp_type().calc_checksum(i.payload()), "ICMP");
            match i.icmp_type() {
                Icmpv4Type::EchoRequest(e) => (src, dst, e.id, 0),
                Icmpv4Type::EchoReply(e) => (src, dst, 0, e.id),
                _ => (src, dst, 0, 0),
            }
        }
        t => panic!("{t:?}"),
    }
}

/// The quoted packet of an ICMP error frame: (src, dst, sport, dport); checks the quoted IPv4 header
/// checksum, and the quoted transport checksum when the whole quoted datagram is there.
fn decode_quote(f: &[u8]) -> ([u8; 4], [u8; 4], u16, u16) {
    let q = &f[14 + 20 + 8..];
    let ip = Ipv4HeaderSlice::from_slice(q).unwrap().to_header();
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "quoted IPv4 header checksum"
    );
    let l4 = &q[20..];
    let whole = q.len() == ip.total_len as usize;
    if whole {
        // A complete quoted datagram: let etherparse check its transport checksum too.
        let mut frame = f[..14].to_vec();
        frame.extend_from_slice(q);
        return decode(&frame);
    }
    let sp = u16::from_be_bytes([l4[0], l4[1]]);
    let dp = u16::from_be_bytes([l4[2], l4[3]]);
    (ip.source, ip.destination, sp, dp)
}

fn in_slice(nat: &Nat, port: u16) -> bool {
    nat.pool().slice(nat.worker()).contains(&port)
}

#[test]
fn tcp_syn_opens_a_session_and_both_directions_translate() {
    let mut n = nat();
    let mut syn = tcp(CLIENT, VIP, 40000, 80, "S", b"");
    assert_eq!(n.outbound(&mut syn, ORIGIN, 0), Ok(T1.into()));
    let (s, d, sp, dp) = decode(&syn);
    assert_eq!((s, d, dp), (P1, T1, 8080));
    assert!(in_slice(&n, sp), "pool port {sp} from worker 0's slice");
    assert_eq!(n.pool().owner(sp), Some(0));

    let mut synack = tcp(T1, P1, 8080, sp, "SA", b"");
    assert_eq!(n.inbound(&mut synack, SEC), Ok(ORIGIN));
    assert_eq!(decode(&synack), (VIP, CLIENT, 80, 40000));

    let mut data = tcp(CLIENT, VIP, 40000, 80, "A", b"GET / HTTP/1.1\r\n\r\n");
    n.outbound(&mut data, ORIGIN, 2 * SEC).unwrap();
    assert_eq!(decode(&data), (P1, T1, sp, 8080));
    assert_eq!(n.live(), [1, 0, 0]);
    assert_eq!(n.stats.created, [1, 0, 0]);
}

#[test]
fn udp_translates_and_a_zero_checksum_stays_zero() {
    let mut n = nat();
    let mut q = udp(CLIENT, VIP, 5000, 53, b"query");
    n.outbound(&mut q, ORIGIN, 0).unwrap();
    let (s, d, sp, dp) = decode(&q);
    assert_eq!((s, d, dp), (P1, T1, 5353));
    let mut r = udp(T1, P1, 5353, sp, b"answer");
    assert_eq!(n.inbound(&mut r, 0), Ok(ORIGIN));
    assert_eq!(decode(&r), (VIP, CLIENT, 53, 5000));

    let mut z = udp(CLIENT, VIP, 5000, 53, b"no checksum");
    z[14 + 20 + 6] = 0;
    z[14 + 20 + 7] = 0;
    n.outbound(&mut z, ORIGIN, 0).unwrap();
    assert_eq!(&z[14 + 20 + 6..14 + 20 + 8], &[0, 0], "UDP checksum 0 stays 0");
    assert_eq!(decode(&z), (P1, T1, sp, 5353));
}

#[test]
fn icmp_echo_gets_a_pool_id_and_the_reply_the_client_id() {
    let mut n = nat();
    let mut e = echo(CLIENT, VIP, 0x1234, true);
    assert_eq!(n.outbound(&mut e, ORIGIN, 0), Ok(T1.into()));
    let (s, d, id, _) = decode(&e);
    assert_eq!((s, d), (P1, T1));
    assert!(in_slice(&n, id));
    let mut r = echo(T1, P1, id, false);
    assert_eq!(n.inbound(&mut r, 0), Ok(ORIGIN));
    assert_eq!(decode(&r), (VIP, CLIENT, 0, 0x1234));
    // The target side cannot ping through the pool.
    let mut probe = echo(T1, P1, id, true);
    assert_eq!(n.inbound(&mut probe, 0), Err(DropReason::NatNoSession));
    assert_eq!(n.live(), [0, 0, 1]);
}

#[test]
fn icmp_errors_from_the_target_side_are_translated_with_the_quoted_packet() {
    let mut n = nat();
    // TCP: fragmentation needed from a router, quoting 28 bytes (IP header + 8), as routers do.
    let mut syn = tcp(CLIENT, VIP, 40000, 80, "S", b"");
    n.outbound(&mut syn, ORIGIN, 0).unwrap();
    let frag = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1200 });
    let mut err = icmp_error(ROUTER, P1, frag.clone(), &syn[14..14 + 28]);
    assert_eq!(n.inbound(&mut err, 0), Ok(ORIGIN));
    let (s, d, _, _) = decode(&err);
    assert_eq!((s, d), (VIP, CLIENT), "the error comes from the VIP, to the client");
    assert_eq!(decode_quote(&err), (CLIENT, VIP, 40000, 80));
    let s = SlicedPacket::from_ethernet(&err).unwrap();
    let Some(TransportSlice::Icmpv4(i)) = s.transport else {
        panic!()
    };
    assert_eq!(i.icmp_type(), frag, "type, code and MTU unchanged");

    // TCP quoted in full (checksum at offset 16 present): the quoted TCP checksum follows.
    let mut data = tcp(CLIENT, VIP, 40000, 80, "A", b"0123456789");
    n.outbound(&mut data, ORIGIN, 0).unwrap();
    let mut err = icmp_error(T1, P1, frag.clone(), &data[14..]);
    n.inbound(&mut err, 0).unwrap();
    assert_eq!(decode_quote(&err), (CLIENT, VIP, 40000, 80));

    // UDP, port unreachable from the target, whole datagram quoted.
    let mut q = udp(CLIENT, VIP, 5000, 53, b"query");
    n.outbound(&mut q, ORIGIN, 0).unwrap();
    let unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    let mut err = icmp_error(T1, P1, unreach, &q[14..]);
    n.inbound(&mut err, 0).unwrap();
    assert_eq!(decode(&err).0, VIP);
    assert_eq!(decode_quote(&err), (CLIENT, VIP, 5000, 53));

    // Time exceeded quoting an echo request: the quoted id goes back to the client's.
    let mut e = echo(CLIENT, VIP, 0x77, true);
    n.outbound(&mut e, ORIGIN, 0).unwrap();
    let mut err = icmp_error(
        ROUTER,
        P1,
        Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
        &e[14..],
    );
    n.inbound(&mut err, 0).unwrap();
    assert_eq!(decode_quote(&err), (CLIENT, VIP, 0x77, 0));
    assert_eq!(n.stats.translated_in, 4);

    // An error about a flow with no session is dropped; errors never open or refresh sessions.
    let other = tcp(P1, T1, 9999, 8080, "S", b"");
    let mut err = icmp_error(ROUTER, P1, frag, &other[14..14 + 28]);
    assert_eq!(n.inbound(&mut err, 0), Err(DropReason::NatIcmpNoSession));
}

#[test]
fn client_side_icmp_error_about_a_reply_reaches_the_target() {
    let mut n = nat();
    let mut q = udp(CLIENT, VIP, 5000, 53, b"query");
    n.outbound(&mut q, ORIGIN, 0).unwrap();
    let (_, _, pport, _) = decode(&q);
    let mut r = udp(T1, P1, 5353, pport, b"answer");
    n.inbound(&mut r, 0).unwrap(); // now VIP:53 -> CLIENT:5000
    let unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    let mut err = icmp_error(CLIENT, VIP, unreach, &r[14..]);
    assert_eq!(n.outbound(&mut err, ORIGIN, 0), Ok(T1.into()));
    let (s, d, _, _) = decode(&err);
    assert_eq!((s, d), (P1, T1));
    assert_eq!(decode_quote(&err), (T1, P1, 5353, pport));
}

#[test]
fn what_may_not_open_a_session_is_dropped_by_reason() {
    let mut n = nat();
    let cases: Vec<(Vec<u8>, Origin, DropReason)> = vec![
        (tcp(CLIENT, VIP, 1, 80, "A", b"x"), ORIGIN, DropReason::NatNoSession),
        (tcp(CLIENT, VIP, 1, 80, "SA", b""), ORIGIN, DropReason::NatNoSession),
        (tcp(CLIENT, VIP, 1, 22, "S", b""), ORIGIN, DropReason::NoApplication),
        (udp(CLIENT, VIP, 1, 54, b""), ORIGIN, DropReason::NoApplication),
        (
            udp(CLIENT, VIP, 1, 53, b""),
            Origin { app: 9, ..ORIGIN },
            DropReason::NoApplication,
        ),
        (echo(CLIENT, VIP, 1, false), ORIGIN, DropReason::NatNoSession),
    ];
    for (mut f, o, want) in cases {
        assert_eq!(n.outbound(&mut f, o, 0), Err(want), "{:?}", decode(&f));
    }
    // Replies to nothing, and a fragment.
    assert_eq!(
        n.inbound(&mut tcp(T1, P1, 8080, 2000, "SA", b""), 0),
        Err(DropReason::NatNoSession)
    );
    let mut frag = udp(CLIENT, VIP, 1, 53, b"x");
    frag[14 + 6] |= 0x20; // MF
    let c = pipelines::checksum::update16(u16::from_be_bytes([frag[24], frag[25]]), 0x4000, 0x6000);
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(n.outbound(&mut frag, ORIGIN, 0), Err(DropReason::Ipv4Fragment));
    assert_eq!(n.outbound(&mut [0u8; 20], ORIGIN, 0), Err(DropReason::Ipv4Truncated));
    assert_eq!(n.live(), [0, 0, 0], "nothing was opened");

    // ICMP echo to an application that does not take it.
    let mut no_icmp = (*apps(true, None)).clone();
    no_icmp.apps[APP as usize].as_mut().unwrap().icmp = false;
    n.set_apps(Arc::new(no_icmp));
    assert_eq!(
        n.outbound(&mut echo(CLIENT, VIP, 1, true), ORIGIN, 0),
        Err(DropReason::NoApplication)
    );
}

#[test]
fn targets_marked_down_are_skipped() {
    let mut n = Nat::new(&config(&[P1], 1024, 65535, 1, 1000), 0, apps(false, Some(true)));
    for p in 0..50 {
        let mut f = udp(CLIENT, VIP, 1000 + p, 53, b"");
        assert_eq!(n.outbound(&mut f, ORIGIN, 0), Ok(T2.into()));
    }
    n.set_apps(apps(false, Some(false)));
    let mut f = udp(CLIENT, VIP, 999, 53, b"");
    assert_eq!(n.outbound(&mut f, ORIGIN, 0), Err(DropReason::NatNoTarget));
    // Existing sessions keep their target.
    let mut f = udp(CLIENT, VIP, 1000, 53, b"");
    assert_eq!(n.outbound(&mut f, ORIGIN, 0), Ok(T2.into()));
    // With both up, flows spread over both.
    let mut n = Nat::new(&config(&[P1], 1024, 65535, 1, 1000), 0, apps(true, Some(true)));
    let mut hits = [0; 2];
    for p in 0..200 {
        let mut f = udp(CLIENT, VIP, 1000 + p, 53, b"");
        hits[(n.outbound(&mut f, ORIGIN, 0).unwrap() == Ipv4Addr::from(T2)) as usize] += 1;
    }
    assert!(hits[0] > 50 && hits[1] > 50, "{hits:?}");
}

/// Opens a TCP session with a SYN at `t`; returns the pool port.
fn open_tcp(n: &mut Nat, cport: u16, t: u64) -> u16 {
    let mut syn = tcp(CLIENT, VIP, cport, 80, "S", b"");
    n.outbound(&mut syn, ORIGIN, t).unwrap();
    decode(&syn).2
}

fn reply(n: &mut Nat, pport: u16, flags: &str, t: u64) -> Result<Origin, DropReason> {
    n.inbound(&mut tcp(T1, P1, 8080, pport, flags, b""), t)
}

#[test]
fn tcp_states_and_timeouts_follow_rfc_5382_on_an_injected_clock() {
    let to = Timeouts::default();
    assert!(to.tcp_established >= 7440 && to.tcp_transitory >= 240 && to.udp >= 120 && to.icmp >= 60);
    let mut n = nat();
    let tr = to.tcp_transitory as u64 * SEC;
    let est = to.tcp_established as u64 * SEC;

    // Half open: transitory timeout.
    let p = open_tcp(&mut n, 1, 0);
    assert!(
        reply(&mut n, p, "A", tr - 1).is_ok(),
        "alive just before the transitory timeout"
    );
    assert_eq!(n.table().iter().next().unwrap().tcp.name(), "syn_sent");
    let p2 = open_tcp(&mut n, 2, 0);
    assert_eq!(
        reply(&mut n, p2, "A", tr + TICK_NS),
        Err(DropReason::NatNoSession),
        "gone within a tick of it"
    );

    // Established: the long timeout, refreshed by traffic.
    let p = open_tcp(&mut n, 3, 0);
    reply(&mut n, p, "SA", SEC).unwrap();
    assert!(reply(&mut n, p, "A", SEC + est - 1).is_ok());
    assert!(reply(&mut n, p, "A", 2 * est).is_ok(), "refreshed by the last packet");
    assert_eq!(
        reply(&mut n, p, "A", 2 * est + est + TICK_NS),
        Err(DropReason::NatNoSession)
    );

    // FIN -> transitory; a new SYN from the same client port starts it over with the same mapping.
    let p = open_tcp(&mut n, 4, 0);
    reply(&mut n, p, "SA", 0).unwrap();
    n.outbound(&mut tcp(CLIENT, VIP, 4, 80, "FA", b""), ORIGIN, 0).unwrap();
    assert_eq!(reply(&mut n, p, "A", tr + TICK_NS), Err(DropReason::NatNoSession));
    let p = open_tcp(&mut n, 5, 0);
    reply(&mut n, p, "SA", 0).unwrap();
    reply(&mut n, p, "R", 0).unwrap();
    assert_eq!(open_tcp(&mut n, 5, 10 * SEC), p, "SYN after RST reuses the mapping");
    reply(&mut n, p, "SA", 10 * SEC).unwrap();
    assert!(reply(&mut n, p, "A", 10 * SEC + tr + 1).is_ok(), "established again");

    // UDP and ICMP timers; expiry in slices frees the sessions and counts them.
    let mut n = nat();
    let mut q = udp(CLIENT, VIP, 5000, 53, b"");
    n.outbound(&mut q, ORIGIN, 0).unwrap();
    let up = decode(&q).2;
    let mut e = echo(CLIENT, VIP, 9, true);
    n.outbound(&mut e, ORIGIN, 0).unwrap();
    assert_eq!(n.live(), [0, 1, 1]);
    n.expire(59 * SEC, 10_000);
    assert_eq!(n.live(), [0, 1, 1]);
    n.expire(60 * SEC - 1, 10_000);
    assert_eq!(n.live(), [0, 1, 1]);
    n.expire(60 * SEC + TICK_NS, 10_000);
    assert_eq!(n.live(), [0, 1, 0], "ICMP gone after 60 s (within a tick)");
    assert!(n.inbound(&mut udp(T1, P1, 5353, up, b""), 299 * SEC).is_ok());
    n.expire(299 * SEC + 300 * SEC + TICK_NS, 10_000);
    assert_eq!(n.live(), [0, 0, 0]);
    assert_eq!(n.stats.expired, [0, 1, 1]);
}

#[test]
fn expiry_runs_in_bounded_slices() {
    let mut n = Nat::new(&config(&[P1], 1024, 65535, 1, 1000), 0, apps(true, None));
    for p in 0..1000 {
        n.outbound(&mut udp(CLIENT, VIP, 1000 + p, 53, b""), ORIGIN, 0).unwrap();
    }
    let late = 1000 * SEC;
    n.expire(late, 64);
    let left = n.live()[1];
    assert!(
        (1000 - 64..1000).contains(&left),
        "one slice looks at 64 live sessions at most (and skips 64 x 64 free slots at most): {left} left"
    );
    for _ in 0..20 {
        n.expire_slice(late);
    }
    assert_eq!(n.live()[1], 0);
    // Freed ports are usable again.
    n.outbound(&mut udp(CLIENT, VIP, 1, 53, b""), ORIGIN, late).unwrap();
}

#[test]
fn a_tiny_pool_and_table_run_out_without_harm_to_existing_flows() {
    // 4 ports, one worker, room for 6 sessions.
    let mut n = Nat::new(&config(&[P1], 2000, 2003, 1, 6), 0, apps(true, None));
    let mut ports = vec![];
    for c in 0..4 {
        let mut f = udp(CLIENT, VIP, 100 + c, 53, b"");
        n.outbound(&mut f, ORIGIN, 0).unwrap();
        ports.push(decode(&f).2);
    }
    ports.sort();
    assert_eq!(ports, vec![2000, 2001, 2002, 2003]);
    let mut drops = pipelines::drop::DropCounts::default();
    for c in 4..10 {
        let r = n.outbound(&mut udp(CLIENT, VIP, 100 + c, 53, b""), ORIGIN, 0);
        assert_eq!(r, Err(DropReason::NatPortsExhausted));
        drops.add(Stage::Nat, r.unwrap_err(), 1);
    }
    // TCP has its own ports: 2 more sessions fill the table of 6.
    open_tcp(&mut n, 1, 0);
    open_tcp(&mut n, 2, 0);
    let r = n.outbound(&mut tcp(CLIENT, VIP, 3, 80, "S", b""), ORIGIN, 0);
    assert_eq!(r, Err(DropReason::NatTableFull));
    drops.add(Stage::Nat, r.unwrap_err(), 1);
    // Existing flows continue both ways.
    for (c, p) in (100..104).zip([2000u16, 2001, 2002, 2003]) {
        n.outbound(&mut udp(CLIENT, VIP, c, 53, b"more"), ORIGIN, SEC).unwrap();
        n.inbound(&mut udp(T1, P1, 5353, p, b"back"), SEC).unwrap();
    }
    eprintln!(
        "tiny pool: live {:?} created {:?} ports_exhausted {} table_full {} translated out {} in {}",
        n.live(),
        n.stats.created,
        drops.reason(DropReason::NatPortsExhausted),
        drops.reason(DropReason::NatTableFull),
        n.stats.translated_out,
        n.stats.translated_in
    );
    assert_eq!(n.live(), [2, 4, 0]);
    assert_eq!(drops.reason(DropReason::NatPortsExhausted), 6);
    assert_eq!(drops.reason(DropReason::NatTableFull), 1);
    // After expiry the pool serves new flows again.
    n.expire(1000 * SEC, 100);
    n.outbound(&mut udp(CLIENT, VIP, 200, 53, b""), ORIGIN, 1000 * SEC)
        .unwrap();
}

#[test]
fn pool_slices_name_their_worker() {
    let p = Pool::new(vec![P1.into()], 1024, 65535, 3).unwrap();
    assert_eq!(p.slice(0), 1024..=22527);
    assert_eq!(p.slice(2), 44032..=65535);
    assert_eq!(
        (p.owner(1023), p.owner(1024), p.owner(22528), p.owner(65535)),
        (None, Some(0), Some(1), Some(2))
    );
    let p = Pool::new(vec![P1.into()], 1000, 1009, 3).unwrap();
    assert_eq!(
        (p.owner(1008), p.owner(1009)),
        (Some(2), None),
        "the rest of the division is unused"
    );
    assert!(Pool::new(vec![], 1, 2, 1).is_err());
    assert!(Pool::new(vec![P1.into()], 5, 4, 1).is_err());
    assert!(Pool::new(vec![P1.into()], 5, 6, 3).is_err());
}

#[test]
fn burst_form_matches_the_per_packet_form() {
    let frames: Vec<Vec<u8>> = (0..40)
        .map(|i| match i % 4 {
            0 => tcp(CLIENT, VIP, 3000 + i, 80, "S", b""),
            1 => udp(CLIENT, VIP, 3000 + i, 53, b"q"),
            2 => echo(CLIENT, VIP, 3000 + i, true),
            _ => udp(CLIENT, VIP, 3000 + i, 99, b"no app"),
        })
        .collect();
    // The same hash keys: the same flows get the same pool pairs.
    let mut one = nat().with_hash_keys([7, 11]);
    let mut want = vec![];
    for f in &frames {
        let mut f = f.clone();
        let r = one.outbound(&mut f, ORIGIN, 0);
        want.push((f, r.err()));
    }
    let mut many = nat().with_hash_keys([7, 11]);
    let mut b = Burst::with_capacity(64);
    for f in &frames {
        let mut m = Meta::new(0);
        m.app = ORIGIN.app;
        m.sender = ORIGIN.edge;
        m.stream = ORIGIN.stream;
        b.push(VecBuf::new(f, 0), m).unwrap();
    }
    many.run_outbound(&mut b, &mut Scratch::default().cx(0));
    for (i, (p, m)) in b.drain().enumerate() {
        assert_eq!(p.to_vec(), want[i].0, "packet {i}");
        match want[i].1 {
            None => assert_eq!(m.verdict, Verdict::Next),
            Some(r) => assert_eq!(m.verdict, Verdict::Drop(Stage::Nat, r)),
        }
    }
}

#[test]
fn replies_for_another_workers_port_are_handed_to_it_across_threads() {
    const FLOWS: u16 = 500;
    let cfg = config(&[P1], 1024, 65535, 2, 4096);
    let apps = apps(true, None);
    // Worker 1 opens the sessions; the replies arrive at worker 0, which hands them over.
    let mut w1 = Nat::new(&cfg, 1, apps.clone());
    let mut replies = vec![];
    for c in 0..FLOWS {
        let mut f = udp(CLIENT, VIP, 10_000 + c, 53, b"q");
        w1.outbound(&mut f, ORIGIN, 0).unwrap();
        let pport = decode(&f).2;
        assert_eq!(cfg.pool.owner(pport), Some(1));
        replies.push(udp(T1, P1, 5353, pport, b"answer"));
    }
    let ring: Arc<Handoff<(VecBuf, Meta)>> = Arc::new(Handoff::new(2, 64));
    let r0 = ring.clone();
    let w0 = std::thread::spawn(move || {
        let mut n0 = Nat::new(&cfg, 0, apps);
        let mut fx = Scratch::default();
        let (mut handed, mut retries) = (0u32, 0u64);
        for chunk in replies.chunks(32) {
            let mut b = Burst::with_capacity(32);
            for f in chunk {
                b.push(VecBuf::new(f, 0), Meta::new(0)).unwrap();
            }
            n0.run_inbound(&mut b, &mut fx.cx(SEC));
            for (p, m) in b.drain() {
                assert_eq!(m.verdict, Verdict::Handoff { worker: 1 });
                let mut item = (p, m);
                // Bounded wait for room: the consumer runs concurrently.
                loop {
                    match r0.send(0, 1, item) {
                        Ok(()) => break,
                        Err(back) => {
                            item = back;
                            retries += 1;
                            assert!(retries < 10_000_000, "consumer stalled");
                            std::thread::yield_now();
                        }
                    }
                }
                handed += 1;
            }
        }
        handed
    });
    let mut got = 0u32;
    let mut fx = Scratch::default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while got < FLOWS as u32 && std::time::Instant::now() < deadline {
        let mut b = Burst::with_capacity(32);
        ring.recv(1, 32, |(p, mut m): (VecBuf, Meta)| {
            m.verdict = Verdict::Next;
            b.push(p, m).unwrap();
        });
        w1.run_inbound(&mut b, &mut fx.cx(SEC));
        for (p, m) in b.drain() {
            assert_eq!(m.verdict, Verdict::Next);
            assert_eq!((m.app, m.sender, m.stream), (ORIGIN.app, ORIGIN.edge, ORIGIN.stream));
            let (s, d, sp, dp) = decode(p.data());
            assert_eq!((s, d, sp), (VIP, CLIENT, 53));
            assert!((10_000..10_000 + FLOWS).contains(&dp));
            got += 1;
        }
        std::thread::yield_now();
    }
    assert_eq!(w0.join().unwrap(), FLOWS as u32);
    assert_eq!(got, FLOWS as u32, "every reply reached the owner");
    assert_eq!(w1.stats.translated_in, FLOWS as u64);
}

/// Swaps source and destination (MACs, addresses, ports or echo type): checksums stay valid, since the
/// sums do not depend on the order.
fn mirror(f: &mut [u8]) {
    let (a, b) = f.split_at_mut(6);
    a.swap_with_slice(&mut b[..6]);
    let (a, b) = f[26..].split_at_mut(4);
    a.swap_with_slice(&mut b[..4]);
    let ihl = (f[14] & 0xf) as usize * 4;
    let l4 = 14 + ihl;
    match f[23] {
        1 => {
            // echo request <-> reply: type 8 <-> 0 changes the first word by 0x0800.
            let (old, new) = if f[l4] == 8 { (0x0800, 0) } else { (0, 0x0800) };
            f[l4] = (new >> 8) as u8;
            let c = pipelines::checksum::update16(u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]), old, new);
            f[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {
            let (a, b) = f[l4..].split_at_mut(2);
            a.swap_with_slice(&mut b[..2]);
        }
    }
}

/// The frame with its checksum fields zeroed (their validity is checked separately).
fn without_checksums(f: &[u8]) -> Vec<u8> {
    let mut v = f.to_vec();
    v[24] = 0;
    v[25] = 0;
    let l4 = 14 + (f[14] & 0xf) as usize * 4;
    let at = match f[23] {
        6 => l4 + 16,
        17 => l4 + 6,
        _ => l4 + 2,
    };
    v[at] = 0;
    v[at + 1] = 0;
    v
}

proptest! {
    /// For random flows: translating a client packet, mirroring it as the target's reply and translating
    /// that back gives the client's packet mirrored, with every checksum valid at every step.
    #[test]
    fn translate_then_reverse_translate_gives_back_the_packet(
        proto in 0u8..3,
        client in any::<[u8; 4]>().prop_filter("unicast", |a| a[0] > 0 && a[0] < 224 && a[0] != 127),
        cport in 1u16..,
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        flows in 1usize..20,
    ) {
        let mut n = nat();
        for k in 0..flows {
            let cp = cport.wrapping_add(k as u16).max(1);
            let orig = match proto {
                0 => tcp(client, VIP, cp, 80, "S", &payload),
                1 => udp(client, VIP, cp, 53, &payload),
                _ => echo(client, VIP, cp, true),
            };
            let mut f = orig.clone();
            n.outbound(&mut f, ORIGIN, 0).unwrap();
            let (s, d, _, _) = decode(&f);
            prop_assert_eq!((s, d), (P1, T1));
            mirror(&mut f);
            decode(&f);
            prop_assert_eq!(n.inbound(&mut f, 0), Ok(ORIGIN));
            decode(&f);
            mirror(&mut f);
            prop_assert_eq!(without_checksums(&f), without_checksums(&orig));
        }
    }
}

proptest! {
    /// Hostile bytes: any frame, or a valid one with bytes flipped, is translated or dropped with a reason,
    /// never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        junk in proptest::collection::vec(any::<u8>(), 0..120),
        flips in proptest::collection::vec((0usize..120, any::<u8>()), 0..6),
        kind in 0u8..4,
    ) {
        let mut n = nat();
        let mut f = junk.clone();
        let _ = n.outbound(&mut f, ORIGIN, 0);
        let _ = n.inbound(&mut junk.clone(), 0);
        let mut v = match kind {
            0 => tcp(CLIENT, VIP, 1, 80, "S", b"abc"),
            1 => udp(CLIENT, VIP, 1, 53, b"abc"),
            2 => echo(CLIENT, VIP, 1, true),
            _ => icmp_error(T1, P1, Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port), &udp(P1, T1, 1024, 5353, b"x")[14..]),
        };
        for (at, b) in flips {
            if let Some(x) = v.get_mut(at) { *x ^= b; }
        }
        let _ = n.outbound(&mut v.clone(), ORIGIN, 0);
        let _ = n.inbound(&mut v, 0);
    }
}

proptest! {
    /// The fast rewrite of TCP and UDP packets gives exactly the bytes the general one gives (a zero UDP
    /// checksum and one that becomes zero included); ICMP echo requests and replies go the general way.
    #[test]
    fn the_fast_rewrite_matches_the_general_one(
        proto in 0u8..5,
        src in any::<[u8; 4]>(),
        sport in 1u16..,
        new in (any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>()),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        use pipelines::nat::packet::{parse, rewrite, rewrite_general, Tuple};
        let mut f = match proto {
            0 => tcp(src, VIP, sport, 80, "A", &payload),
            1 => udp(src, VIP, sport, 53, &payload),
            2 => {
                let mut f = udp(src, VIP, sport, 53, &payload);
                f[40] = 0; // no UDP checksum
                f[41] = 0;
                f
            }
            3 => echo(src, VIP, sport, true),
            _ => echo(src, VIP, sport, false),
        };
        let p = parse(&f).unwrap();
        let t = p.tuple;
        let (s, d, sp, dp) = new;
        // ICMP echo keeps its shape: a request's id is its source "port", a reply's its destination.
        let to = match (proto, t.sport, t.dport) {
            (3 | 4, 0, _) => Tuple { src: s, dst: d, sport: 0, dport: dp.max(1), proto: t.proto },
            (3 | 4, _, _) => Tuple { src: s, dst: d, sport: sp.max(1), dport: 0, proto: t.proto },
            _ => Tuple { src: s, dst: d, sport: sp, dport: dp, proto: t.proto },
        };
        let mut want = f.clone();
        rewrite_general(&mut want, &p, &to, to.src, to.dst);
        rewrite(&mut f, &p, &to, to.src, to.dst);
        prop_assert_eq!(f, want);
    }
}

proptest! {
    /// The one-check parse of plain TCP and UDP packets gives what the full parse gives, for valid frames
    /// of every kind, frames with bytes flipped (lengths, IHL, fragment bits, protocol) and cut ones.
    #[test]
    fn the_fast_parse_matches_the_full_one(
        kind in 0u8..5,
        payload in proptest::collection::vec(any::<u8>(), 0..40),
        flips in proptest::collection::vec((14usize..50, any::<u8>()), 0..3),
        total in proptest::option::of(0u16..90),
        ihl in proptest::option::of(0u8..16),
        cut in 0usize..90,
    ) {
        use pipelines::nat::packet::{parse_any, parse_into, Parsed};
        let mut v = match kind {
            0 => tcp(CLIENT, VIP, 1000, 80, "S", &payload),
            1 => udp(CLIENT, VIP, 1000, 53, &payload),
            2 => echo(CLIENT, VIP, 7, true),
            3 => icmp_error(T1, P1, Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port), &udp(P1, T1, 1024, 5353, b"x")[14..]),
            _ => tcp(CLIENT, VIP, 1000, 80, "FA", &payload),
        };
        for (at, b) in flips {
            if let Some(x) = v.get_mut(at) { *x ^= b; }
        }
        if let Some(t) = total {
            v[16..18].copy_from_slice(&t.to_be_bytes());
        }
        if let Some(h) = ihl {
            v[14] = 0x40 | h;
        }
        v.truncate(v.len().saturating_sub(cut % 8 * (cut / 8 % 2)));
        let (mut fast, mut full) = (Parsed::default(), Parsed::default());
        let r = parse_into(&v, &mut fast);
        prop_assert_eq!(r, parse_any(&v, &mut full));
        if r.is_ok() {
            prop_assert_eq!(fast, full);
        }
    }
}
