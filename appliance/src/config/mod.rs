//! Configuration: TOML through the `config` crate with environment overrides (prefix `APPLIANCE__`,
//! sections separated by `__`, e.g. `APPLIANCE__MANAGEMENT__LISTEN=0.0.0.0:9100`), deserialized with
//! `deny_unknown_fields`, then one `validate()` that reports every problem at once with its path, before
//! the EAL starts or any port is touched.
use crate::eal_args::EalArgs;
use ipnet::Ipv4Net;
use pipelines::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

pub const ENV_PREFIX: &str = "APPLIANCE";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub dataplane: Dataplane,
    #[serde(default)]
    pub management: Management,
    #[serde(default)]
    pub neighbour: Neighbour,
    pub ports: Vec<PortCfg>,
    #[serde(default)]
    pub routes: Vec<RouteCfg>,
    /// Full NAT in front of target servers (see `nat_config`).
    #[serde(default)]
    pub nat: Option<crate::nat_config::NatCfg>,
    /// This node's overlay role (see `overlay_config`).
    #[serde(default)]
    pub overlay: Option<crate::overlay_config::OverlayCfg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdleMode {
    /// Poll without pause (lowest latency, one core per worker at 100 %).
    Busy,
    /// Back off with short sleeps when bursts come back empty.
    Adaptive,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    /// Lcores that run a worker loop; each gets one rx and one tx queue on every port.
    pub workers: Vec<u32>,
    #[serde(default = "d_idle")]
    pub idle: IdleMode,
    /// Longest sleep of an idle adaptive worker, in microseconds.
    #[serde(default = "d_idle_max_us")]
    pub idle_max_us: u32,
    /// Packet buffers in the pool; by default what the queues need (see `mbufs_needed`), at least 8191.
    #[serde(default)]
    pub mbufs: Option<u32>,
    #[serde(default = "d_mbuf_cache")]
    pub mbuf_cache: u32,
    #[serde(default = "d_desc")]
    pub rx_desc: u16,
    #[serde(default = "d_desc")]
    pub tx_desc: u16,
    /// Route IPv4 packets not addressed to the appliance (an l3fwd-style router); off by default.
    #[serde(default)]
    pub forwarding: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// Address of the HTTP endpoint (/metrics, /healthz, /state). Loopback by default.
    #[serde(default = "d_listen")]
    pub listen: String,
    /// Enables /debug/ fault-injection endpoints (tests only).
    #[serde(default)]
    pub debug: bool,
}

impl Default for Management {
    fn default() -> Self {
        Management {
            listen: d_listen(),
            debug: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticNeighbour {
    pub port: u16,
    pub ip: String,
    pub mac: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortCfg {
    /// DPDK port id (vdevs are numbered in the order of `--vdev`).
    pub id: u16,
    /// A label for metrics and logs; defaults to the device name.
    #[serde(default)]
    pub name: Option<String>,
    /// MAC address to use; defaults to the device's.
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub mtu: Option<u16>,
    /// IPv4 addresses with prefix length, e.g. "10.0.0.2/24".
    pub addresses: Vec<String>,
    #[serde(default)]
    pub promiscuous: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCfg {
    pub prefix: String,
    pub via: String,
}

fn d_idle() -> IdleMode {
    IdleMode::Adaptive
}
fn d_idle_max_us() -> u32 {
    500
}
fn d_mbuf_cache() -> u32 {
    256
}
fn d_desc() -> u16 {
    1024
}
fn d_listen() -> String {
    "127.0.0.1:9100".into()
}
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

/// One problem found in a configuration, with the path of the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub msg: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.msg)
    }
}

/// All problems of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A problem at `path` (shared by the config modules).
pub(crate) fn problem(path: impl Into<String>, msg: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        msg: msg.into(),
    }
}

/// Reads `path` (TOML) with environment overrides. Syntax errors, unknown keys and wrong types are
/// reported with the path of the offending field.
pub fn load(path: &Path) -> Result<Config, Problems> {
    let env = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("dataplane.workers")
        .with_list_parse_key("ports.addresses");
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml).required(true))
        .add_source(env)
        .build()
        .map_err(|e| Problems(vec![problem(path.display().to_string(), e.to_string())]))?;
    from_source(built)
}

/// Parses a TOML string (no environment), for tests.
#[cfg(test)]
pub fn from_toml(text: &str) -> Result<Config, Problems> {
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| Problems(vec![problem("config", e.to_string())]))?;
    from_source(built)
}

/// The configuration in `c`; an error names its field (and a float where an integer belongs is one, see
/// [`conf_load`]).
fn from_source(c: config::Config) -> Result<Config, Problems> {
    conf_load::deserialize(&c).map_err(|e| Problems(vec![problem(e.path, e.msg)]))
}

/// A configuration that passed validation, with parsed values.
#[derive(Debug, Clone)]
pub struct Validated {
    pub raw: Config,
    pub ports: Vec<ValidPort>,
    pub routes: Vec<ValidRoute>,
    pub statics: Vec<(usize, Ipv4Addr, MacAddr)>,
    pub listen: SocketAddr,
    pub nat: Option<crate::nat_config::ValidNat>,
    pub overlay: Option<crate::overlay_config::ValidOverlay>,
}

#[derive(Debug, Clone)]
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

#[derive(Debug, Clone)]
pub struct ValidRoute {
    pub net: Ipv4Net,
    pub via: Ipv4Addr,
    /// Index into `ports` of the port whose subnet holds `via`.
    pub port: usize,
}

impl Config {
    /// Buffers the rings and per-worker buffers can hold at once, plus a margin.
    pub fn mbufs_needed(&self) -> u64 {
        let d = &self.dataplane;
        let nworkers = d.workers.len().max(1) as u64;
        let nports = self.ports.len().max(1) as u64;
        let handoff = nworkers * (nworkers - 1) * self.handoff_ring() as u64;
        nports * nworkers * (d.rx_desc as u64 + d.tx_desc as u64)
            + nworkers * (d.mbuf_cache as u64 + 64 * nports + self.neighbour.hold_packets as u64)
            + handoff
            + 512
    }

    /// Packets each worker's hand-off ring to every other worker holds: `nat.handoff_ring`, else 1024
    /// at an edge (dedupe streams owned by another worker), else 0 (nothing is handed off).
    pub fn handoff_ring(&self) -> u32 {
        match (&self.nat, &self.overlay) {
            (Some(n), _) => n.handoff_ring,
            (None, Some(o)) if o.role != "relay" => 1024,
            _ => 0,
        }
    }

    /// The pool size to create: the configured one, or what is needed rounded up to 2^k - 1 (DPDK's
    /// preferred size), at least 8191.
    pub fn mbufs(&self) -> u32 {
        self.dataplane.mbufs.unwrap_or_else(|| {
            let need = self.mbufs_needed().max(8191) + 1;
            (need.next_power_of_two() - 1).min(u32::MAX as u64) as u32
        })
    }

    /// Checks everything that can be checked without the EAL, against the EAL arguments given.
    pub fn validate(self, eal: &EalArgs) -> Result<Validated, Problems> {
        let mut errs = Vec::new();
        let d = &self.dataplane;

        // Workers.
        if d.workers.is_empty() {
            errs.push(problem("dataplane.workers", "at least one worker lcore is needed"));
        }
        let mut seen = BTreeSet::new();
        let enabled = eal.enabled_lcores();
        for (i, w) in d.workers.iter().enumerate() {
            if !seen.insert(*w) {
                errs.push(problem(
                    format!("dataplane.workers[{i}]"),
                    format!("lcore {w} is listed twice"),
                ));
            }
            if let Some((l, text)) = &enabled {
                if !l.contains(w) {
                    errs.push(problem(
                        format!("dataplane.workers[{i}]"),
                        format!("lcore {w} is not in the EAL core list ({text})"),
                    ));
                }
            }
        }
        if d.workers.len() > 64 {
            errs.push(problem("dataplane.workers", "at most 64 workers"));
        }
        for (name, v) in [("rx_desc", d.rx_desc), ("tx_desc", d.tx_desc)] {
            if !(64..=16384).contains(&v) || !v.is_power_of_two() {
                errs.push(problem(
                    format!("dataplane.{name}"),
                    format!("{v} must be a power of two from 64 to 16384"),
                ));
            }
        }
        if d.mbuf_cache > 512 {
            errs.push(problem(
                "dataplane.mbuf_cache",
                format!("{} is above DPDK's limit of 512", d.mbuf_cache),
            ));
        }
        if !(1..=100_000).contains(&d.idle_max_us) {
            errs.push(problem(
                "dataplane.idle_max_us",
                "must be from 1 to 100000 (a worker must loop at least every 0.1 s)",
            ));
        }
        let need = self.mbufs_needed();
        match d.mbufs {
            Some(m) if (m as u64) < need => errs.push(problem(
                "dataplane.mbufs",
                format!(
                    "{m} buffers is fewer than the {need} the queues need (ports x workers x (rx_desc + tx_desc), plus caches, tx buffers and hold queues)"
                ),
            )),
            Some(m) if m > 16 * 1024 * 1024 => errs.push(problem("dataplane.mbufs", format!("{m} is above 16M"))),
            _ => {}
        }

        // Management.
        let listen = match self.management.listen.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                errs.push(problem(
                    "management.listen",
                    format!("'{}' is not an address:port", self.management.listen),
                ));
                SocketAddr::from(([127, 0, 0, 1], 9100))
            }
        };

        // Ports.
        if self.ports.is_empty() {
            errs.push(problem("ports", "at least one port is needed"));
        }
        let mut ids: BTreeMap<u16, usize> = BTreeMap::new();
        let mut ports = Vec::new();
        let mut all_addrs: Vec<(Ipv4Net, String)> = Vec::new();
        for (i, p) in self.ports.iter().enumerate() {
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
            let mac = p.mac.as_ref().and_then(|m| match m.parse::<MacAddr>() {
                Ok(m) if m.is_unicast() => Some(m),
                Ok(_) => {
                    errs.push(problem(at("mac"), format!("{m} is not a unicast address")));
                    None
                }
                Err(e) => {
                    errs.push(problem(at("mac"), format!("'{m}': {e}")));
                    None
                }
            });
            if let Some(mtu) = p.mtu {
                if !(68..=9600).contains(&mtu) {
                    errs.push(problem(at("mtu"), format!("{mtu} is outside 68..=9600")));
                }
            }
            if p.addresses.is_empty() {
                errs.push(problem(at("addresses"), "a port needs at least one IPv4 address"));
            }
            let mut addrs = Vec::new();
            for (j, a) in p.addresses.iter().enumerate() {
                let path = format!("ports[{i}].addresses[{j}]");
                let net = match a.parse::<Ipv4Net>() {
                    Ok(n) => n,
                    Err(_) => {
                        errs.push(problem(
                            path,
                            format!("'{a}' is not an IPv4 address with prefix length (a.b.c.d/n)"),
                        ));
                        continue;
                    }
                };
                if net.prefix_len() < 31 && (net.addr() == net.network() || net.addr() == net.broadcast()) {
                    errs.push(problem(
                        path,
                        format!("{a} is the network or broadcast address of its subnet"),
                    ));
                    continue;
                }
                if !pipelines::wire::ipv4::valid_source(net.addr()) {
                    errs.push(problem(path, format!("{a} cannot be a host address")));
                    continue;
                }
                if let Some((_, other)) = all_addrs.iter().find(|(o, _)| o.addr() == net.addr()) {
                    errs.push(problem(path, format!("{} is already used at {other}", net.addr())));
                    continue;
                }
                if let Some((_, other)) = all_addrs.iter().find(|(o, op)| {
                    !op.starts_with(&format!("ports[{i}]"))
                        && (o.contains(&net.network()) || net.contains(&o.network()))
                }) {
                    errs.push(problem(
                        path,
                        format!("subnet {} overlaps {other} on another port", net.trunc()),
                    ));
                    continue;
                }
                all_addrs.push((net, format!("ports[{i}].addresses[{j}]")));
                addrs.push(net);
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

        // Neighbours.
        let n = &self.neighbour;
        if n.retrans_ms == 0 {
            errs.push(problem("neighbour.retrans_ms", "must be above 0"));
        }
        if n.max_probes == 0 {
            errs.push(problem("neighbour.max_probes", "must be above 0"));
        }
        if n.reachable_secs == 0 {
            errs.push(problem("neighbour.reachable_secs", "must be above 0"));
        }
        if n.max_entries == 0 {
            errs.push(problem("neighbour.max_entries", "must be above 0"));
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
            let ip = match s.ip.parse::<Ipv4Addr>() {
                Ok(ip) => ip,
                Err(_) => {
                    errs.push(problem(at("ip"), format!("'{}' is not an IPv4 address", s.ip)));
                    continue;
                }
            };
            if !ports[pidx].addrs.iter().any(|net| net.contains(&ip)) {
                errs.push(problem(
                    at("ip"),
                    format!("address {ip} is outside every subnet of port {}", s.port),
                ));
            }
            match s.mac.parse::<MacAddr>() {
                Ok(m) if m.is_unicast() => statics.push((pidx, ip, m)),
                Ok(_) => errs.push(problem(at("mac"), format!("{} is not a unicast address", s.mac))),
                Err(e) => errs.push(problem(at("mac"), format!("'{}': {e}", s.mac))),
            }
        }

        // NAT and the overlay role.
        let role = self.overlay.as_ref().map(|o| o.role.as_str());
        let gateway = role == Some("gateway");
        let nat = self
            .nat
            .as_ref()
            .and_then(|n| crate::nat_config::validate(n, &ports, d.workers.len().max(1), gateway, &mut errs));
        let overlay = self
            .overlay
            .as_ref()
            .and_then(|o| crate::overlay_config::validate(o, &ports, &mut errs));
        match (role, self.nat.is_some()) {
            (Some("gateway"), false) => errs.push(problem("nat", "the gateway role needs a [nat] section")),
            (Some(r @ ("edge" | "relay")), true) => errs.push(problem(
                "nat",
                format!("the {r} role does not translate: remove [nat] or make this node a gateway"),
            )),
            _ => {}
        }

        // Routes.
        if self.routes.len() > 256 {
            errs.push(problem("routes", "at most 256 routes"));
        }
        let mut routes = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let net = match r.prefix.parse::<Ipv4Net>() {
                Ok(n) => n,
                Err(_) => {
                    errs.push(problem(
                        format!("routes[{i}].prefix"),
                        format!("'{}' is not a prefix (a.b.c.d/n)", r.prefix),
                    ));
                    continue;
                }
            };
            let via = match r.via.parse::<Ipv4Addr>() {
                Ok(v) => v,
                Err(_) => {
                    errs.push(problem(
                        format!("routes[{i}].via"),
                        format!("'{}' is not an IPv4 address", r.via),
                    ));
                    continue;
                }
            };
            match port_of(&ports, via) {
                Some(port) => routes.push(ValidRoute { net, via, port }),
                None => errs.push(problem(
                    format!("routes[{i}].via"),
                    format!("next hop {via} is outside every port subnet"),
                )),
            }
        }

        if errs.is_empty() {
            Ok(Validated {
                raw: self,
                ports,
                routes,
                statics,
                listen,
                nat,
                overlay,
            })
        } else {
            Err(Problems(errs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[dataplane]
workers = [1]
mbufs = 8191

[[ports]]
id = 0
addresses = ["10.0.0.2/24"]

[[routes]]
prefix = "0.0.0.0/0"
via = "10.0.0.1"
"#;

    /// EAL arguments; without a core option, as if `-l 0-63` were given (so that tests do not depend
    /// on the CPUs of the machine they run on; `workers_default_to_the_cpus_allowed` tests that case).
    fn eal(args: &[&str]) -> EalArgs {
        let mut e = EalArgs::parse(args).unwrap();
        if e.lcores.is_none() {
            e.lcores = Some((0..64).collect());
            e.lcores_text = Some("-l 0-63".into());
        }
        e
    }

    #[test]
    fn workers_default_to_the_cpus_allowed() {
        let none = EalArgs::parse(&["--no-pci"]).unwrap();
        let (cpus, text) = none.enabled_lcores().expect("Cpus_allowed_list in /proc/self/status");
        assert!(!cpus.is_empty() && text.starts_with("no core option"), "{text}");
        let first = *cpus.iter().next().unwrap();
        let with = |w: u32| {
            from_toml(&GOOD.replace("workers = [1]", &format!("workers = [{w}]")))
                .and_then(|c| c.validate(&none))
                .err()
                .map(|p| p.0)
                .unwrap_or_default()
        };
        assert!(with(first).iter().all(|p| !p.path.starts_with("dataplane.workers")));
        let p = with(4096);
        assert_eq!(p[0].path, "dataplane.workers[0]", "{p:?}");
        assert!(
            p[0].msg
                .starts_with("lcore 4096 is not in the EAL core list (no core option"),
            "{}",
            p[0].msg
        );
    }

    fn problems(text: &str, args: &[&str]) -> Vec<Problem> {
        match from_toml(text).and_then(|c| c.validate(&eal(args))) {
            Ok(_) => vec![],
            Err(p) => p.0,
        }
    }

    #[test]
    fn good_config_validates_with_defaults() {
        let v = from_toml(GOOD)
            .unwrap()
            .validate(&eal(&["-l", "0-1", "--no-pci", "--vdev", "net_null0"]))
            .unwrap();
        assert_eq!(v.raw.dataplane.idle, IdleMode::Adaptive);
        assert_eq!(v.listen, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(v.routes[0].port, 0);
        assert_eq!(v.ports[0].addrs[0].prefix_len(), 24);
        assert_eq!(v.raw.mbufs(), 8191);
    }

    #[test]
    fn default_pool_grows_with_workers_and_ports() {
        let text = GOOD
            .replace("mbufs = 8191\n", "")
            .replace("workers = [1]", "workers = [0, 1]")
            + "\n[[ports]]\nid = 1\naddresses = [\"10.1.0.2/24\"]\n";
        let v = from_toml(&text).unwrap().validate(&eal(&["-l", "0-1"])).unwrap();
        assert!(v.raw.mbufs() as u64 >= v.raw.mbufs_needed());
        assert_eq!(v.raw.mbufs(), 16383);
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let p = problems(&GOOD.replace("id = 0", "id = 0\ncolour = \"red\""), &[]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "ports[0].colour");
        assert!(p[0].msg.contains("unknown field `colour`"), "{}", p[0].msg);
        let p = problems(&GOOD.replace("[dataplane]", "[dataplane]\nturbo = true"), &[]);
        assert_eq!(p[0].path, "dataplane.turbo");
    }

    #[test]
    fn wrong_type_and_bad_enum_are_named() {
        let p = problems(&GOOD.replace("workers = [1]", "workers = [1]\nidle = \"sleepy\""), &[]);
        assert_eq!(p[0].path, "dataplane.idle");
        let p = problems(&GOOD.replace("mbufs = 8191", "mbufs = \"many\""), &[]);
        assert_eq!(p[0].path, "dataplane.mbufs");
        // A float where an integer belongs is refused, not rounded (the config crate rounded it).
        let p = problems(&GOOD.replace("mbufs = 8191", "mbufs = 8191.5"), &[]);
        assert_eq!(
            (p[0].path.as_str(), p[0].msg.as_str()),
            ("dataplane.mbufs", "invalid type: the float 8191.5, expected an integer")
        );
        let p = problems(&GOOD.replace("workers = [1]", "workers = [1.0]"), &[]);
        assert_eq!(p[0].path, "dataplane.workers[0]");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
[dataplane]
workers = [1, 3, 1]
mbufs = 100
rx_desc = 100

[management]
listen = "localhost"

[neighbour]
static = [{ port = 0, ip = "192.168.1.1", mac = "02:00:00:00:00:01" }, { port = 5, ip = "10.0.0.9", mac = "ff:ff:ff:ff:ff:ff" }]

[[ports]]
id = 0
addresses = ["10.0.0.2/24", "10.0.0.0/24"]
mac = "01:00:5e:00:00:01"

[[ports]]
id = 0
addresses = ["10.0.0.7/25", "banana"]
mtu = 20

[[routes]]
prefix = "0.0.0.0/0"
via = "172.16.0.1"
"#;
        let p = problems(text, &["-l", "0-1", "--no-pci", "--vdev", "net_null0"]);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "dataplane.workers[1]",
            "dataplane.workers[2]",
            "dataplane.rx_desc",
            "dataplane.mbufs",
            "management.listen",
            "ports[0].mac",
            "ports[0].addresses[1]",
            "ports[1].id",
            "ports[1].mtu",
            "ports[1].addresses[0]",
            "ports[1].addresses[1]",
            "neighbour.static[0].ip",
            "neighbour.static[1].port",
            "routes[0].via",
        ] {
            assert!(paths.contains(&want), "missing {want} in {paths:#?}");
        }
        let lcore = p.iter().find(|p| p.path == "dataplane.workers[1]").unwrap();
        assert_eq!(lcore.msg, "lcore 3 is not in the EAL core list (-l 0-1)");
        let dup = p
            .iter()
            .find(|p| p.path == "ports[1].id" && p.msg.starts_with("duplicate"))
            .unwrap();
        assert_eq!(dup.msg, "duplicate port id 0 (also ports[0])");
        let outside = p.iter().find(|p| p.path == "routes[0].via").unwrap();
        assert_eq!(outside.msg, "next hop 172.16.0.1 is outside every port subnet");
    }

    #[test]
    fn port_beyond_vdevs_is_refused_only_with_no_pci() {
        let text = GOOD.replace("id = 0", "id = 2");
        let p = problems(&text, &["--no-pci", "--vdev", "net_null0"]);
        assert_eq!(p[0].path, "ports[0].id");
        assert!(p[0].msg.contains("1 port(s)"));
        assert!(problems(&text, &[]).is_empty(), "PCI ports may exist");
    }

    const NAT: &str = r#"
[nat]
pool = ["10.0.0.100"]
max_sessions = 1000

[[nat.apps]]
id = 1
vip = "10.0.0.50"
targets = ["10.0.0.9"]
services = [{ proto = "tcp", port = 80, target_port = 8080 }, { proto = "udp", port = 53, target_port = 5353 }]
"#;

    #[test]
    fn nat_section_builds_tables_and_arp_addresses() {
        let text = GOOD
            .replace("workers = [1]", "workers = [0, 1]")
            .replace("mbufs = 8191\n", "")
            + NAT;
        let v = from_toml(&text).unwrap().validate(&eal(&["-l", "0-1"])).unwrap();
        let n = v.nat.unwrap();
        assert_eq!(
            n.arp_extra[0],
            vec![Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 50)]
        );
        assert_eq!(n.cfg.pool.slice(1), 33280..=65535);
        assert_eq!(n.cfg.timeouts.tcp_established, 7440);
        let app = n.apps.get(1).unwrap();
        assert_eq!((app.rules.len(), app.icmp), (2, true));
        assert!(v.raw.mbufs_needed() > 2 * 1024, "hand-off rings hold buffers too");
    }

    #[test]
    fn nat_problems_are_named() {
        let text = GOOD.to_string()
            + r#"
[nat]
pool = ["10.0.0.2", "172.16.0.1"]
port_min = 2000
port_max = 1999
[nat.timeouts]
udp = 0
[[nat.apps]]
id = 1
vip = "10.0.0.2"
targets = ["banana"]
services = [{ proto = "sctp", port = 80, target_port = 80 }]
[[nat.apps]]
id = 1
vip = "10.0.0.60"
targets = ["10.0.0.9"]
services = []
icmp = false
"#;
        let p = problems(&text, &[]);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "nat.pool[0]",
            "nat.pool[1]",
            "nat.timeouts.udp",
            "nat.apps[0].vip",
            "nat.apps[0].targets[0]",
            "nat.apps[0].services[0].proto",
            "nat.apps[1].id",
            "nat.apps[1].services",
        ] {
            assert!(paths.contains(&want), "missing {want} in {p:#?}");
        }
        let outside = p.iter().find(|p| p.path == "nat.pool[1]").unwrap();
        assert!(outside.msg.contains("inside no port's subnet"), "{}", outside.msg);
        // A target that is the appliance itself: a port address, a pool address, another app's VIP.
        let own = |t: &str| {
            let text = GOOD.to_string()
                + &NAT.replace(
                    "targets = [\"10.0.0.9\"]",
                    &format!("targets = [\"10.0.0.9\", \"{t}\"]"),
                )
                + "[[nat.apps]]\nid = 2\nvip = \"10.0.0.51\"\ntargets = [\"10.0.0.9\"]\nservices = []\n";
            problems(&text, &[])
        };
        for (t, what) in [
            ("10.0.0.2", "a port address"),
            ("10.0.0.100", "a pool address or VIP"),
            ("10.0.0.51", "a pool address or VIP"),
        ] {
            let p = own(t);
            assert_eq!(p.len(), 1, "{p:?}");
            assert_eq!(p[0].path, "nat.apps[0].targets[1]");
            assert_eq!(
                p[0].msg,
                format!("{t} is {what} of this appliance; a target must be another machine")
            );
        }
        assert!(own("10.0.0.10").is_empty());
        // An empty port range with valid addresses.
        let text = GOOD.to_string() + &NAT.replace("max_sessions = 1000", "port_min = 5000\nport_max = 4000");
        let p = problems(&text, &[]);
        assert_eq!(p[0].path, "nat.port_max", "{p:?}");
    }

    #[test]
    fn overlay_section_builds_the_relay_and_names_its_problems() {
        let good = GOOD.to_string()
            + r#"
[overlay]
node = 2
role = "relay"
address = "10.0.0.2"
peers = ["10.1.0.1"]
[[overlay.hops]]
node = 4
path = 1
next = "10.4.0.1"
via = "10.0.0.1"
"#;
        let v = from_toml(&good).unwrap().validate(&eal(&[])).unwrap();
        let o = v.overlay.unwrap();
        assert_eq!((o.node, o.address), (2, Ipv4Addr::new(10, 0, 0, 2)));
        let bad = good
            .replace("address = \"10.0.0.2\"", "address = \"10.0.0.9\"")
            .replace("via = \"10.0.0.1\"", "via = \"172.16.0.1\"");
        let p = problems(&bad, &[]);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        for want in ["overlay.address", "overlay.hops[0].via"] {
            assert!(paths.contains(&want), "missing {want} in {p:#?}");
        }
        // The node's own address as peer (and a peer twice), as a hop's next node or underlay next hop.
        let own = good
            .replace(
                "peers = [\"10.1.0.1\"]",
                "peers = [\"10.1.0.1\", \"10.0.0.2\", \"10.1.0.1\"]",
            )
            .replace("next = \"10.4.0.1\"", "next = \"10.0.0.2\"");
        let p = problems(&own, &[]);
        let named: Vec<(&str, &str)> = p.iter().map(|p| (p.path.as_str(), p.msg.as_str())).collect();
        for want in [
            (
                "overlay.peers[1]",
                "10.0.0.2 is an address of this node; it must name another machine",
            ),
            ("overlay.peers[2]", "10.1.0.1 is listed twice"),
            (
                "overlay.hops[0].next",
                "10.0.0.2 is an address of this node; it must name another machine",
            ),
        ] {
            assert!(named.contains(&want), "missing {want:?} in {p:#?}");
        }
        let p = problems(&good.replace("via = \"10.0.0.1\"", "via = \"10.0.0.2\""), &[]);
        assert_eq!(p[0].path, "overlay.hops[0].via", "{p:?}");
        let p = problems(&good.replace("role = \"relay\"", "role = \"hub\""), &[]);
        assert_eq!(p[0].path, "overlay.role", "{p:?}");
        // An edge without paths or applications, a gateway without [nat].
        let p = problems(&good.replace("role = \"relay\"", "role = \"edge\""), &[]);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        for want in ["overlay.hops", "overlay.paths", "overlay.apps"] {
            assert!(paths.contains(&want), "missing {want} in {p:#?}");
        }
        let p = problems(&good.replace("role = \"relay\"", "role = \"gateway\""), &[]);
        assert!(p.iter().any(|p| p.path == "nat"), "{p:?}");
    }
}
