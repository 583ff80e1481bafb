//! The management thread: an HTTP endpoint (loopback by default) serving Prometheus `/metrics`, `/healthz`
//! and read-only state as JSON at `/state`. Not a worker: it only reads published counters.
use crate::runtime::Shared;
use crate::stats::stalest_age_secs;
use crate::tables::Reloader;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Method, Response};

/// An answer: status, content type, body.
type Answer = (u16, &'static str, String);

/// A worker whose last loop iteration is older than this makes /healthz fail.
pub const STALL_SECS: f64 = 1.0;

/// The endpoint's server: connections time out and answers are written per connection
/// ([`mgmt_http`]), so a client that does not read cannot stall this thread.
pub fn bind(addr: std::net::SocketAddr) -> Result<mgmt_http::Endpoint, String> {
    mgmt_http::Endpoint::bind(addr).map_err(|e| format!("management.listen {addr}: {e}"))
}

pub fn run(mut server: mgmt_http::Endpoint, sh: Arc<Shared>, debug: bool, reloader: Reloader) {
    let hup = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()) {
        log::warn!("SIGHUP will not reload: {e}");
    }
    let responder = mgmt_http::Responder::default();
    while !sh.stop.load(Relaxed) {
        if hup.swap(false, Relaxed) {
            log::info!("SIGHUP: reloading the configuration");
            let _ = reload(&sh, &reloader);
        }
        let Some(req) = server.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let url = req.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let method = req.method().clone();
        // GET answers are made by the connection's writer (a client that queues many requests keeps
        // its own writer busy, not this thread); what changes state is done here, in arrival order.
        let made = |a: Answer| -> Box<dyn FnOnce() -> Answer + Send> { Box::new(move || a) };
        let sh2 = sh.clone();
        let answer: Box<dyn FnOnce() -> Answer + Send> = match (&method, path) {
            (Method::Get, "/metrics") => {
                Box::new(move || (200, "text/plain; version=0.0.4", crate::metrics::render(&sh2)))
            }
            (Method::Get, "/healthz") => Box::new(move || health(&sh2)),
            (Method::Get, "/state") => Box::new(move || (200, "application/json", state(&sh2).to_string())),
            (Method::Post, "/debug/stall") if debug => made(stall(&sh, query)),
            (Method::Post, "/reload") => made(reload(&sh, &reloader)),
            (Method::Get, "/") => made((
                200,
                "text/plain",
                "endpoints: GET /metrics /healthz /state, POST /reload\n".to_string(),
            )),
            _ => made((404, "text/plain", "not found\n".to_string())),
        };
        responder.respond(req, move || {
            let (code, ctype, body) = answer();
            let header = Header::from_bytes("Content-Type", ctype).expect("static header is valid");
            Response::from_string(body).with_status_code(code).with_header(header)
        });
    }
    // Answers read the ports, which close once this thread has ended: none is made after this.
    if !responder.close(Duration::from_secs(5)) {
        log::warn!("management: an answer was still being made after 5 s at shutdown");
    }
}

/// Reloads the configuration file: 200 and a summary, or 400 naming every problem (the running
/// configuration stays).
fn reload(sh: &Shared, r: &Reloader) -> Answer {
    match r.reload(sh) {
        Ok(msg) => {
            log::info!("{msg}");
            (200, "text/plain", msg + "\n")
        }
        Err(problems) => {
            sh.control.reload_failures.fetch_add(1, Relaxed);
            let mut msg = "reload refused; the running configuration stays:\n".to_string();
            for p in &problems {
                msg += &format!("  {p}\n");
            }
            log::warn!("{}", msg.trim_end());
            (400, "text/plain", msg)
        }
    }
}

fn health(sh: &Shared) -> Answer {
    let age = stalest_age_secs(
        sh.workers.iter().map(|w| w.heartbeat.load(Relaxed)),
        pmd_bindings::rdtsc(),
        sh.tsc_hz,
    );
    if age > STALL_SECS {
        (
            503,
            "text/plain",
            format!("stalled: a worker has not completed a loop for {age:.3} s\n"),
        )
    } else if sh.stop.load(Relaxed) {
        (503, "text/plain", "stopping\n".to_string())
    } else {
        (200, "text/plain", "ok\n".to_string())
    }
}

fn stall(sh: &Shared, query: &str) -> Answer {
    let mut worker = 0usize;
    let mut ms = 0u64;
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("worker", v)) => worker = v.parse().unwrap_or(usize::MAX),
            Some(("ms", v)) => ms = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    match sh.workers.get(worker) {
        Some(w) if ms > 0 && ms <= 60_000 => {
            w.stall_ms.store(ms, Relaxed);
            (200, "text/plain", format!("worker {worker} stalls for {ms} ms\n"))
        }
        _ => (
            400,
            "text/plain",
            "usage: POST /debug/stall?worker=N&ms=1..60000\n".to_string(),
        ),
    }
}

fn state(sh: &Shared) -> serde_json::Value {
    let ports: Vec<_> = sh
        .ports
        .iter()
        .map(|p| {
            let s = p.port.stats().unwrap_or_default();
            json!({
                "id": p.port.id().0, "name": p.name, "mac": p.mac.to_string(),
                "addresses": p.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "link_up": p.port.link().map(|l| l.up).unwrap_or(false),
                "rx_packets": s.rx_packets, "tx_packets": s.tx_packets, "rx_missed": s.rx_missed,
                "rx_errors": s.rx_errors, "tx_errors": s.tx_errors,
            })
        })
        .collect();
    let workers: Vec<_> = sh
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let s = w.snapshot();
            let drops: serde_json::Map<String, serde_json::Value> = pipelines::DropReason::ALL
                .iter()
                .filter(|r| s.drops.get(**r) > 0)
                .map(|r| (r.name().to_string(), json!(s.drops.get(*r))))
                .collect();
            let mut v = json!({"worker": i, "lcore": s.lcore, "rx": s.rx, "tx": s.tx, "consumed": s.consumed,
                   "held": s.hold_len, "drops": drops});
            if sh.overlay_addr.is_some() {
                let (c, streams) = w.dedupe();
                v["dedupe"] = json!({"streams": streams, "passed": c.passed, "discarded": c.discarded,
                    "out_of_order": c.out_of_order, "rogue": c.rogue, "lost": c.lost, "resets": c.resets});
            }
            if let Some(n) = &sh.nat {
                v["nat"] = json!({
                    "sessions": {"tcp": s.nat_live[0], "udp": s.nat_live[1], "icmp": s.nat_live[2]},
                    "created": {"tcp": s.nat.created[0], "udp": s.nat.created[1], "icmp": s.nat.created[2]},
                    "expired": {"tcp": s.nat.expired[0], "udp": s.nat.expired[1], "icmp": s.nat.expired[2]},
                    "translated": {"out": s.nat.translated_out, "in": s.nat.translated_in},
                    "handoffs": {"out": s.handoff_out, "in": s.handoff_in},
                    "ports": format!("{:?}", n.pool.slice(i as u16)),
                });
            }
            v
        })
        .collect();
    let neigh = sh.neigh.load();
    let mut neighbours: Vec<_> = neigh
        .iter()
        .map(|(p, ip, mac)| json!({"port": sh.ports.get(p as usize).map(|x| x.port.id().0), "ip": ip.to_string(), "mac": mac.to_string()}))
        .collect();
    neighbours.sort_by_key(|v| v.to_string());
    let tables = sh.tables.load();
    let mut config = tables.describe();
    // Packets per path, summed over the workers.
    if let Some(sets) = config["overlay"]["path_sets"].as_array_mut() {
        for set in sets {
            for p in set["paths"].as_array_mut().into_iter().flatten() {
                let id = p["id"].as_u64().unwrap_or(0) as u8;
                let (rx, tx) = sh.workers.iter().fold((0, 0), |(r, t), w| {
                    let (a, b) = w.path(id);
                    (r + a, t + b)
                });
                p["rx"] = json!(rx);
                p["tx"] = json!(tx);
            }
        }
    }
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "overlay": config["overlay"],
        "nat_applications": config["nat_applications"],
        "config_generation": sh.tables_gen.load(Relaxed),
        "paths": sh.paths.load().iter().map(|p| json!({
            "id": p.id, "name": p.name, "dest": p.dest, "region": p.region, "selected": p.selected,
            "rtt_ms": p.stats.rtt_ns.map(|r| r / 1e6), "jitter_ms": p.stats.jitter_ns / 1e6, "loss": p.stats.loss,
            "probes": {"sent": p.stats.sent, "answered": p.stats.answered, "lost": p.stats.lost}, "unfit": p.unfit,
        })).collect::<Vec<_>>(),
        "uptime_secs": sh.started.elapsed().as_secs_f64(),
        "ports": ports,
        "workers": workers,
        "neighbours": neighbours,
        "mempool": {"in_use": sh.pool.in_use(), "size": sh.pool_size},
    })
}
