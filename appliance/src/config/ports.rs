//! `[[ports]]`, and the rules for addresses that must belong to a port: next hops, VIPs, pool addresses.
//!
//! ```toml
//! [[ports]]
//! id = 0                      # DPDK port id (vdevs are numbered in the order of --vdev)
//! name = "uplink"             # optional label for metrics and logs (default: the device name)
//! mac = "02:00:00:00:00:01"   # optional unicast MAC address (default: the device's)
//! mtu = 1500                  # optional, 68 to 9600
//! addresses = ["10.0.0.2/24"] # IPv4 addresses with prefix length; subnets of different ports are disjoint
//! promiscuous = false
//! ```
use super::problem::{problem, Problem};
use super::text;
use crate::eal_args::EalArgs;
use ipnet::Ipv4Net;
use pipelines::MacAddr;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortCfg {
    /// DPDK port id (vdevs are numbered in the order of `--vdev`).
    pub id: u16,
    /// A label for metrics and logs; defaults to the device name.
    #[serde(default)]
    pub name: Option<String>,
    /// MAC address to use; defaults to the device's.
    #[serde(default, deserialize_with = "text::option")]
    pub mac: Option<MacAddr>,
    #[serde(default)]
    pub mtu: Option<u16>,
    /// IPv4 addresses with prefix length, e.g. "10.0.0.2/24".
    #[serde(deserialize_with = "text::list")]
    pub addresses: Vec<Ipv4Net>,
    #[serde(default)]
    pub promiscuous: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPort {
    pub id: u16,
    pub name: Option<String>,
    pub mac: Option<MacAddr>,
    pub mtu: Option<u16>,
    pub addrs: Vec<Ipv4Net>,
    pub promiscuous: bool,
}

/// The port whose subnet holds `ip`.
pub fn port_of(ports: &[ValidPort], ip: Ipv4Addr) -> Option<usize> {
    ports.iter().position(|p| p.addrs.iter().any(|n| n.contains(&ip)))
}

/// Whether `ip` is an address of one of `ports` (the appliance's own).
pub fn is_port_address(ports: &[ValidPort], ip: Ipv4Addr) -> bool {
    ports.iter().any(|p| p.addrs.iter().any(|n| n.addr() == ip))
}

/// `ip` if it can be a host's address (not multicast, broadcast, loopback or "this network").
pub fn host(path: &str, ip: Ipv4Addr, errs: &mut Vec<Problem>) -> Option<Ipv4Addr> {
    if pipelines::wire::ipv4::valid_source(ip) {
        return Some(ip);
    }
    errs.push(problem(path, format!("{ip} cannot be a host address")));
    None
}

/// `mac` if it is a unicast address.
pub fn unicast(path: &str, mac: MacAddr, errs: &mut Vec<Problem>) -> Option<MacAddr> {
    if mac.is_unicast() {
        return Some(mac);
    }
    errs.push(problem(path, format!("{mac} is not a unicast address")));
    None
}

/// Addresses the ports answer ARP for besides their own (VIPs, NAT pool addresses), by port index.
#[derive(Debug, Clone, Default)]
pub struct Answered {
    pub by_port: Vec<Vec<Ipv4Addr>>,
    all: BTreeSet<Ipv4Addr>,
}

impl Answered {
    pub fn new(ports: usize) -> Answered {
        Answered {
            by_port: vec![Vec::new(); ports],
            all: BTreeSet::new(),
        }
    }

    /// Adds `ip`, which must be a host address inside a port's subnet and not a port's own (a problem
    /// at `path` otherwise); false when it was there already.
    pub fn add(&mut self, ports: &[ValidPort], path: &str, ip: Ipv4Addr, errs: &mut Vec<Problem>) -> Option<bool> {
        host(path, ip, errs)?;
        if is_port_address(ports, ip) {
            errs.push(problem(path, format!("{ip} is already a port address")));
            return None;
        }
        let Some(port) = port_of(ports, ip) else {
            errs.push(problem(
                path,
                format!("{ip} is inside no port's subnet, so no port would answer ARP for it"),
            ));
            return None;
        };
        let new = self.all.insert(ip);
        if new {
            self.by_port[port].push(ip);
        }
        Some(new)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.all.contains(&ip)
    }
}

/// Checks `[[ports]]` against the EAL arguments.
pub fn validate(cfg: &[PortCfg], eal: &EalArgs, errs: &mut Vec<Problem>) -> Vec<ValidPort> {
    if cfg.is_empty() {
        errs.push(problem("ports", "at least one port is needed"));
    }
    let mut ids: BTreeMap<u16, usize> = BTreeMap::new();
    let mut ports = Vec::new();
    let mut all_addrs: Vec<(Ipv4Net, String)> = Vec::new();
    for (i, p) in cfg.iter().enumerate() {
        let at = |f: &str| format!("ports[{i}].{f}");
        if let Some(first) = ids.insert(p.id, i) {
            errs.push(problem(
                at("id"),
                format!("duplicate port id {} (also ports[{first}])", p.id),
            ));
        }
        if eal.no_pci && p.id as usize >= eal.vdevs.len() {
            errs.push(problem(
                at("id"),
                format!(
                    "port {} does not exist: with --no-pci the EAL arguments create {} port(s), one per --vdev",
                    p.id,
                    eal.vdevs.len()
                ),
            ));
        }
        let mac = p.mac.and_then(|m| unicast(&at("mac"), m, errs));
        if let Some(mtu) = p.mtu {
            if !(68..=9600).contains(&mtu) {
                errs.push(problem(at("mtu"), format!("{mtu} is outside 68..=9600")));
            }
        }
        if p.addresses.is_empty() {
            errs.push(problem(at("addresses"), "a port needs at least one IPv4 address"));
        }
        let mut addrs = Vec::new();
        for (j, net) in p.addresses.iter().enumerate() {
            let path = format!("ports[{i}].addresses[{j}]");
            if address(i, &path, *net, &all_addrs, errs) {
                all_addrs.push((*net, path));
                addrs.push(*net);
            }
        }
        ports.push(ValidPort {
            id: p.id,
            name: p.name.clone(),
            mac,
            mtu: p.mtu,
            addrs,
            promiscuous: p.promiscuous,
        });
    }
    ports
}

/// Whether `net` (at `path`, of port `i`) can be a port address besides the `others` accepted before.
fn address(i: usize, path: &str, net: Ipv4Net, others: &[(Ipv4Net, String)], errs: &mut Vec<Problem>) -> bool {
    if net.prefix_len() < 31 && (net.addr() == net.network() || net.addr() == net.broadcast()) {
        errs.push(problem(
            path,
            format!("{net} is the network or broadcast address of its subnet"),
        ));
        return false;
    }
    if host(path, net.addr(), errs).is_none() {
        return false;
    }
    if let Some((_, other)) = others.iter().find(|(o, _)| o.addr() == net.addr()) {
        errs.push(problem(path, format!("{} is already used at {other}", net.addr())));
        return false;
    }
    let same_port = format!("ports[{i}].");
    if let Some((_, other)) = others
        .iter()
        .find(|(o, op)| !op.starts_with(&same_port) && (o.contains(&net.network()) || net.contains(&o.network())))
    {
        errs.push(problem(
            path,
            format!("subnet {} overlaps {other} on another port", net.trunc()),
        ));
        return false;
    }
    true
}
