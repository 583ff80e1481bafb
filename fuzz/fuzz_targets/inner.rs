//! Untrusted client frames: L2/L3 presence (ARP, ICMP, IPv4 validation, routing), classification, the
//! MTU guard (MSS clamping, fragmentation needed) and encapsulation must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipelines::buf::VecBuf;
use pipelines::overlay::classify::{Classifier, Service};
use pipelines::overlay::encap::{AppRoute, Encap};
use pipelines::overlay::mtu::MtuGuard;
use pipelines::presence::{PortAddrs, Presence};
use pipelines::route::{Route, RouteTable};
use pipelines::MacAddr;
use std::net::Ipv4Addr;

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
