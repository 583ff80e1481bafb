//! `[[routes]]`: static routes through next hops on the ports' subnets.
//!
//! ```toml
//! [[routes]]
//! prefix = "0.0.0.0/0"        # destination prefix (at most 256 routes)
//! via = "10.0.0.1"            # next hop, inside a port's subnet
//! ```
use super::ports::{port_of, ValidPort};
use super::problem::{problem, Problem};
use super::text;
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCfg {
    #[serde(deserialize_with = "text::one")]
    pub prefix: Ipv4Net,
    #[serde(deserialize_with = "text::one")]
    pub via: Ipv4Addr,
}

#[derive(Debug, Clone)]
pub struct ValidRoute {
    pub net: Ipv4Net,
    pub via: Ipv4Addr,
    /// Index into `ports` of the port whose subnet holds `via`.
    pub port: usize,
}

/// Checks `[[routes]]` against the ports.
pub fn validate(cfg: &[RouteCfg], ports: &[ValidPort], errs: &mut Vec<Problem>) -> Vec<ValidRoute> {
    if cfg.len() > 256 {
        errs.push(problem("routes", "at most 256 routes"));
    }
    let mut routes = Vec::new();
    for (i, r) in cfg.iter().enumerate() {
        match port_of(ports, r.via) {
            Some(port) => routes.push(ValidRoute {
                net: r.prefix,
                via: r.via,
                port,
            }),
            None => errs.push(problem(
                format!("routes[{i}].via"),
                format!("next hop {} is outside every port subnet", r.via),
            )),
        }
    }
    routes
}
