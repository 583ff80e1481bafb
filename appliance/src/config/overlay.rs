//! The `[overlay]` section: this node's place in the overlay and its role.
//!
//! ```toml
//! [overlay]
//! node = 1                    # this node's id (option field "destination node" of packets for it)
//! role = "edge"               # edge, relay or gateway
//! address = "10.1.0.1"        # overlay address: one of the ports' addresses (UDP 6081 to it is overlay)
//! peers = ["10.2.0.1", "10.3.0.1"]   # who may send overlay packets to this node
//! hop_limit = 8               # edge, gateway: hop count of the packets this node sends
//! udp_base = 40000            # edge, gateway: outer UDP source port = udp_base + stream
//! [overlay.dedupe]            # edge, gateway: duplicate removal
//! window = 1024               # history window (a power of two, 64 to 65536)
//! reset_ms = 2000             # a stream silent this long starts afresh
//! max_streams = 16384         # per worker
//! [overlay.probe]             # edge, gateway: path probes
//! interval_ms = 100           # between probes on each path, at most 60000 (0: no probes)
//! timeout_ms = 1000           # a probe unanswered this long is lost, 1 to 60000
//! loss_gain = 0.1             # weight of each probe in the loss average, above 0 and at most 1
//! [overlay.select]            # edge, gateway: path sets chosen from probe measurements (needs probes)
//! k = 2                       # paths per set, 2 to 8
//! hysteresis = 0.2            # a healthy set gives way only to one better by this fraction (0 to below 1)
//! min_gain_us = 1000          # ...and by this much summed RTT and jitter, at most 60000000
//! max_loss = 0.1              # a path whose loss average passes this leaves the set (above 0, below 1)
//! silent_ms = 1000            # so does a path without a probe reply for this long
//! [[overlay.paths]]           # edge, gateway: the paths this node sends copies over
//! id = 1                      # global path id
//! dest = 4                    # destination node
//! relay = "10.2.0.1"          # the relay's overlay address
//! region = "eu"               # the relay's region: a destination's paths must be in different regions
//! via = "10.1.0.254"          # underlay next hop toward the relay; inside a port's subnet
//! name = "eu"                 # optional, for metrics
//! [[overlay.apps]]            # edge: the applications this edge serves
//! id = 7                      # application id (the VNI; the gateway's [nat.apps] id)
//! vip = "10.10.0.100"         # answered by ARP on the port whose subnet holds it
//! gateway = 4                 # the gateway node
//! icmp = true                 # ICMP echo to the VIP goes through the overlay (default)
//! services = [{ proto = "tcp", port = 80 }]   # no target_port: the gateway translates (see `apps`)
//! [[overlay.hops]]            # relay: where packets of (destination node, path) go next
//! node = 4
//! path = 1
//! next = "10.4.0.1"           # the next overlay node (outer destination)
//! via = "10.2.0.254"          # underlay next hop toward it (default: next); inside a port's subnet
//! ```
//!
//! A gateway also needs `[nat]` (its applications, targets and pool); an edge has no `[nat]`.
use super::apps::{self, AppCfg, ServiceCfg, TargetPort};
use super::ports::{host, is_port_address, port_of, Answered, ValidPort};
use super::problem::{problem, Problem};
use super::text;
use pipelines::overlay::classify::{Classifier, Service};
use pipelines::overlay::dedupe::DedupeConfig;
use pipelines::overlay::encap::AppRoute;
use pipelines::overlay::relay::{Hop, Relay};
use pipelines::overlay::replicate::{Path, PathSet};
use pipelines::overlay::PeerSet;
use pipelines::paths::SelectConfig;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Role {
    Edge,
    Relay,
    Gateway,
}

text::named!(Role, "edge" => Role::Edge, "relay" => Role::Relay, "gateway" => Role::Gateway);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayCfg {
    pub node: u16,
    pub role: Role,
    #[serde(deserialize_with = "text::one")]
    pub address: Ipv4Addr,
    #[serde(default, deserialize_with = "text::list")]
    pub peers: Vec<Ipv4Addr>,
    #[serde(default = "d_hop_limit")]
    pub hop_limit: u8,
    #[serde(default = "d_udp_base")]
    pub udp_base: u16,
    #[serde(default)]
    pub dedupe: DedupeCfg,
    #[serde(default)]
    pub probe: ProbeCfg,
    /// Path-set selection from probe measurements; without it, each destination's set is all its paths.
    #[serde(default)]
    pub select: Option<SelectCfg>,
    #[serde(default)]
    pub hops: Vec<HopCfg>,
    #[serde(default)]
    pub paths: Vec<PathCfg>,
    #[serde(default)]
    pub apps: Vec<EdgeAppCfg>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeCfg {
    #[serde(default = "d_window")]
    pub window: u32,
    #[serde(default = "d_reset_ms")]
    pub reset_ms: u32,
    #[serde(default = "d_max_streams")]
    pub max_streams: u32,
}

impl Default for DedupeCfg {
    fn default() -> Self {
        DedupeCfg {
            window: d_window(),
            reset_ms: d_reset_ms(),
            max_streams: d_max_streams(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeCfg {
    /// Interval between probes on each path (0: no probes).
    #[serde(default = "d_probe_ms")]
    pub interval_ms: u32,
    /// A probe unanswered this long is lost.
    #[serde(default = "d_probe_timeout_ms")]
    pub timeout_ms: u32,
    /// Weight of each probe in the loss average (0.1: about the last ten probes).
    #[serde(default = "d_loss_gain")]
    pub loss_gain: f64,
}

impl Default for ProbeCfg {
    fn default() -> Self {
        ProbeCfg {
            interval_ms: d_probe_ms(),
            timeout_ms: d_probe_timeout_ms(),
            loss_gain: d_loss_gain(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectCfg {
    /// Paths per set.
    #[serde(default = "d_k")]
    pub k: u32,
    /// A healthy set is replaced only by one scoring better by this fraction.
    #[serde(default = "d_hysteresis")]
    pub hysteresis: f64,
    /// ...and by at least this much, in microseconds of summed RTT and jitter.
    #[serde(default = "d_min_gain_us")]
    pub min_gain_us: u32,
    /// A path whose loss average passes this is replaced.
    #[serde(default = "d_max_loss")]
    pub max_loss: f64,
    /// A path without a probe reply for this long is replaced.
    #[serde(default = "d_silent_ms")]
    pub silent_ms: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HopCfg {
    pub node: u16,
    pub path: u8,
    #[serde(deserialize_with = "text::one")]
    pub next: Ipv4Addr,
    #[serde(default, deserialize_with = "text::option")]
    pub via: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathCfg {
    pub id: u8,
    pub dest: u16,
    #[serde(deserialize_with = "text::one")]
    pub relay: Ipv4Addr,
    pub region: String,
    #[serde(deserialize_with = "text::one")]
    pub via: Ipv4Addr,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeAppCfg {
    pub id: u16,
    #[serde(deserialize_with = "text::one")]
    pub vip: Ipv4Addr,
    pub gateway: u16,
    #[serde(default = "apps::icmp_default")]
    pub icmp: bool,
    #[serde(default)]
    pub services: Vec<ServiceCfg>,
}

fn d_hop_limit() -> u8 {
    8
}
fn d_udp_base() -> u16 {
    40000
}
fn d_window() -> u32 {
    1024
}
fn d_reset_ms() -> u32 {
    2000
}
fn d_max_streams() -> u32 {
    16384
}
fn d_probe_ms() -> u32 {
    100
}
fn d_probe_timeout_ms() -> u32 {
    1000
}
fn d_loss_gain() -> f64 {
    0.1
}
fn d_k() -> u32 {
    2
}
fn d_hysteresis() -> f64 {
    0.2
}
fn d_min_gain_us() -> u32 {
    1000
}
fn d_max_loss() -> f64 {
    0.1
}
fn d_silent_ms() -> u32 {
    1000
}

/// How this node probes its paths.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    /// 0: no probes.
    pub interval_ns: u64,
    pub timeout_ns: u64,
    pub loss_gain: f64,
}

/// Paths, grouped by destination: `dests[i]` is a node id, `candidates[i]` every configured path toward
/// it, `sets[i]` the path set in use (all candidates, or the selection's choice).
#[derive(Debug, Clone)]
pub struct Sender {
    pub hop_limit: u8,
    pub udp_base: u16,
    pub dests: Vec<u16>,
    pub candidates: Vec<Vec<Path>>,
    pub sets: Vec<PathSet>,
    pub probe: ProbeSettings,
    pub select: Option<pipelines::paths::SelectConfig>,
    /// Link MTU of the ports the paths leave from (the smallest), for the overlay MTU.
    pub link_mtu: u16,
    pub dedupe: DedupeConfig,
    pub peers: PeerSet,
}

/// What the edge role adds.
#[derive(Debug, Clone)]
pub struct EdgeSpec {
    pub classifier: Classifier,
    /// Route per application id (gaps route nowhere).
    pub routes: Vec<AppRoute>,
    /// VIPs each port answers ARP for, by port index.
    pub arp_extra: Vec<Vec<Ipv4Addr>>,
}

#[derive(Debug, Clone)]
pub enum RoleSpec {
    Relay(Relay),
    Edge(Sender, Box<EdgeSpec>),
    Gateway(Sender),
}

/// What the workers need for the overlay role.
#[derive(Debug, Clone)]
pub struct ValidOverlay {
    pub node: u16,
    pub address: Ipv4Addr,
    pub role: RoleSpec,
    /// The edge's applications as configured, for /state.
    pub configured: Vec<EdgeAppCfg>,
}

impl ValidOverlay {
    pub fn role_name(&self) -> &'static str {
        match self.role {
            RoleSpec::Relay(_) => "relay",
            RoleSpec::Edge(..) => "edge",
            RoleSpec::Gateway(_) => "gateway",
        }
    }

    /// Path id -> name, for metrics (edge and gateway: every configured path).
    pub fn path_names(&self) -> Vec<(u8, String)> {
        match &self.role {
            RoleSpec::Edge(s, _) | RoleSpec::Gateway(s) => s
                .candidates
                .iter()
                .flat_map(|c| c.iter().map(|p| (p.id, p.name.clone())))
                .collect(),
            RoleSpec::Relay(_) => Vec::new(),
        }
    }

    /// The sending side of an edge or gateway.
    pub fn sender(&self) -> Option<&Sender> {
        match &self.role {
            RoleSpec::Edge(s, _) | RoleSpec::Gateway(s) => Some(s),
            RoleSpec::Relay(_) => None,
        }
    }

    pub fn sender_mut(&mut self) -> Option<&mut Sender> {
        match &mut self.role {
            RoleSpec::Edge(s, _) | RoleSpec::Gateway(s) => Some(s),
            RoleSpec::Relay(_) => None,
        }
    }
}

/// `ip` at `path`, for a field that names another machine: a host address, not one of this node's ports.
fn other(path: &str, ip: Ipv4Addr, ports: &[ValidPort], errs: &mut Vec<Problem>) -> Option<Ipv4Addr> {
    host(path, ip, errs)?;
    if is_port_address(ports, ip) {
        errs.push(problem(
            path,
            format!("{ip} is an address of this node; it must name another machine"),
        ));
        return None;
    }
    Some(ip)
}

/// Checks `[overlay]` against the ports; problems go to `errs`.
pub fn validate(o: &OverlayCfg, ports: &[ValidPort], errs: &mut Vec<Problem>) -> Option<ValidOverlay> {
    let before = errs.len();
    if o.node == 0 {
        errs.push(problem("overlay.node", "node ids start at 1"));
    }
    let address = host("overlay.address", o.address, errs);
    if let Some(a) = address {
        if !is_port_address(ports, a) {
            errs.push(problem("overlay.address", format!("{a} is not an address of any port")));
        }
    }
    let peers = peers(o, ports, errs);
    for (field, used) in [
        ("overlay.hops", !o.hops.is_empty() && o.role != Role::Relay),
        ("overlay.paths", !o.paths.is_empty() && o.role == Role::Relay),
        ("overlay.apps", !o.apps.is_empty() && o.role != Role::Edge),
    ] {
        if used {
            errs.push(problem(field, format!("not used by the {} role", o.role)));
        }
    }
    let role = match o.role {
        Role::Relay => {
            relay_hops(o, ports, errs).and_then(|hops| Some(RoleSpec::Relay(Relay::new(address?, peers, hops))))
        }
        Role::Edge => {
            // The destinations in the order `sender` indexes them (sorted node ids).
            let dests: Vec<u16> = (o.paths.iter().map(|p| p.dest))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let s = sender(o, ports, peers, errs);
            let e = edge(o, ports, &dests, errs);
            match (s, e) {
                (Some(s), Some(e)) => Some(RoleSpec::Edge(s, Box::new(e))),
                _ => None,
            }
        }
        Role::Gateway => sender(o, ports, peers, errs).map(RoleSpec::Gateway),
    };
    if errs.len() > before {
        return None;
    }
    Some(ValidOverlay {
        node: o.node,
        address: address?,
        role: role?,
        configured: o.apps.clone(),
    })
}

/// Who may send overlay packets to this node: other machines, each once.
fn peers(o: &OverlayCfg, ports: &[ValidPort], errs: &mut Vec<Problem>) -> PeerSet {
    if o.peers.is_empty() {
        errs.push(problem("overlay.peers", "an overlay node needs at least one peer"));
    }
    let mut peers = PeerSet::default();
    let mut listed = BTreeSet::new();
    for (i, p) in o.peers.iter().enumerate() {
        let at = format!("overlay.peers[{i}]");
        if let Some(a) = other(&at, *p, ports, errs) {
            if !listed.insert(a) {
                errs.push(problem(at, format!("{a} is listed twice")));
            }
            peers.insert(a);
        }
    }
    peers
}

fn relay_hops(o: &OverlayCfg, ports: &[ValidPort], errs: &mut Vec<Problem>) -> Option<HashMap<(u16, u8), Hop>> {
    let before = errs.len();
    let mut hops = HashMap::new();
    for (i, h) in o.hops.iter().enumerate() {
        let at = |f: &str| format!("overlay.hops[{i}].{f}");
        let Some(next) = other(&at("next"), h.next, ports, errs) else {
            continue;
        };
        let via = match h.via {
            Some(v) => match other(&at("via"), v, ports, errs) {
                Some(v) => v,
                None => continue,
            },
            None => next,
        };
        let Some(port) = port_of(ports, via) else {
            errs.push(problem(
                at(if h.via.is_some() { "via" } else { "next" }),
                format!("underlay next hop {via} is outside every port subnet"),
            ));
            continue;
        };
        let hop = Hop {
            addr: next,
            port: port as u16,
            next_hop: via,
        };
        if hops.insert((h.node, h.path), hop).is_some() {
            errs.push(problem(
                at("path"),
                format!("node {} path {} is listed twice", h.node, h.path),
            ));
        }
    }
    if o.hops.is_empty() {
        errs.push(problem("overlay.hops", "a relay needs at least one hop"));
    }
    (errs.len() == before).then_some(hops)
}

/// The sending side of an edge or gateway: paths grouped into path sets by destination.
fn sender(o: &OverlayCfg, ports: &[ValidPort], peers: PeerSet, errs: &mut Vec<Problem>) -> Option<Sender> {
    let before = errs.len();
    let dedupe = dedupe(&o.dedupe, errs);
    if o.hop_limit < 2 {
        errs.push(problem("overlay.hop_limit", "must be at least 2 (a relay takes one)"));
    }
    let (by_dest, link_mtu) = paths(o, ports, errs);
    let probe = probe(&o.probe, errs);
    let select = o.select.as_ref().map(|c| select(c, &o.probe, errs));
    let mut dests = Vec::new();
    let mut candidates = Vec::new();
    let mut sets = Vec::new();
    for (dest, paths) in by_dest {
        match PathSet::new(first_set(&paths, select.as_ref())) {
            Ok(s) => {
                dests.push(dest);
                candidates.push(paths);
                sets.push(s);
            }
            Err(e) => errs.push(problem("overlay.paths", format!("toward node {dest}: {e}"))),
        }
    }
    (errs.len() == before).then_some(Sender {
        hop_limit: o.hop_limit,
        udp_base: o.udp_base,
        dests,
        candidates,
        sets,
        probe,
        select,
        link_mtu,
        dedupe,
        peers,
    })
}

fn dedupe(d: &DedupeCfg, errs: &mut Vec<Problem>) -> DedupeConfig {
    if !(64..=65536).contains(&d.window) || !d.window.is_power_of_two() {
        errs.push(problem(
            "overlay.dedupe.window",
            "must be a power of two from 64 to 65536",
        ));
    }
    if d.reset_ms == 0 {
        errs.push(problem("overlay.dedupe.reset_ms", "must be above 0"));
    }
    if !(1..=1 << 20).contains(&d.max_streams) {
        errs.push(problem("overlay.dedupe.max_streams", "must be from 1 to 1048576"));
    }
    DedupeConfig {
        window: d.window,
        reset_ns: d.reset_ms as u64 * 1_000_000,
        max_streams: d.max_streams as usize,
    }
}

/// The configured paths by destination node (in node order), and the smallest link MTU of the ports they
/// leave from.
fn paths(o: &OverlayCfg, ports: &[ValidPort], errs: &mut Vec<Problem>) -> (BTreeMap<u16, Vec<Path>>, u16) {
    let mut by_dest: BTreeMap<u16, Vec<Path>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    let mut link_mtu = u16::MAX;
    for (i, p) in o.paths.iter().enumerate() {
        let at = |f: &str| format!("overlay.paths[{i}].{f}");
        if !ids.insert(p.id) {
            errs.push(problem(at("id"), format!("path id {} is used twice", p.id)));
        }
        if p.dest == 0 || p.dest == o.node {
            errs.push(problem(at("dest"), "must be another node's id"));
        }
        let relay = other(&at("relay"), p.relay, ports, errs);
        let Some(via) = other(&at("via"), p.via, ports, errs) else {
            continue;
        };
        let Some(port) = port_of(ports, via) else {
            errs.push(problem(at("via"), format!("{via} is outside every port subnet")));
            continue;
        };
        link_mtu = link_mtu.min(ports[port].mtu.unwrap_or(1500));
        let Some(relay) = relay else { continue };
        by_dest.entry(p.dest).or_default().push(Path {
            id: p.id,
            name: p.name.clone().unwrap_or_else(|| format!("path{}", p.id)),
            region: p.region.clone(),
            relay,
            port: port as u16,
            next_hop: via,
            up: true,
        });
    }
    if o.paths.is_empty() {
        errs.push(problem("overlay.paths", format!("the {} role needs paths", o.role)));
    }
    (by_dest, link_mtu)
}

fn probe(p: &ProbeCfg, errs: &mut Vec<Problem>) -> ProbeSettings {
    if p.interval_ms > 60_000 {
        errs.push(problem(
            "overlay.probe.interval_ms",
            "must be at most 60000 (0: no probes)",
        ));
    }
    if p.timeout_ms == 0 || p.timeout_ms > 60_000 {
        errs.push(problem("overlay.probe.timeout_ms", "must be from 1 to 60000"));
    }
    if !(p.loss_gain > 0.0 && p.loss_gain <= 1.0) {
        errs.push(problem("overlay.probe.loss_gain", "must be above 0 and at most 1"));
    }
    ProbeSettings {
        interval_ns: p.interval_ms as u64 * 1_000_000,
        timeout_ns: p.timeout_ms as u64 * 1_000_000,
        loss_gain: p.loss_gain,
    }
}

fn select(c: &SelectCfg, probe: &ProbeCfg, errs: &mut Vec<Problem>) -> SelectConfig {
    if !(2..=8).contains(&c.k) {
        errs.push(problem("overlay.select.k", "must be from 2 to 8"));
    }
    if !(0.0..1.0).contains(&c.hysteresis) {
        errs.push(problem("overlay.select.hysteresis", "must be from 0 to below 1"));
    }
    if c.min_gain_us > 60_000_000 {
        errs.push(problem(
            "overlay.select.min_gain_us",
            "must be at most 60000000 (a minute)",
        ));
    }
    if !(c.max_loss > 0.0 && c.max_loss < 1.0) {
        errs.push(problem("overlay.select.max_loss", "must be above 0 and below 1"));
    }
    if c.silent_ms == 0 {
        errs.push(problem("overlay.select.silent_ms", "must be above 0"));
    }
    if probe.interval_ms == 0 {
        errs.push(problem(
            "overlay.select",
            "selection needs probes (overlay.probe.interval_ms above 0)",
        ));
    }
    SelectConfig {
        k: c.k as usize,
        hysteresis: c.hysteresis,
        min_gain_ns: c.min_gain_us as f64 * 1000.0,
        max_loss: c.max_loss,
        silent_ns: c.silent_ms as u64 * 1_000_000,
        ..Default::default()
    }
}

/// A destination's first path set: all its paths, or with selection the first k through different
/// regions, in configuration order (measurements replace it).
fn first_set(paths: &[Path], select: Option<&SelectConfig>) -> Vec<Path> {
    let Some(c) = select else {
        return paths.to_vec();
    };
    let mut pick: Vec<Path> = Vec::new();
    for p in paths {
        if pick.len() < c.k.max(2) && pick.iter().all(|q| q.region != p.region) {
            pick.push(p.clone());
        }
    }
    pick
}

/// The edge's applications, toward the gateways among `dests` (the sender's destinations).
fn edge(o: &OverlayCfg, ports: &[ValidPort], dests: &[u16], errs: &mut Vec<Problem>) -> Option<EdgeSpec> {
    let before = errs.len();
    let mut vips = Answered::new(ports.len());
    let mut services: Vec<Service> = Vec::new();
    let mut icmp = Vec::new();
    let mut routes = Vec::new();
    let mut ids = BTreeSet::new();
    if o.apps.is_empty() {
        errs.push(problem("overlay.apps", "an edge needs at least one application"));
    }
    for (i, a) in o.apps.iter().enumerate() {
        let at = |f: &str| format!("overlay.apps[{i}].{f}");
        let common = AppCfg {
            at: format!("overlay.apps[{i}]"),
            id: a.id,
            icmp: a.icmp,
            services: &a.services,
        };
        let Some(checked) = apps::validate(common, TargetPort::Refused, &mut ids, errs) else {
            continue;
        };
        let Some(dest) = dests.iter().position(|d| *d == a.gateway) else {
            if !dests.is_empty() {
                errs.push(problem(
                    at("gateway"),
                    format!("no path in overlay.paths leads to node {}", a.gateway),
                ));
            }
            continue;
        };
        if routes.len() <= a.id as usize {
            routes.resize(a.id as usize + 1, AppRoute { vni: 0, dest: u16::MAX });
        }
        routes[a.id as usize] = AppRoute {
            vni: a.id as u32,
            dest: dest as u16,
        };
        // Applications may share a VIP (on different services).
        if vips.add(ports, &at("vip"), a.vip, errs).is_none() {
            continue;
        }
        // The services `apps` passed (each once in its application): none twice at one VIP.
        for s in &checked {
            if (services.iter()).any(|x| x.vip == a.vip && x.proto == s.proto.number() && x.port == s.port) {
                errs.push(problem(
                    format!("overlay.apps[{i}].services[{}].port", s.index),
                    format!("{} {} {} is served twice", a.vip, s.proto, s.port),
                ));
                continue;
            }
            services.push(Service {
                vip: a.vip,
                proto: s.proto.number(),
                port: s.port,
                app: a.id,
            });
        }
        if a.icmp {
            if icmp.iter().any(|(v, _)| *v == a.vip) {
                errs.push(problem(
                    at("icmp"),
                    format!("ICMP echo to {} goes to two applications", a.vip),
                ));
            } else {
                icmp.push((a.vip, a.id));
            }
        }
    }
    (errs.len() == before).then(|| EdgeSpec {
        classifier: Classifier::new(&services, &icmp),
        routes,
        arp_extra: vips.by_port,
    })
}
