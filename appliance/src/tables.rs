//! The configuration workers read, published whole: the presence stage (addresses, ARP extras, routes),
//! the NAT applications and the overlay role's tables. A reload (SIGHUP or `POST /reload`) re-reads the
//! configuration file, validates it like at start, refuses changes that need a restart (ports, lcores,
//! node ids, the role, the NAT pool and timeouts), builds new tables and publishes them with a new
//! generation number; each worker picks them up between bursts (ARCHITECTURE.md "Reload").
use crate::config::{problem, Config, Problem, Validated};
use crate::eal_args::EalArgs;
use crate::overlay_config::{RoleSpec, ValidOverlay};
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
    /// The configuration these tables came from (served at /state).
    pub raw: Config,
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
            v.raw.dataplane.forwarding,
        );
        let presence = match &v.overlay {
            Some(_) => presence.with_overlay(pipelines::wire::geneve::PORT),
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
            raw: v.raw.clone(),
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
                   "applications": self.raw.overlay.as_ref().map(|c| &c.apps)})
        });
        json!({"overlay": overlay, "nat_applications": self.raw.nat.as_ref().map(|n| &n.apps)})
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
        let errs = needs_restart(&running.raw, &v.raw);
        if !errs.is_empty() {
            return Err(errs);
        }
        let t = Tables::build(&v, macs);
        let summary = format!(
            "reloaded {}: {} NAT application(s), {} edge application(s), {} path(s)",
            self.path.display(),
            v.raw.nat.as_ref().map_or(0, |n| n.apps.len()),
            v.raw.overlay.as_ref().map_or(0, |o| o.apps.len()),
            t.path_names.len()
        );
        Ok((t, summary))
    }
}

/// The parts of the configuration a reload may not change, each named.
fn needs_restart(old: &Config, new: &Config) -> Vec<Problem> {
    let mut errs = Vec::new();
    let mut same = |path: &str, a: serde_json::Value, b: serde_json::Value| {
        if a != b {
            errs.push(problem(path, "changing this needs a restart"));
        }
    };
    same("dataplane", val(&old.dataplane), val(&new.dataplane));
    same("management", val(&old.management), val(&new.management));
    same("neighbour", val(&old.neighbour), val(&new.neighbour));
    same("ports", val(&old.ports), val(&new.ports));
    match (&old.overlay, &new.overlay) {
        (Some(a), Some(b)) => {
            same("overlay.node", json!(a.node), json!(b.node));
            same("overlay.role", json!(a.role), json!(b.role));
            same("overlay.address", json!(a.address), json!(b.address));
            same("overlay.dedupe", val(&a.dedupe), val(&b.dedupe));
            same("overlay.hop_limit", json!(a.hop_limit), json!(b.hop_limit));
            same("overlay.udp_base", json!(a.udp_base), json!(b.udp_base));
        }
        (None, None) => {}
        _ => same("overlay", json!(old.overlay.is_some()), json!(new.overlay.is_some())),
    }
    match (&old.nat, &new.nat) {
        (Some(a), Some(b)) => {
            same("nat.pool", json!(a.pool), json!(b.pool));
            same("nat.port_min", json!(a.port_min), json!(b.port_min));
            same("nat.port_max", json!(a.port_max), json!(b.port_max));
            same("nat.max_sessions", json!(a.max_sessions), json!(b.max_sessions));
            same("nat.timeouts", val(&a.timeouts), val(&b.timeouts));
            same("nat.handoff_ring", json!(a.handoff_ring), json!(b.handoff_ring));
        }
        (None, None) => {}
        _ => same("nat", json!(old.nat.is_some()), json!(new.nat.is_some())),
    }
    errs
}

/// A config section as a JSON value, for comparison.
fn val<T: serde::Serialize>(x: &T) -> serde_json::Value {
    serde_json::to_value(x).unwrap_or(serde_json::Value::Null)
}
