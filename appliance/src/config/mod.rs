//! Configuration: TOML through the `config` crate with environment overrides (prefix `APPLIANCE__`,
//! sections separated by `__`, e.g. `APPLIANCE__MANAGEMENT__LISTEN=0.0.0.0:9100`), deserialized with
//! `deny_unknown_fields` into typed values (roles, protocols and idle modes are enums; addresses and
//! prefixes are IP types), so an unknown key or value is refused with its path; then `validate()`, one
//! function per section, reports every other problem at once with its path, before the EAL starts or any
//! port is touched, and returns the [`Validated`] form the runtime reads.
//!
//! ```toml
//! [dataplane]                 # workers, queues, buffers (see `dataplane`)
//! workers = [1]
//! [management]
//! listen = "127.0.0.1:9100"   # the HTTP endpoint (/metrics, /healthz, /state), loopback by default
//! debug = false               # /debug/ fault-injection endpoints (tests only)
//! [neighbour]                 # ARP and static neighbours (see `neighbour`)
//! [[ports]]                   # at least one (see `ports`)
//! [[routes]]                  # static routes (see `routes`)
//! [nat]                       # full NAT (see `nat`): a gateway needs it, an edge or relay has none
//! [overlay]                   # this node's overlay role (see `overlay`)
//! ```
pub mod apps;
pub mod dataplane;
pub mod nat;
pub mod neighbour;
pub mod overlay;
pub mod ports;
pub mod problem;
pub mod routes;
mod text;

use crate::eal_args::EalArgs;
use dataplane::Dataplane;
use nat::{NatCfg, ValidNat};
use neighbour::{Neighbour, ValidStatic};
use overlay::{OverlayCfg, Role, ValidOverlay};
use ports::{PortCfg, ValidPort};
pub use problem::{problem, Problem, Problems};
use routes::{RouteCfg, ValidRoute};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

pub const ENV_PREFIX: &str = "APPLIANCE";

#[derive(Debug, Clone, Deserialize)]
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
    /// Full NAT in front of target servers (see `nat`).
    #[serde(default)]
    pub nat: Option<NatCfg>,
    /// This node's overlay role (see `overlay`).
    #[serde(default)]
    pub overlay: Option<OverlayCfg>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// Address of the HTTP endpoint (/metrics, /healthz, /state). Loopback by default.
    #[serde(default = "d_listen", deserialize_with = "text::one")]
    pub listen: SocketAddr,
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

fn d_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9100))
}

/// Reads `path` (TOML) with environment overrides. Syntax errors, unknown keys and values, and wrong
/// types are reported with the path of the offending field.
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

/// A configuration that passed validation, in the form the runtime reads.
#[derive(Debug, Clone)]
pub struct Validated {
    pub dataplane: Dataplane,
    /// Packet buffers in the pool: `dataplane.mbufs`, or what the queues need.
    pub mbufs: u32,
    /// Packets each worker's hand-off ring to every other worker holds (0: nothing is handed off).
    pub handoff_ring: u32,
    pub management: Management,
    pub neighbour: Neighbour,
    /// `neighbour.static`, by port index.
    pub statics: Vec<ValidStatic>,
    pub ports: Vec<ValidPort>,
    pub routes: Vec<ValidRoute>,
    pub nat: Option<ValidNat>,
    pub overlay: Option<ValidOverlay>,
}

impl Config {
    /// Packets each worker's hand-off ring to every other worker holds: `nat.handoff_ring`, else 1024
    /// at an edge (dedupe streams owned by another worker), else 0 (nothing is handed off).
    fn handoff_ring(&self) -> u32 {
        match (&self.nat, &self.overlay) {
            (Some(n), _) => n.handoff_ring,
            (None, Some(o)) if o.role != Role::Relay => 1024,
            _ => 0,
        }
    }

    /// Checks everything that can be checked without the EAL, against the EAL arguments given.
    pub fn validate(self, eal: &EalArgs) -> Result<Validated, Problems> {
        let mut errs = Vec::new();
        let handoff_ring = self.handoff_ring();
        let need = dataplane::mbufs_needed(
            &self.dataplane,
            self.ports.len(),
            self.neighbour.hold_packets,
            handoff_ring,
        );
        let mbufs = dataplane::validate(&self.dataplane, eal, need, &mut errs);
        let ports = ports::validate(&self.ports, eal, &mut errs);
        let statics = neighbour::validate(&self.neighbour, &ports, &mut errs);
        let role = self.overlay.as_ref().map(|o| o.role);
        let workers = self.dataplane.workers.len().max(1);
        let nat =
            (self.nat.as_ref()).and_then(|n| nat::validate(n, &ports, workers, role == Some(Role::Gateway), &mut errs));
        let overlay = (self.overlay.as_ref()).and_then(|o| overlay::validate(o, &ports, &mut errs));
        match (role, self.nat.is_some()) {
            (Some(Role::Gateway), false) => errs.push(problem("nat", "the gateway role needs a [nat] section")),
            (Some(r @ (Role::Edge | Role::Relay)), true) => errs.push(problem(
                "nat",
                format!("the {r} role does not translate: remove [nat] or make this node a gateway"),
            )),
            _ => {}
        }
        let routes = routes::validate(&self.routes, &ports, &mut errs);
        if !errs.is_empty() {
            return Err(Problems(errs));
        }
        Ok(Validated {
            dataplane: self.dataplane,
            mbufs,
            handoff_ring,
            management: self.management,
            neighbour: self.neighbour,
            statics,
            ports,
            routes,
            nat,
            overlay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::dataplane::{mbufs_needed, IdleMode};
    use super::*;
    use std::net::Ipv4Addr;

    /// The buffers the queues of `v` need.
    fn needed(v: &Validated) -> u64 {
        mbufs_needed(&v.dataplane, v.ports.len(), v.neighbour.hold_packets, v.handoff_ring)
    }

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
        assert_eq!(v.dataplane.idle, IdleMode::Adaptive);
        assert_eq!(v.management.listen, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(v.routes[0].port, 0);
        assert_eq!(v.ports[0].addrs[0].prefix_len(), 24);
        assert_eq!(v.mbufs, 8191);
    }

    #[test]
    fn default_pool_grows_with_workers_and_ports() {
        let text = GOOD
            .replace("mbufs = 8191\n", "")
            .replace("workers = [1]", "workers = [0, 1]")
            + "\n[[ports]]\nid = 1\naddresses = [\"10.1.0.2/24\"]\n";
        let v = from_toml(&text).unwrap().validate(&eal(&["-l", "0-1"])).unwrap();
        assert!(v.mbufs as u64 >= needed(&v));
        assert_eq!(v.mbufs, 16383);
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
    fn a_bad_value_is_refused_with_its_path_and_text() {
        let nat = GOOD.to_string() + NAT;
        let static_mac = GOOD.replace(
            "[[ports]]",
            "[[neighbour.static]]\nport = 0\nip = \"10.0.0.1\"\nmac = \"02:00\"\n\n[[ports]]",
        );
        for (text, path, msg) in [
            (
                GOOD.replace("via = \"10.0.0.1\"", "via = \"10.0.0.x\""),
                "routes[0].via",
                "'10.0.0.x' is not an IPv4 address",
            ),
            (
                GOOD.replace("0.0.0.0/0", "0.0.0.0/33"),
                "routes[0].prefix",
                "'0.0.0.0/33' is not an IPv4 address with prefix length (a.b.c.d/n)",
            ),
            (
                GOOD.replace("[\"10.0.0.2/24\"]", "[\"10.0.0.2/24\", \"banana\"]"),
                "ports[0].addresses[1]",
                "'banana' is not an IPv4 address with prefix length (a.b.c.d/n)",
            ),
            (
                format!("{GOOD}[management]\nlisten = \"localhost\"\n"),
                "management.listen",
                "'localhost' is not an address:port",
            ),
            (
                static_mac,
                "neighbour.static[0].mac",
                "'02:00' is not a MAC address (six two-digit hex bytes, 02:00:00:00:00:01)",
            ),
            (
                nat.replace("targets = [\"10.0.0.9\"]", "targets = [\"10.0.0.9\", \"banana\"]"),
                "nat.apps[0].targets[1]",
                "'banana' is not an IPv4 address",
            ),
            (
                nat.replace("proto = \"udp\"", "proto = \"sctp\""),
                "nat.apps[0].services[1].proto",
                "'sctp' is not one of tcp, udp",
            ),
            (
                GOOD.replace("workers = [1]", "workers = [1]\nidle = \"sleepy\""),
                "dataplane.idle",
                "'sleepy' is not one of busy, adaptive",
            ),
        ] {
            assert_eq!(problems(&text, &[]), vec![problem(path, msg)]);
        }
    }

    /// The example edge: two ports, two paths toward gateway 4, application 7.
    const EDGE: &str = include_str!("../../../conf/overlay/edge.toml");

    #[test]
    fn services_follow_one_set_of_rules_in_nat_and_overlay() {
        assert!(problems(EDGE, &[]).is_empty());
        let edge = |services: &str| {
            let text = EDGE.replace("{ proto = \"udp\", port = 5201 }", services);
            problems(&text, &[])
        };
        assert_eq!(
            edge("{ proto = \"udp\", port = 0 }"),
            vec![problem("overlay.apps[0].services[1].port", "port 0 cannot be used")]
        );
        assert_eq!(
            edge("{ proto = \"tcp\", port = 80 }"),
            vec![problem(
                "overlay.apps[0].services[1].port",
                "tcp port 80 is listed twice"
            )]
        );
        let p = edge("{ proto = \"udp\", port = 5201, target_port = 5202 }");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "overlay.apps[0].services[1].target_port");
        let nat = |services: &str| {
            let text = GOOD.to_string() + &NAT.replace("{ proto = \"udp\", port = 53, target_port = 5353 }", services);
            problems(&text, &[])
        };
        for (service, field) in [
            ("{ proto = \"udp\", port = 0, target_port = 53 }", "port"),
            ("{ proto = \"udp\", port = 53, target_port = 0 }", "target_port"),
        ] {
            assert_eq!(
                nat(service),
                vec![problem(
                    format!("nat.apps[0].services[1].{field}"),
                    "port 0 cannot be used"
                )]
            );
        }
        assert_eq!(
            nat("{ proto = \"tcp\", port = 80, target_port = 81 }"),
            vec![problem("nat.apps[0].services[1].port", "tcp port 80 is listed twice")]
        );
        let p = nat("{ proto = \"udp\", port = 53 }");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "nat.apps[0].services[1].target_port");
        // Application ids, in both sections.
        let p = problems(
            &(EDGE.to_string() + "[[overlay.apps]]\nid = 7\nvip = \"10.10.0.101\"\ngateway = 4\n"),
            &[],
        );
        assert!(
            p.iter()
                .any(|p| p.path == "overlay.apps[1].id" && p.msg == "application id 7 is used twice"),
            "{p:?}"
        );
        let p = problems(&(GOOD.to_string() + &NAT.replace("id = 1", "id = 4096")), &[]);
        assert_eq!(p, vec![problem("nat.apps[0].id", "must be at most 4095")]);
        // Edge applications may share a VIP, not a service at it; the path names the service as written
        // (its index counts the services the shared rules refused before it).
        let p = problems(
            &(EDGE.to_string()
                + "[[overlay.apps]]\nid = 8\nvip = \"10.10.0.100\"\ngateway = 4\nicmp = false\n\
                   services = [{ proto = \"udp\", port = 0 }, { proto = \"tcp\", port = 5201 }]\n"),
            &[],
        );
        assert_eq!(
            p,
            vec![
                problem("overlay.apps[1].services[0].port", "port 0 cannot be used"),
                problem(
                    "overlay.apps[1].services[1].port",
                    "10.10.0.100 tcp 5201 is served twice"
                ),
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
[dataplane]
workers = [1, 3, 1]
mbufs = 100
rx_desc = 100

[neighbour]
static = [{ port = 0, ip = "192.168.1.1", mac = "02:00:00:00:00:01" }, { port = 5, ip = "10.0.0.9", mac = "ff:ff:ff:ff:ff:ff" }]

[[ports]]
id = 0
addresses = ["10.0.0.2/24", "10.0.0.0/24"]
mac = "01:00:5e:00:00:01"

[[ports]]
id = 0
addresses = ["10.0.0.7/25", "10.9.0.0/24"]
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
        let n = v.nat.as_ref().unwrap();
        assert_eq!(
            n.arp_extra[0],
            vec![Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 50)]
        );
        assert_eq!(n.cfg.pool.slice(1), 33280..=65535);
        assert_eq!(n.cfg.timeouts.tcp_established, 7440);
        let app = n.apps.get(1).unwrap();
        assert_eq!((app.rules.len(), app.icmp), (2, true));
        assert!(needed(&v) > 2 * 1024, "hand-off rings hold buffers too");
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
targets = ["224.0.0.1"]
services = [{ proto = "tcp", port = 0, target_port = 80 }]
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
            "nat.apps[0].services[0].port",
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
