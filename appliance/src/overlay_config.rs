//! The `[overlay]` section: this node's place in the overlay. Only the relay role is wired into the worker
//! so far (edge and gateway come with the end-to-end issue); the section is checked in full for it.
//!
//! ```toml
//! [overlay]
//! node = 2                    # this node's id (option field "destination node" of packets for it)
//! role = "relay"
//! address = "10.2.0.1"        # overlay address: one of the ports' addresses (UDP 6081 to it is overlay)
//! peers = ["10.1.0.1", "10.4.0.1"]   # who may send overlay packets to this node
//! [[overlay.hops]]            # relay: where packets of (destination node, path) go next
//! node = 4
//! path = 1
//! next = "10.4.0.1"           # the next overlay node (outer destination)
//! via = "10.2.0.254"          # underlay next hop toward it (default: next); inside a port's subnet
//! ```
use crate::config::{problem, Problem, ValidPort};
use pipelines::overlay::relay::{Hop, Relay};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayCfg {
    pub node: u16,
    pub role: String,
    pub address: String,
    #[serde(default)]
    pub peers: Vec<String>,
    #[serde(default)]
    pub hops: Vec<HopCfg>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HopCfg {
    pub node: u16,
    pub path: u8,
    pub next: String,
    #[serde(default)]
    pub via: Option<String>,
}

/// What the worker needs for the overlay role.
#[derive(Debug, Clone)]
pub struct ValidOverlay {
    pub node: u16,
    pub address: Ipv4Addr,
    pub relay: Relay,
}

fn addr(path: String, text: &str, errs: &mut Vec<Problem>) -> Option<Ipv4Addr> {
    match text.parse::<Ipv4Addr>() {
        Ok(a) if pipelines::wire::ipv4::valid_source(a) => Some(a),
        _ => {
            errs.push(problem(path, format!("'{text}' is not a unicast IPv4 address")));
            None
        }
    }
}

/// Checks `[overlay]` against the ports; problems go to `errs`.
pub fn validate(o: &OverlayCfg, ports: &[ValidPort], errs: &mut Vec<Problem>) -> Option<ValidOverlay> {
    let before = errs.len();
    match o.role.as_str() {
        "relay" => {}
        "edge" | "gateway" => errs.push(problem(
            "overlay.role",
            format!("role '{}' is not wired into the worker yet (only 'relay')", o.role),
        )),
        other => errs.push(problem(
            "overlay.role",
            format!("'{other}' is not one of edge, relay, gateway"),
        )),
    }
    if o.node == 0 {
        errs.push(problem("overlay.node", "node ids start at 1"));
    }
    let address = addr("overlay.address".into(), &o.address, errs);
    if let Some(a) = address {
        if !ports.iter().any(|p| p.addrs.iter().any(|n| n.addr() == a)) {
            errs.push(problem("overlay.address", format!("{a} is not an address of any port")));
        }
    }
    let mut peers = Vec::new();
    for (i, p) in o.peers.iter().enumerate() {
        if let Some(a) = addr(format!("overlay.peers[{i}]"), p, errs) {
            peers.push(a);
        }
    }
    if peers.is_empty() && errs.len() == before {
        errs.push(problem("overlay.peers", "a relay needs at least one peer"));
    }
    let mut hops = HashMap::new();
    for (i, h) in o.hops.iter().enumerate() {
        let at = |f: &str| format!("overlay.hops[{i}].{f}");
        let Some(next) = addr(at("next"), &h.next, errs) else {
            continue;
        };
        let via = match &h.via {
            Some(v) => match addr(at("via"), v, errs) {
                Some(v) => v,
                None => continue,
            },
            None => next,
        };
        let Some(port) = ports.iter().position(|p| p.addrs.iter().any(|n| n.contains(&via))) else {
            errs.push(problem(
                at(if h.via.is_some() { "via" } else { "next" }),
                format!("underlay next hop {via} is outside every port subnet"),
            ));
            continue;
        };
        if hops
            .insert(
                (h.node, h.path),
                Hop {
                    addr: next,
                    port: port as u16,
                    next_hop: via,
                },
            )
            .is_some()
        {
            errs.push(problem(
                at("path"),
                format!("node {} path {} is listed twice", h.node, h.path),
            ));
        }
    }
    if o.hops.is_empty() {
        errs.push(problem("overlay.hops", "a relay needs at least one hop"));
    }
    if errs.len() > before {
        return None;
    }
    let address = address?;
    Some(ValidOverlay {
        node: o.node,
        address,
        relay: Relay::new(address, peers, hops),
    })
}
