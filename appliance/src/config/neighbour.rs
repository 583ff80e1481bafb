//! `[neighbour]`: ARP resolution and static neighbours.
//!
//! ```toml
//! [neighbour]
//! reachable_secs = 300        # how long a resolved neighbour is trusted before it is probed again
//! retrans_ms = 1000           # interval between ARP requests while resolving or probing
//! max_probes = 3
//! max_entries = 4096
//! hold_packets = 64           # packets each worker may hold while their next hop is resolved (at most 4096)
//! hold_ms = 3000              # how long a held packet waits before it is dropped
//! [[neighbour.static]]
//! port = 0                    # a configured port id
//! ip = "10.0.0.1"             # inside a subnet of that port
//! mac = "02:00:00:00:00:05"   # unicast
//! ```
use super::ports::{unicast, ValidPort};
use super::problem::{problem, Problem};
use super::text;
use pipelines::MacAddr;
use serde::Deserialize;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbour {
    /// How long a resolved neighbour is trusted before it is probed again.
    #[serde(default = "d_reachable")]
    pub reachable_secs: u32,
    /// Interval between ARP requests while resolving or probing.
    #[serde(default = "d_retrans")]
    pub retrans_ms: u32,
    #[serde(default = "d_probes")]
    pub max_probes: u8,
    #[serde(default = "d_max_entries")]
    pub max_entries: u32,
    /// Packets each worker may hold while their next hop is resolved.
    #[serde(default = "d_hold")]
    pub hold_packets: u32,
    /// How long a held packet waits before it is dropped.
    #[serde(default = "d_hold_ms")]
    pub hold_ms: u32,
    #[serde(default, rename = "static")]
    pub statics: Vec<StaticNeighbour>,
}

impl Default for Neighbour {
    fn default() -> Self {
        Neighbour {
            reachable_secs: d_reachable(),
            retrans_ms: d_retrans(),
            max_probes: d_probes(),
            max_entries: d_max_entries(),
            hold_packets: d_hold(),
            hold_ms: d_hold_ms(),
            statics: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticNeighbour {
    pub port: u16,
    #[serde(deserialize_with = "text::one")]
    pub ip: Ipv4Addr,
    #[serde(deserialize_with = "text::one")]
    pub mac: MacAddr,
}

/// A static neighbour: the index of its port, its address and MAC address.
pub type ValidStatic = (usize, Ipv4Addr, MacAddr);

fn d_reachable() -> u32 {
    300
}
fn d_retrans() -> u32 {
    1000
}
fn d_probes() -> u8 {
    3
}
fn d_max_entries() -> u32 {
    4096
}
fn d_hold() -> u32 {
    64
}
fn d_hold_ms() -> u32 {
    3000
}

/// Checks `[neighbour]` against the ports; returns the static neighbours.
pub fn validate(n: &Neighbour, ports: &[ValidPort], errs: &mut Vec<Problem>) -> Vec<ValidStatic> {
    for (name, v) in [
        ("retrans_ms", n.retrans_ms),
        ("max_probes", n.max_probes as u32),
        ("reachable_secs", n.reachable_secs),
        ("max_entries", n.max_entries),
    ] {
        if v == 0 {
            errs.push(problem(format!("neighbour.{name}"), "must be above 0"));
        }
    }
    if n.hold_packets > 4096 {
        errs.push(problem("neighbour.hold_packets", "at most 4096"));
    }
    let mut statics = Vec::new();
    for (i, s) in n.statics.iter().enumerate() {
        let at = |f: &str| format!("neighbour.static[{i}].{f}");
        let Some(pidx) = ports.iter().position(|p| p.id == s.port) else {
            errs.push(problem(
                at("port"),
                format!("port {} is not configured in [[ports]]", s.port),
            ));
            continue;
        };
        if !ports[pidx].addrs.iter().any(|net| net.contains(&s.ip)) {
            errs.push(problem(
                at("ip"),
                format!("address {} is outside every subnet of port {}", s.ip, s.port),
            ));
        }
        if let Some(mac) = unicast(&at("mac"), s.mac, errs) {
            statics.push((pidx, s.ip, mac));
        }
    }
    statics
}
