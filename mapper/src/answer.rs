//! What the mapper answers (ARCHITECTURE.md "Decisions", Mapper): authoritative for its zone whether or
//! not RD is set (RA clear); the VIP of the best healthy edge for the client's region for A queries of a
//! known hostname; NODATA (NOERROR, empty answer, SOA) for other types of known names; NXDOMAIN for
//! unknown names in the zone; REFUSED for names outside it. The client's address is the EDNS Client
//! Subnet when the query has one (its scope is echoed), else the resolver's source address. DNS messages
//! are parsed and built with hickory-proto.
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// UDP and TCP address to answer on.
    #[serde(default = "d_listen")]
    pub listen: String,
    /// Prometheus metrics (HTTP).
    #[serde(default = "d_metrics")]
    pub metrics: String,
    /// The zone the mapper is authoritative for (e.g. "app.example").
    pub zone: String,
    #[serde(default = "d_ttl")]
    pub ttl: u32,
    #[serde(default = "d_interval")]
    pub health_interval_ms: u64,
    #[serde(default = "d_timeout")]
    pub health_timeout_ms: u64,
    /// Region of clients that match no prefix.
    pub default_region: String,
    #[serde(default)]
    pub regions: Vec<RegionCfg>,
    pub edges: Vec<EdgeCfg>,
    pub apps: Vec<AppCfg>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionCfg {
    pub prefix: String,
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeCfg {
    pub name: String,
    pub region: String,
    /// URL of the edge's health endpoint (`/healthz` of its management endpoint); none: always healthy.
    #[serde(default)]
    pub health: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCfg {
    pub hostname: String,
    pub edges: Vec<AppEdgeCfg>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppEdgeCfg {
    pub edge: String,
    pub vip: Ipv4Addr,
}

fn d_listen() -> String {
    "127.0.0.1:5353".into()
}
fn d_metrics() -> String {
    "127.0.0.1:9200".into()
}
fn d_ttl() -> u32 {
    20
}
fn d_interval() -> u64 {
    1000
}
fn d_timeout() -> u64 {
    500
}

pub struct Edge {
    pub name: String,
    pub region: String,
    pub health: Option<String>,
    pub healthy: AtomicBool,
}

pub struct App {
    pub name: Name,
    /// (edge index, VIP).
    pub edges: Vec<(usize, Ipv4Addr)>,
}

/// The checked configuration: what every query is answered from.
pub struct Zone {
    pub origin: Name,
    pub ttl: u32,
    pub default_region: String,
    /// Longest prefix first.
    pub regions: Vec<(IpNet, String)>,
    pub edges: Vec<Edge>,
    pub apps: Vec<App>,
}

fn fqdn(s: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(s).map_err(|e| format!("'{s}' is not a domain name: {e}"))?;
    n.set_fqdn(true);
    Ok(n.to_lowercase())
}

impl Zone {
    /// Checks a configuration; every problem is named by its field.
    pub fn new(c: &Config) -> Result<Zone, Vec<String>> {
        let mut errs = Vec::new();
        let origin = fqdn(&c.zone).map_err(|e| vec![format!("zone: {e}")])?;
        if c.ttl == 0 || c.ttl > 86400 {
            errs.push("ttl: must be from 1 to 86400 seconds".to_string());
        }
        let mut regions = Vec::new();
        for (i, r) in c.regions.iter().enumerate() {
            match r.prefix.parse::<IpNet>() {
                Ok(n) => regions.push((n.trunc(), r.region.clone())),
                Err(_) => errs.push(format!("regions[{i}].prefix: '{}' is not a prefix", r.prefix)),
            }
        }
        regions.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        let mut edges: Vec<Edge> = Vec::new();
        for (i, e) in c.edges.iter().enumerate() {
            if edges.iter().any(|x| x.name == e.name) {
                errs.push(format!("edges[{i}].name: '{}' is used twice", e.name));
            }
            if let Some(h) = &e.health {
                if !h.starts_with("http://") {
                    errs.push(format!("edges[{i}].health: '{h}' is not an http:// URL"));
                }
            }
            edges.push(Edge {
                name: e.name.clone(),
                region: e.region.clone(),
                health: e.health.clone(),
                healthy: AtomicBool::new(true),
            });
        }
        let mut apps: Vec<App> = Vec::new();
        for (i, a) in c.apps.iter().enumerate() {
            let name = match fqdn(&a.hostname) {
                Ok(n) if origin.zone_of(&n) => n,
                Ok(_) => {
                    errs.push(format!(
                        "apps[{i}].hostname: '{}' is outside the zone {}",
                        a.hostname, origin
                    ));
                    continue;
                }
                Err(e) => {
                    errs.push(format!("apps[{i}].hostname: {e}"));
                    continue;
                }
            };
            if apps.iter().any(|x| x.name == name) {
                errs.push(format!("apps[{i}].hostname: '{}' is listed twice", a.hostname));
            }
            if a.edges.is_empty() {
                errs.push(format!("apps[{i}].edges: at least one edge is needed"));
            }
            let mut list = Vec::new();
            for (j, ae) in a.edges.iter().enumerate() {
                match edges.iter().position(|e| e.name == ae.edge) {
                    Some(k) => list.push((k, ae.vip)),
                    None => errs.push(format!("apps[{i}].edges[{j}].edge: no edge named '{}'", ae.edge)),
                }
            }
            apps.push(App { name, edges: list });
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Zone {
            origin,
            ttl: c.ttl,
            default_region: c.default_region.clone(),
            regions,
            edges,
            apps,
        })
    }

    /// The region of a client address and the prefix length that decided it (0: the default).
    pub fn region_of(&self, a: IpAddr) -> (&str, u8) {
        for (n, r) in &self.regions {
            if n.contains(&a) {
                return (r, n.prefix_len());
            }
        }
        (&self.default_region, 0)
    }

    /// The VIP for a client in `region`: a healthy edge of that region first, else any healthy edge (in
    /// the configured order); when none is healthy, the first of the region (fail open, so that a broken
    /// health check does not take the application off the air).
    pub fn pick(&self, app: &App, region: &str) -> (Ipv4Addr, usize) {
        let healthy = |k: usize| self.edges[k].healthy.load(Relaxed);
        let in_region = |k: usize| self.edges[k].region == region;
        app.edges
            .iter()
            .find(|(k, _)| healthy(*k) && in_region(*k))
            .or_else(|| app.edges.iter().find(|(k, _)| healthy(*k)))
            .or_else(|| app.edges.iter().find(|(k, _)| in_region(*k)))
            .or(app.edges.first())
            .map(|(k, v)| (*v, *k))
            .unwrap_or((Ipv4Addr::UNSPECIFIED, 0))
    }

    fn soa(&self) -> Record {
        let mname = Name::from_ascii("ns")
            .ok()
            .and_then(|n| n.append_domain(&self.origin).ok());
        let rname = Name::from_ascii("hostmaster")
            .ok()
            .and_then(|n| n.append_domain(&self.origin).ok());
        let soa = SOA::new(
            mname.unwrap_or_else(|| self.origin.clone()),
            rname.unwrap_or_else(|| self.origin.clone()),
            1,
            3600,
            600,
            86400,
            self.ttl,
        );
        Record::from_rdata(self.origin.clone(), self.ttl, RData::SOA(soa))
    }
}

/// What happened to one query, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    /// "answer", "nodata", "nxdomain", "refused", "formerr".
    pub kind: &'static str,
    pub region: String,
    pub edge: Option<usize>,
}

/// Answers one DNS message from `src`; None for what deserves no answer (not a query, unparsable).
pub fn answer(zone: &Zone, bytes: &[u8], src: IpAddr) -> Option<(Vec<u8>, Outcome)> {
    let q = Message::from_vec(bytes).ok()?;
    if q.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = false;
    let mut out = Outcome {
        name: String::new(),
        kind: "formerr",
        region: String::new(),
        edge: None,
    };
    if q.metadata.op_code != OpCode::Query || q.queries.len() != 1 {
        r.metadata.response_code = ResponseCode::FormErr;
        return r.to_vec().ok().map(|b| (b, out));
    }
    let query = q.queries[0].clone();
    let name = query.name().to_lowercase();
    out.name = name.to_ascii();
    r.queries.push(query.clone());
    // The client: EDNS Client Subnet when present, else the source of the query.
    let ecs = q.edns.as_ref().and_then(|e| match e.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(s)) => Some(*s),
        _ => None,
    });
    let client = ecs.as_ref().map(|s| s.addr()).unwrap_or(src);
    let (region, scope) = zone.region_of(client);
    out.region = region.to_string();
    if let Some(e) = &q.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(e.max_payload().max(512));
        if let Some(s) = &ecs {
            // RFC 7871: echo family, source prefix and address; scope = the prefix that decided.
            let scope = scope.min(match s.addr() {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            });
            edns.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                s.addr(),
                s.source_prefix(),
                scope,
            )));
        }
        r.edns = Some(edns);
    }
    if !zone.origin.zone_of(&name) {
        r.metadata.response_code = ResponseCode::Refused;
        out.kind = "refused";
        return r.to_vec().ok().map(|b| (b, out));
    }
    r.metadata.authoritative = true;
    match zone.apps.iter().find(|a| a.name == name) {
        Some(app) if query.query_type() == RecordType::A => {
            let (vip, edge) = zone.pick(app, region);
            r.answers
                .push(Record::from_rdata(query.name().clone(), zone.ttl, RData::A(A(vip))));
            out.kind = "answer";
            out.edge = Some(edge);
        }
        Some(_) => {
            r.authorities.push(zone.soa());
            out.kind = "nodata";
        }
        None if name == zone.origin && query.query_type() == RecordType::SOA => {
            r.answers.push(zone.soa());
            out.kind = "answer";
        }
        None if name == zone.origin => {
            r.authorities.push(zone.soa());
            out.kind = "nodata";
        }
        None => {
            r.metadata.response_code = ResponseCode::NXDomain;
            r.authorities.push(zone.soa());
            out.kind = "nxdomain";
        }
    }
    r.to_vec().ok().map(|b| (b, out))
}
