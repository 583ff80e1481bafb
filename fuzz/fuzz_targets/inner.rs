//! Untrusted client and target-side frames: L2/L3 presence (ARP, ICMP, IPv4 validation, routing), full NAT
//! both ways (sessions opened by the frame itself, ICMP errors with their quoted packet), classification,
//! the MTU guard (MSS clamping, fragmentation needed) and encapsulation must never panic, whatever the
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipelines::buf::VecBuf;
use pipelines::nat::{Nat, NatApp, NatApps, NatConfig, NatRule, NatTarget, Origin, Pool, Timeouts};
use pipelines::overlay::classify::{Classifier, Service};
use pipelines::overlay::encap::{AppRoute, Encap};
use pipelines::overlay::mtu::MtuGuard;
use pipelines::presence::{PortAddrs, Presence};
use pipelines::route::{Route, RouteTable};
use pipelines::MacAddr;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A NAT whose application 1 serves the frame's own protocol and destination port, with ICMP on.
fn nat_for(data: &[u8]) -> Nat {
    let (proto, port) = match data.get(23..38) {
        Some(d) => (d[0], u16::from_be_bytes([d[13], d[14]])),
        None => (17, 53),
    };
    let apps = NatApps {
        apps: vec![
            None,
            Some(NatApp {
                rules: vec![NatRule {
                    proto,
                    port,
                    target_port: 8080,
                }],
                targets: vec![NatTarget {
                    addr: Ipv4Addr::new(10, 20, 0, 10),
                    up: true,
                }],
                icmp: true,
            }),
        ],
    };
    let cfg = NatConfig {
        max_sessions: 16,
        timeouts: Timeouts::default(),
        pool: Pool::new(vec![Ipv4Addr::new(10, 30, 0, 1)], 1024, 65535, 2).unwrap(),
    };
    Nat::new(&cfg, 0, Arc::new(apps))
}

fuzz_target!(|data: &[u8]| {
    let presence = Presence::new(
        vec![PortAddrs {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            addrs: vec!["10.0.0.2/24".parse().unwrap()],
            arp_extra: vec![],
        }],
        RouteTable::new(vec![Route {
            net: "0.0.0.0/0".parse().unwrap(),
            port: 0,
            via: Some(Ipv4Addr::new(10, 0, 0, 1)),
        }]),
        data.first().is_some_and(|b| b & 1 == 1),
    );
    let mut f = data.to_vec();
    let _ = presence.process(0, &mut f);

    // NAT: the frame as a client packet (opening a session for whatever it names), then as a reply,
    // then again after its own translation (the reply path of the session it may have opened).
    let mut nat = nat_for(data);
    let mut f = data.to_vec();
    if nat
        .outbound(
            &mut f,
            Origin {
                app: 1,
                edge: 1,
                stream: 1,
            },
            1,
        )
        .is_ok()
    {
        let _ = nat.inbound(&mut f, 2);
    }
    let _ = nat.inbound(&mut data.to_vec(), 3);

    // Classify whatever the destination is, on the ports the frame names.
    let (dst, proto, port) = if data.len() >= 38 {
        (
            Ipv4Addr::new(data[30], data[31], data[32], data[33]),
            data[23],
            u16::from_be_bytes([data[36], data[37]]),
        )
    } else {
        (Ipv4Addr::new(100, 64, 0, 1), 6, 80)
    };
    let classifier = Classifier::new(
        &[Service {
            vip: dst,
            proto,
            port,
            app: 0,
        }],
        &[(dst, 0)],
    );
    let Ok((app, hash)) = classifier.classify(data) else {
        return;
    };
    let mut p = VecBuf::new(data, 128);
    let mtu = data.len().clamp(68, 9000) as u16;
    let _ = MtuGuard::new(mtu).apply(&mut p);
    let mut encap = Encap::new(
        1,
        Ipv4Addr::new(10, 1, 0, 1),
        40000,
        8,
        0,
        vec![2],
        vec![AppRoute { vni: 1, dest: 0 }],
    );
    let _ = encap.encap(&mut p, app, hash, 0);
});
