//! Applications and their services: one set of rules for `[[nat.apps]]` (a gateway's applications, or
//! those of a full NAT on its own) and `[[overlay.apps]]` (an edge's).
//!
//! ```toml
//! id = 7                      # application id, at most 4095 (the VNI), once per section
//! icmp = true                 # ICMP echo to the VIP is served (default); without it, a service is needed
//! services = [{ proto = "tcp", port = 80, target_port = 8080 }]
//! ```
//! A service is `proto` (tcp or udp) and `port` (above 0, once per protocol in an application), and in
//! `[[nat.apps]]` `target_port`, the port on the targets (above 0); an edge does not translate ports, so
//! `[[overlay.apps]]` services have no `target_port`.
use super::problem::{problem, Problem};
use super::text;
use pipelines::wire::ipv4::protocol;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Application ids are VNIs of at most 12 bits, so that tables indexed by them stay small.
pub const MAX_ID: u16 = 4095;

/// The default of an application's `icmp`: ICMP echo to its VIP goes to a target.
pub fn icmp_default() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

text::named!(Proto, "tcp" => Proto::Tcp, "udp" => Proto::Udp);

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => protocol::TCP,
            Proto::Udp => protocol::UDP,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCfg {
    pub proto: Proto,
    pub port: u16,
    /// The port on the targets (`[[nat.apps]]` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
}

/// Whether a section's services say the port on the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetPort {
    /// `[[nat.apps]]`: the NAT translates to it.
    Needed,
    /// `[[overlay.apps]]`: the edge sends to the service's port; the gateway translates.
    Refused,
}

/// A checked service; `target_port` is `port` where the section has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidService {
    /// Its place in the application's `services`, for the paths of later problems.
    pub index: usize,
    pub proto: Proto,
    pub port: u16,
    pub target_port: u16,
}

/// What the sections' applications have in common.
pub struct AppCfg<'a> {
    /// Where the application is configured, e.g. `nat.apps[0]`.
    pub at: String,
    pub id: u16,
    pub icmp: bool,
    pub services: &'a [ServiceCfg],
}

/// Checks application `a` of a section whose earlier applications have `ids`; returns its services, or
/// None when its id is unusable (its other problems are reported all the same).
pub fn validate(
    a: AppCfg,
    target: TargetPort,
    ids: &mut BTreeSet<u16>,
    errs: &mut Vec<Problem>,
) -> Option<Vec<ValidService>> {
    let at = |f: &str| format!("{}.{f}", a.at);
    let id_ok = a.id <= MAX_ID;
    if !id_ok {
        errs.push(problem(at("id"), format!("must be at most {MAX_ID}")));
    } else if !ids.insert(a.id) {
        errs.push(problem(at("id"), format!("application id {} is used twice", a.id)));
    }
    if a.services.is_empty() && !a.icmp {
        errs.push(problem(at("services"), "an application needs a service or icmp = true"));
    }
    let mut services: Vec<ValidService> = Vec::new();
    for (j, s) in a.services.iter().enumerate() {
        let sp = |f: &str| format!("{}.services[{j}].{f}", a.at);
        let port_ok = s.port != 0;
        if !port_ok {
            errs.push(problem(sp("port"), "port 0 cannot be used"));
        }
        let target_port = match (target, s.target_port) {
            (TargetPort::Needed, Some(0)) => Err("port 0 cannot be used"),
            (TargetPort::Needed, Some(t)) => Ok(t),
            (TargetPort::Needed, None) => Err("needed: the service's port on the targets"),
            (TargetPort::Refused, None) => Ok(s.port),
            (TargetPort::Refused, Some(_)) => {
                Err("an edge does not translate ports: the gateway's [[nat.apps]] service names the target port")
            }
        };
        let target_port = match target_port {
            Ok(t) if port_ok => t,
            Ok(_) => continue,
            Err(m) => {
                errs.push(problem(sp("target_port"), m));
                continue;
            }
        };
        if services.iter().any(|x| x.proto == s.proto && x.port == s.port) {
            errs.push(problem(
                sp("port"),
                format!("{} port {} is listed twice", s.proto, s.port),
            ));
            continue;
        }
        services.push(ValidService {
            index: j,
            proto: s.proto,
            port: s.port,
            target_port,
        });
    }
    id_ok.then_some(services)
}
