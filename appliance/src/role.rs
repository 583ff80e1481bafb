//! A worker's role built from the configuration tables, and taken to new tables on a reload. The stages
//! and their order are `pipelines::overlay::roles`; this module maps the validated configuration onto
//! them.
use crate::config::overlay::{RoleSpec, Sender};
use crate::shared::Shared;
use crate::tables::Tables;
use pipelines::nat::Nat;
use pipelines::overlay::admit::Admit;
use pipelines::overlay::dedupe::Dedupe;
use pipelines::overlay::encap::Encap;
use pipelines::overlay::mtu::MtuGuard;
use pipelines::overlay::probe::Responder;
use pipelines::overlay::replicate::Replicate;
use pipelines::overlay::roles::{Edge, Endpoint, FullNat, Gateway, RelayNode, Role, Router};

/// Builds worker `idx`'s role (of `sh.workers.len()` workers) from the tables.
pub fn build(sh: &Shared, t: &Tables, idx: usize) -> Role {
    let presence = t.presence.clone();
    let workers = sh.workers.len() as u16;
    let nat = || match (&sh.nat, &t.nat) {
        (Some(cfg), Some(n)) => Some((Nat::new(cfg, idx as u16, n.apps.clone()), n.classifier.clone())),
        _ => None,
    };
    let Some(o) = &t.overlay else {
        return match nat() {
            Some((nat, classify)) => Role::Nat(Box::new(FullNat {
                presence,
                classify,
                nat,
            })),
            None => Role::Router(Router { presence }),
        };
    };
    let endpoint = |s: &Sender, routes| Endpoint {
        mtu: MtuGuard::new(s.link_mtu),
        encap: Encap::new(
            o.node,
            o.address,
            s.udp_base,
            s.hop_limit,
            idx as u8,
            s.dests.clone(),
            routes,
        ),
        replicate: Replicate::new(s.sets.clone()),
        admit: Admit::new(o.node, s.peers.clone(), idx as u16, workers),
        probes: Responder::new(o.node, o.address, s.hop_limit, &s.dests, &s.candidates),
        dedupe: Dedupe::new(s.dedupe),
    };
    match &o.role {
        RoleSpec::Relay(r) => Role::Relay(Box::new(RelayNode {
            presence,
            relay: r.clone(),
        })),
        RoleSpec::Edge(s, e) => Role::Edge(Box::new(Edge::new(
            presence,
            e.classifier.clone(),
            endpoint(s, e.routes.clone()),
        ))),
        RoleSpec::Gateway(s) => match nat() {
            Some((nat, classify)) => Role::Gateway(Box::new(Gateway::new(
                presence,
                o.address,
                classify,
                nat,
                endpoint(s, Vec::new()),
            ))),
            None => {
                log::error!("the gateway role without [nat] (refused by validation): running as a router");
                Role::Router(Router { presence })
            }
        },
    }
}

/// Takes a role to new tables (a reload, between bursts). Sessions, dedupe state and sequence counters
/// stay; addresses, routes, applications, targets, VIPs, peers and path sets change.
pub fn reload(role: &mut Role, t: &Tables) {
    role.set_presence(t.presence.clone());
    let spec = t.overlay.as_ref().map(|o| (o.node, o.address, &o.role));
    match (role, spec) {
        (Role::Relay(r), Some((_, _, RoleSpec::Relay(n)))) => r.relay = n.clone(),
        (Role::Edge(r), Some((node, addr, RoleSpec::Edge(s, e)))) => {
            r.set_classifier(e.classifier.clone());
            r.end.encap.set_routes(s.dests.clone(), e.routes.clone());
            reload_endpoint(&mut r.end, node, addr, s);
            r.inner.mtu = r.end.mtu;
        }
        (Role::Gateway(r), Some((node, addr, RoleSpec::Gateway(s)))) => {
            if let Some(n) = &t.nat {
                r.nat.set_apps(n.apps.clone());
                r.classify = n.classifier.clone();
            }
            r.end.encap.set_routes(s.dests.clone(), Vec::new());
            reload_endpoint(&mut r.end, node, addr, s);
        }
        (Role::Nat(r), None) => {
            if let Some(n) = &t.nat {
                r.nat.set_apps(n.apps.clone());
                r.classify = n.classifier.clone();
            }
        }
        _ => {}
    }
}

/// An edge's or gateway's peers, overlay MTU (the smallest of the ports its paths use), probe paths and
/// path sets from new tables.
fn reload_endpoint(end: &mut Endpoint, node: u16, addr: std::net::Ipv4Addr, s: &Sender) {
    end.mtu = MtuGuard::new(s.link_mtu);
    end.admit.peers = s.peers.clone();
    end.probes = Responder::new(node, addr, s.hop_limit, &s.dests, &s.candidates);
    end.set_path_sets(s.sets.clone());
}
