//! A small fixed overlay for tests, benchmarks, examples and fuzz seeds (not a configuration format):
//! edge node 1 at 10.1.0.1; relays at 10.2.0.1 (region "eu", path 1) and 10.3.0.1 (region "us", path 2),
//! both reached through the router 10.1.0.254 on port 0; gateway node 4 at 10.4.0.1; one application
//! (index 0, VNI 7) at VIP 100.64.0.1, TCP 80 and UDP 53; at the gateway, UDP 53 goes to the target
//! 10.20.0.10 port 5353 through a SNAT pool in 10.30.0.0/16.
use super::classify::{Classifier, Service};
use super::encap::{AppRoute, Encap};
use super::replicate::{Path, PathSet, Replicate};
use crate::nat::{Nat, NatApp, NatApps, NatConfig, NatRule, NatTarget, Pool, Timeouts};
use std::net::Ipv4Addr;
use std::sync::Arc;

pub const VIP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
pub const EDGE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const R1: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
pub const R2: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 1);
pub const GW: Ipv4Addr = Ipv4Addr::new(10, 4, 0, 1);
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 254);
pub const EDGE_NODE: u16 = 1;
pub const GW_NODE: u16 = 4;
pub const VNI: u32 = 7;
pub const TARGET: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 10);

/// TCP 80 and UDP 53 at the VIP belong to application 0.
pub fn classifier() -> Classifier {
    let svc = |proto, port| Service {
        vip: VIP,
        proto,
        port,
        app: 0,
    };
    Classifier::new(&[svc(6, 80), svc(17, 53)], &[])
}

/// The edge's encapsulation on worker `worker`: source port base 40000, 8 hops, toward the gateway.
pub fn encap(worker: u8) -> Encap {
    Encap::new(
        EDGE_NODE,
        EDGE,
        40000,
        8,
        worker,
        vec![GW_NODE],
        vec![AppRoute { vni: VNI, dest: 0 }],
    )
}

/// A path through the relay at `relay` in `region`, reached through [`ROUTER`] on port 0.
pub fn path(id: u8, region: &str, relay: Ipv4Addr) -> Path {
    Path {
        id,
        name: format!("via-{region}"),
        region: region.into(),
        relay,
        port: 0,
        next_hop: ROUTER,
        up: true,
    }
}

/// The edge's path set toward the gateway: path 1 via "eu", path 2 via "us".
pub fn replicate() -> Replicate {
    let set = PathSet::new(vec![path(1, "eu", R1), path(2, "us", R2)]).expect("two regions");
    Replicate::new(vec![set])
}

/// One worker's gateway NAT with room for `sessions` sessions: application `app` maps UDP 53 to
/// [`TARGET`] port 5353; the pool has enough 10.30.0.x addresses (64 512 ports each) for
/// [`crate::nat::table::PAIRS_PER_SESSION`] pairs per session (where lookups are fastest).
pub fn nat(app: u16, sessions: usize) -> Nat {
    nat_with_pool(app, sessions, sessions * crate::nat::table::PAIRS_PER_SESSION)
}

/// [`nat`] with a pool of at least `pairs` (address, port) pairs (whole addresses of 64 512 ports).
pub fn nat_with_pool(app: u16, sessions: usize, pairs: usize) -> Nat {
    let n = (pairs / 64_512 + 1) as u32;
    let addrs = (1..=n)
        .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 30, 0, 0)) + i))
        .collect();
    let cfg = NatConfig {
        max_sessions: sessions + 1024,
        timeouts: Timeouts::default(),
        pool: Pool::new(addrs, 1024, 65535, 1).expect("a non-empty pool"),
    };
    let mut apps = NatApps::default();
    apps.apps.resize(app as usize + 1, None);
    apps.apps[app as usize] = Some(NatApp {
        rules: vec![NatRule {
            proto: 17,
            port: 53,
            target_port: 5353,
        }],
        targets: vec![NatTarget { addr: TARGET, up: true }],
        icmp: true,
    });
    Nat::new(&cfg, 0, Arc::new(apps))
}
