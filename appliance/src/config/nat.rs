//! The `[nat]` section: full NAT in front of target servers (DNAT VIP:port -> target:port, SNAT client ->
//! pool address:port from per-worker slices). Without the overlay this is a full-NAT load balancer on
//! its own (clients reach the VIPs directly); at the gateway role the same tables sit behind duplicate
//! removal and decapsulation, and the application comes from the Geneve VNI (`id`).
//!
//! ```toml
//! [nat]
//! pool = ["10.92.0.100"]      # SNAT addresses, each inside some port's subnet (answered by ARP there)
//! port_min = 1024             # pool ports (and ICMP ids), sliced evenly among the workers
//! port_max = 65535
//! max_sessions = 65536        # per worker
//! handoff_ring = 1024         # packets each worker's hand-off ring to every other worker holds
//! [nat.timeouts]              # seconds; defaults are the RFC minima (5382, 4787, 5508)
//! tcp_established = 7440
//! tcp_transitory = 240
//! udp = 300
//! icmp = 60
//! [[nat.apps]]
//! id = 1                      # application id (the VNI at a gateway)
//! vip = "10.91.0.100"         # answered by ARP on the port whose subnet holds it (optional at a gateway)
//! icmp = true                 # ICMP echo to the VIP goes to a target (default)
//! targets = ["10.92.0.1"]     # other machines: no port, pool or VIP address of this appliance
//! services = [{ proto = "tcp", port = 80, target_port = 8080 }]
//! ```
//! Applications and services follow the rules of every section's applications (see `apps`).
use super::apps::{self, AppCfg, ServiceCfg, TargetPort};
use super::ports::{host, is_port_address, Answered, ValidPort};
use super::problem::{problem, Problem};
use super::text;
use pipelines::nat::{NatApp, NatApps, NatConfig, NatRule, NatTarget, Pool, Timeouts};
use pipelines::overlay::classify::{Classifier, Service};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatCfg {
    #[serde(deserialize_with = "text::list")]
    pub pool: Vec<Ipv4Addr>,
    #[serde(default = "d_port_min")]
    pub port_min: u16,
    #[serde(default = "d_port_max")]
    pub port_max: u16,
    #[serde(default = "d_max_sessions")]
    pub max_sessions: u32,
    #[serde(default)]
    pub timeouts: TimeoutsCfg,
    /// Packets each worker's hand-off ring to every other worker holds.
    #[serde(default = "d_handoff")]
    pub handoff_ring: u32,
    pub apps: Vec<NatAppCfg>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsCfg {
    #[serde(default = "d_tcp_est")]
    pub tcp_established: u32,
    #[serde(default = "d_tcp_tr")]
    pub tcp_transitory: u32,
    #[serde(default = "d_udp")]
    pub udp: u32,
    #[serde(default = "d_icmp")]
    pub icmp: u32,
}

impl Default for TimeoutsCfg {
    fn default() -> Self {
        TimeoutsCfg {
            tcp_established: d_tcp_est(),
            tcp_transitory: d_tcp_tr(),
            udp: d_udp(),
            icmp: d_icmp(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatAppCfg {
    pub id: u16,
    /// Where clients reach the application directly; a gateway's applications come from the overlay
    /// (the VNI), so there it is optional.
    #[serde(default, deserialize_with = "text::option")]
    pub vip: Option<Ipv4Addr>,
    #[serde(default = "apps::icmp_default")]
    pub icmp: bool,
    #[serde(deserialize_with = "text::list")]
    pub targets: Vec<Ipv4Addr>,
    pub services: Vec<ServiceCfg>,
}

fn d_port_min() -> u16 {
    1024
}
fn d_port_max() -> u16 {
    65535
}
fn d_max_sessions() -> u32 {
    65536
}
fn d_handoff() -> u32 {
    1024
}
fn d_tcp_est() -> u32 {
    Timeouts::default().tcp_established
}
fn d_tcp_tr() -> u32 {
    Timeouts::default().tcp_transitory
}
fn d_udp() -> u32 {
    Timeouts::default().udp
}
fn d_icmp() -> u32 {
    Timeouts::default().icmp
}

/// This machine's memory in bytes (`MemTotal` in /proc/meminfo), if it can be read.
fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    kb.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

/// The workers' NAT session tables together may take at most this share of the machine's memory (the
/// rest is for packet buffers and the system).
const TABLE_SHARE: (u64, u64) = (3, 4);

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Whether NAT session tables of `per_worker` bytes fit in `memory` bytes; if not, why.
fn tables_fit(per_worker: &[u64], memory: u64) -> Result<(), String> {
    let total: u64 = per_worker.iter().sum();
    if total <= memory / TABLE_SHARE.1 * TABLE_SHARE.0 {
        return Ok(());
    }
    Err(format!(
        "the NAT session tables would take {} ({} per worker, {} workers), more than {}/{} of this machine's {}; \
         lower it, or use a smaller pool (a worker's table holds one 32-byte slot per pool pair of its slice, \
         at most {} per session, for each of TCP, UDP and ICMP)",
        gib(total),
        gib(per_worker.iter().copied().max().unwrap_or(0)),
        per_worker.len(),
        TABLE_SHARE.0,
        TABLE_SHARE.1,
        gib(memory),
        pipelines::nat::table::PAIRS_PER_SESSION,
    ))
}

/// The `[nat]` section, checked and turned into the dataplane's tables.
#[derive(Debug, Clone)]
pub struct ValidNat {
    pub cfg: NatConfig,
    pub apps: NatApps,
    pub classifier: Classifier,
    /// Addresses each port answers ARP for besides its own (VIPs and pool addresses), by port index.
    pub arp_extra: Vec<Vec<Ipv4Addr>>,
    /// The pool's ports (and ICMP ids) as configured, `port_min..=port_max` (a reload compares them).
    pub ports: (u16, u16),
    /// The applications as configured, for /state.
    pub configured: Vec<NatAppCfg>,
}

/// Checks `[nat]` against the ports and the worker count; problems go to `errs`. At a `gateway` the
/// applications need no VIP.
pub fn validate(
    n: &NatCfg,
    ports: &[ValidPort],
    workers: usize,
    gateway: bool,
    errs: &mut Vec<Problem>,
) -> Option<ValidNat> {
    let before = errs.len();
    let mut answered = Answered::new(ports.len());
    let cfg = pool_and_limits(n, ports, workers, &mut answered, errs);
    let (apps, classifier) = applications(n, ports, gateway, &mut answered, errs);
    if errs.len() > before {
        return None;
    }
    Some(ValidNat {
        cfg: cfg?,
        apps,
        classifier,
        arp_extra: answered.by_port,
        ports: (n.port_min, n.port_max),
        configured: n.apps.clone(),
    })
}

/// `ip` at `path`, an address the appliance answers for: [`Answered::add`], and used once in `[nat]`.
fn claim(
    answered: &mut Answered,
    ports: &[ValidPort],
    path: &str,
    ip: Ipv4Addr,
    errs: &mut Vec<Problem>,
) -> Option<Ipv4Addr> {
    match answered.add(ports, path, ip, errs)? {
        true => Some(ip),
        false => {
            errs.push(problem(path, format!("{ip} is used twice in [nat]")));
            None
        }
    }
}

/// The pool, the session table size and the timeouts.
fn pool_and_limits(
    n: &NatCfg,
    ports: &[ValidPort],
    workers: usize,
    answered: &mut Answered,
    errs: &mut Vec<Problem>,
) -> Option<NatConfig> {
    if n.pool.is_empty() {
        errs.push(problem("nat.pool", "at least one pool address is needed"));
    }
    let pool_addrs: Vec<Ipv4Addr> = (n.pool.iter().enumerate())
        .filter_map(|(i, ip)| claim(answered, ports, &format!("nat.pool[{i}]"), *ip, errs))
        .collect();
    if n.port_min == 0 {
        errs.push(problem("nat.port_min", "port 0 cannot be used"));
    }
    let pool = match Pool::new(pool_addrs.clone(), n.port_min.max(1), n.port_max, workers as u16) {
        Ok(p) => Some(p),
        Err(e) => {
            if !pool_addrs.is_empty() {
                errs.push(problem("nat.port_max", e.to_string()));
            }
            None
        }
    };
    if !(1..=16 << 20).contains(&n.max_sessions) {
        errs.push(problem("nat.max_sessions", "must be from 1 to 16777216 per worker"));
    } else if let (Some(p), Some(memory)) = (&pool, machine_memory()) {
        let per_worker: Vec<u64> = (0..workers as u16)
            .map(|w| p.table_bytes(n.max_sessions as usize, w))
            .collect();
        if let Err(m) = tables_fit(&per_worker, memory) {
            errs.push(problem("nat.max_sessions", m));
        }
    }
    if !(1..=65536).contains(&n.handoff_ring) {
        errs.push(problem("nat.handoff_ring", "must be from 1 to 65536"));
    }
    let t = &n.timeouts;
    for (name, v) in [
        ("tcp_established", t.tcp_established),
        ("tcp_transitory", t.tcp_transitory),
        ("udp", t.udp),
        ("icmp", t.icmp),
    ] {
        if v == 0 || v > 7 * 86400 {
            errs.push(problem(format!("nat.timeouts.{name}"), "must be from 1 s to 7 days"));
        }
    }
    Some(NatConfig {
        max_sessions: n.max_sessions as usize,
        timeouts: Timeouts {
            tcp_established: t.tcp_established,
            tcp_transitory: t.tcp_transitory,
            udp: t.udp,
            icmp: t.icmp,
        },
        pool: pool?,
    })
}

/// The applications: their tables, and the classifier of clients that reach their VIPs directly.
fn applications(
    n: &NatCfg,
    ports: &[ValidPort],
    gateway: bool,
    answered: &mut Answered,
    errs: &mut Vec<Problem>,
) -> (NatApps, Classifier) {
    if n.apps.is_empty() {
        errs.push(problem("nat.apps", "at least one application is needed"));
    }
    let mut ids = BTreeSet::new();
    let mut apps = NatApps::default();
    let mut services = Vec::new();
    let mut icmp = Vec::new();
    // Targets, checked against the pool and every VIP once all are known.
    let mut target_at = Vec::new();
    for (i, a) in n.apps.iter().enumerate() {
        let at = format!("nat.apps[{i}]");
        let common = AppCfg {
            at: at.clone(),
            id: a.id,
            icmp: a.icmp,
            services: &a.services,
        };
        let checked = apps::validate(common, TargetPort::Needed, &mut ids, errs);
        let vip = match a.vip {
            Some(v) => claim(answered, ports, &format!("{at}.vip"), v, errs),
            None => {
                if !gateway {
                    errs.push(problem(format!("{at}.vip"), "needed unless overlay.role is gateway"));
                }
                None
            }
        };
        if a.targets.is_empty() {
            errs.push(problem(format!("{at}.targets"), "at least one target is needed"));
        }
        let mut targets = Vec::new();
        for (j, ip) in a.targets.iter().enumerate() {
            let path = format!("{at}.targets[{j}]");
            if let Some(ip) = host(&path, *ip, errs) {
                target_at.push((path, ip));
                targets.push(NatTarget { addr: ip, up: true });
            }
        }
        let Some(checked) = checked else { continue };
        if let Some(v) = vip {
            services.extend(checked.iter().map(|s| Service {
                vip: v,
                proto: s.proto.number(),
                port: s.port,
                app: a.id,
            }));
            if a.icmp {
                icmp.push((v, a.id));
            }
        }
        let rules = checked
            .iter()
            .map(|s| NatRule {
                proto: s.proto.number(),
                port: s.port,
                target_port: s.target_port,
            })
            .collect();
        let idx = a.id as usize;
        if apps.apps.len() <= idx {
            apps.apps.resize(idx + 1, None);
        }
        apps.apps[idx] = Some(NatApp {
            rules,
            targets,
            icmp: a.icmp,
        });
    }
    targets_are_other_machines(&target_at, ports, answered, errs);
    (apps, Classifier::new(&services, &icmp))
}

/// A target that is one of the appliance's own addresses would loop (and a pool address or VIP as
/// target would make the gateway answer ARP for the target's own address on its segment).
fn targets_are_other_machines(
    targets: &[(String, Ipv4Addr)],
    ports: &[ValidPort],
    answered: &Answered,
    errs: &mut Vec<Problem>,
) {
    for (path, ip) in targets {
        let what = if is_port_address(ports, *ip) {
            "a port address"
        } else if answered.contains(*ip) {
            "a pool address or VIP"
        } else {
            continue;
        };
        errs.push(problem(
            path.as_str(),
            format!("{ip} is {what} of this appliance; a target must be another machine"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_must_leave_a_quarter_of_memory() {
        let g = 1u64 << 30;
        assert!(tables_fit(&[6 * g, 6 * g, 6 * g], 24 * g).is_ok());
        let e = tables_fit(&[6 * g, 6 * g, 6 * g + 1], 24 * g).unwrap_err();
        assert!(
            e.starts_with("the NAT session tables would take 18.0 GiB (6.0 GiB per worker, 3 workers)"),
            "{e}"
        );
        assert!(e.contains("of this machine's 24.0 GiB"), "{e}");
        assert!(machine_memory().is_some_and(|m| m > 1 << 20), "/proc/meminfo is read");
    }
}
