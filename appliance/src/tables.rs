//! The configuration workers read, published whole: the presence stage (addresses, ARP extras, routes),
//! the NAT applications and the overlay role's tables. A reload (SIGHUP or `POST /reload`) re-reads the
//! configuration file, validates it like at start, refuses changes that need a restart (ports, lcores,
//! node ids, the role, the NAT pool and timeouts), builds new tables and publishes them with a new
//! generation number; each worker picks them up between bursts (ARCHITECTURE.md "Reload").
use crate::config::overlay::{RoleSpec, ValidOverlay};
use crate::config::{problem, Problem, Validated};
use crate::eal_args::EalArgs;
use pipelines::nat::NatApps;
use pipelines::overlay::classify::Classifier;
use pipelines::presence::{PortAddrs, Presence};
use pipelines::route::{Route, RouteTable};
use serde_json::json;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone)]
pub struct NatTables {
    pub apps: Arc<NatApps>,
    /// VIP -> application, for clients that reach NAT VIPs directly (not through the overlay).
    pub classifier: Classifier,
}

#[derive(Clone)]
pub struct Tables {
    pub presence: Arc<Presence>,
    pub nat: Option<NatTables>,
    pub overlay: Option<ValidOverlay>,
    /// Path id -> name (edge and gateway), for metrics.
    pub path_names: Vec<(u8, String)>,
    /// The configuration these tables came from (its applications are served at /state; a reload is
    /// compared with it).
    pub config: Arc<Validated>,
}

impl Tables {
    /// Builds the tables of a validated configuration; `macs` are the ports' MAC addresses.
    pub fn build(v: &Validated, macs: &[pipelines::MacAddr]) -> Tables {
        let mut routes: Vec<Route> = Vec::new();
        for (i, p) in v.ports.iter().enumerate() {
            for a in &p.addrs {
                routes.push(Route {
                    net: *a,
                    port: i as u16,
                    via: None,
                });
            }
        }
        for r in &v.routes {
            routes.push(Route {
                net: r.net,
                port: r.port as u16,
                via: Some(r.via),
            });
        }
        let presence = Presence::new(
            v.ports
                .iter()
                .zip(macs)
                .enumerate()
                .map(|(i, (p, mac))| PortAddrs {
                    mac: *mac,
                    addrs: p.addrs.clone(),
                    arp_extra: arp_extra(v, i),
                })
                .collect(),
            RouteTable::new(routes),
            v.dataplane.forwarding,
        );
        let presence = match &v.overlay {
            Some(_) => presence.with_overlay(pipelines::wire::geneve::PORT),
            None => presence,
        };
        let presence = match &v.nat {
            Some(n) => presence.with_pool(n.cfg.pool.addrs().to_vec()),
            None => presence,
        };
        Tables {
            presence: Arc::new(presence),
            nat: v.nat.as_ref().map(|n| NatTables {
                apps: Arc::new(n.apps.clone()),
                classifier: n.classifier.clone(),
            }),
            overlay: v.overlay.clone(),
            path_names: v.overlay.as_ref().map(|o| o.path_names()).unwrap_or_default(),
            config: Arc::new(v.clone()),
        }
    }

    /// Applications and path sets, for /state.
    pub fn describe(&self) -> serde_json::Value {
        let overlay = self.overlay.as_ref().map(|o| {
            let sets: Vec<_> = match &o.role {
                RoleSpec::Edge(s, _) | RoleSpec::Gateway(s) => s
                    .dests
                    .iter()
                    .zip(&s.sets)
                    .map(|(d, set)| {
                        json!({"dest": d, "paths": set.paths().iter().map(|p| json!({
                            "id": p.id, "name": p.name, "region": p.region, "relay": p.relay.to_string(),
                            "via": p.next_hop.to_string(), "up": p.up})).collect::<Vec<_>>()})
                    })
                    .collect(),
                RoleSpec::Relay(_) => Vec::new(),
            };
            json!({"node": o.node, "role": o.role_name(), "address": o.address.to_string(), "path_sets": sets,
                   "applications": o.configured})
        });
        json!({"overlay": overlay, "nat_applications": self.config.nat.as_ref().map(|n| &n.configured)})
    }
}

/// Addresses port `i` answers ARP for besides its own: NAT VIPs and pool addresses, an edge's VIPs.
fn arp_extra(v: &Validated, i: usize) -> Vec<Ipv4Addr> {
    let mut a = v.nat.as_ref().map(|n| n.arp_extra[i].clone()).unwrap_or_default();
    if let Some(ValidOverlay {
        role: RoleSpec::Edge(_, e),
        ..
    }) = &v.overlay
    {
        a.extend(&e.arp_extra[i]);
    }
    a
}

/// Re-reads the configuration file for a reload.
pub struct Reloader {
    pub path: PathBuf,
    pub eal: EalArgs,
}

impl Reloader {
    /// Loads and validates the configuration and builds its tables (`macs`: the ports' MAC addresses),
    /// with a summary to log; refused where it changes what `running` cannot change without a restart.
    pub fn reload(&self, running: &Tables, macs: &[pipelines::MacAddr]) -> Result<(Tables, String), Vec<Problem>> {
        let v = crate::config::load(&self.path)
            .and_then(|c| c.validate(&self.eal))
            .map_err(|p| p.0)?;
        let errs = needs_restart(&running.config, &v);
        if !errs.is_empty() {
            return Err(errs);
        }
        let t = Tables::build(&v, macs);
        let summary = format!(
            "reloaded {}: {} NAT application(s), {} edge application(s), {} path(s)",
            self.path.display(),
            v.nat.as_ref().map_or(0, |n| n.configured.len()),
            v.overlay.as_ref().map_or(0, |o| o.configured.len()),
            t.path_names.len()
        );
        Ok((t, summary))
    }
}

/// The parts of the configuration a reload may not change, each named.
fn needs_restart(old: &Validated, new: &Validated) -> Vec<Problem> {
    let mut errs = Vec::new();
    let mut same = |path: &str, changed: bool| {
        if changed {
            errs.push(problem(path, "changing this needs a restart"));
        }
    };
    same("dataplane", old.dataplane != new.dataplane);
    same("management", old.management != new.management);
    same("neighbour", old.neighbour != new.neighbour);
    same("ports", old.ports != new.ports);
    match (&old.overlay, &new.overlay) {
        (Some(a), Some(b)) => {
            same("overlay.node", a.node != b.node);
            same("overlay.role", a.role_name() != b.role_name());
            same("overlay.address", a.address != b.address);
            if let (Some(x), Some(y)) = (a.sender(), b.sender()) {
                same("overlay.dedupe", x.dedupe != y.dedupe);
                same("overlay.hop_limit", x.hop_limit != y.hop_limit);
                same("overlay.udp_base", x.udp_base != y.udp_base);
            }
        }
        (None, None) => {}
        _ => same("overlay", true),
    }
    match (&old.nat, &new.nat) {
        (Some(a), Some(b)) => {
            same("nat.pool", a.cfg.pool.addrs() != b.cfg.pool.addrs());
            same("nat.port_min", a.ports.0 != b.ports.0);
            same("nat.port_max", a.ports.1 != b.ports.1);
            same("nat.max_sessions", a.cfg.max_sessions != b.cfg.max_sessions);
            same("nat.timeouts", a.cfg.timeouts != b.cfg.timeouts);
            same("nat.handoff_ring", old.handoff_ring != new.handoff_ring);
        }
        (None, None) => {}
        _ => same("nat", true),
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::needs_restart;
    use crate::config::{from_toml, Validated};
    use crate::eal_args::EalArgs;

    const GATEWAY: &str = include_str!("../../conf/overlay/gateway.toml");

    fn validated(text: &str) -> Validated {
        let eal = EalArgs::parse(&["-l", "0-3"]).unwrap();
        from_toml(text).unwrap().validate(&eal).unwrap()
    }

    #[test]
    fn a_reload_may_change_applications_but_not_the_node_or_the_pool() {
        let old = validated(GATEWAY);
        let changed = |from: &str, to: &str| {
            assert!(GATEWAY.contains(from), "{from}");
            let p = needs_restart(&old, &validated(&GATEWAY.replacen(from, to, 1)));
            p.into_iter().map(|p| p.path).collect::<Vec<_>>()
        };
        assert!(changed("targets = [\"10.20.0.10\"]", "targets = [\"10.20.0.11\"]").is_empty());
        assert!(changed("port = 80, target_port = 8080", "port = 81, target_port = 8080").is_empty());
        assert_eq!(changed("node = 4", "node = 5"), ["overlay.node"]);
        assert_eq!(
            changed("pool = [\"10.20.0.100\"]", "pool = [\"10.20.0.101\"]"),
            ["nat.pool"]
        );
        assert_eq!(changed("max_sessions = 65536", "port_min = 2048"), ["nat.port_min"]);
        assert_eq!(changed("max_sessions = 65536", "port_max = 60000"), ["nat.port_max"]);
        assert_eq!(
            changed("max_sessions = 65536", "max_sessions = 1024"),
            ["nat.max_sessions"]
        );
        assert_eq!(
            changed("max_sessions = 65536", "handoff_ring = 64"),
            ["nat.handoff_ring"]
        );
        assert_eq!(changed("idle = \"adaptive\"", "idle = \"busy\""), ["dataplane"]);
        assert_eq!(changed("retrans_ms = 200", "retrans_ms = 300"), ["neighbour"]);
        assert_eq!(changed("name = \"targets\"", "name = \"servers\""), ["ports"]);
        assert_eq!(changed("[management]", "[management]\ndebug = true"), ["management"]);
    }

    #[test]
    fn a_changed_port_range_names_the_bound_that_changed() {
        // Three workers slice 1024..=65535 with a remainder: the last slice's end moves with port_min.
        let three = GATEWAY.replacen("workers = [0]", "workers = [0, 1, 2]", 1);
        let old = validated(&three);
        let paths = |to: &str| {
            let new = validated(&three.replacen("max_sessions = 65536", to, 1));
            needs_restart(&old, &new)
                .into_iter()
                .map(|p| p.path)
                .collect::<Vec<_>>()
        };
        assert_eq!(paths("port_min = 2048"), ["nat.port_min"]);
        assert_eq!(paths("port_max = 65000"), ["nat.port_max"]);
    }
}
