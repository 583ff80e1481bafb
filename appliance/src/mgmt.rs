//! The management thread: an HTTP endpoint (loopback by default) serving Prometheus `/metrics`, `/healthz`
//! and read-only state as JSON at `/state`. Not a worker: it only reads published counters.
use crate::shared::Shared;
use crate::stats::stalest_age_secs;
use crate::tables::Reloader;
use mgmt_http::Method;
use serde_json::json;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

/// An answer: status, content type, body.
type Answer = (u16, &'static str, String);

/// A worker whose last loop iteration is older than this makes /healthz fail.
pub const STALL_SECS: f64 = 1.0;

/// The endpoint's server (see [`mgmt_http`]: connections are bounded and time out, accepting never stops).
pub fn bind(addr: std::net::SocketAddr) -> Result<mgmt_http::Endpoint, String> {
    mgmt_http::Endpoint::bind(addr).map_err(|e| format!("management.listen {addr}: {e}"))
}

/// Serves the endpoint on this thread until the appliance stops; reloads on SIGHUP. When this returns, no
/// answer is being made (answers read the ports, which close after this thread has ended).
pub fn run(server: mgmt_http::Endpoint, sh: Arc<Shared>, debug: bool, reloader: Reloader) {
    let hup = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()) {
        log::warn!("SIGHUP will not reload: {e}");
    }
    let counters = server.counters();
    // Both closures run on this thread, one at a time.
    let reloader = Rc::new(reloader);
    let (sh2, reloader2) = (sh.clone(), reloader.clone());
    let tick = move || {
        if hup.swap(false, Relaxed) {
            log::info!("SIGHUP: reloading the configuration");
            let _ = reload(&sh2, &reloader2);
        }
        !sh2.stop.load(Relaxed)
    };
    server.serve(tick, move |req| {
        let (code, ctype, body) = answer(&sh, &counters, debug, &reloader, req);
        mgmt_http::Reply::new(code, ctype, body)
    });
}

fn answer(
    sh: &Shared,
    counters: &mgmt_http::Counters,
    debug: bool,
    reloader: &Reloader,
    req: &mgmt_http::Request,
) -> Answer {
    match (req.method, req.path) {
        (&Method::GET, "/metrics") => (200, "text/plain; version=0.0.4", crate::metrics::render(sh, counters)),
        (&Method::GET, "/healthz") => health(sh),
        (&Method::GET, "/state") => (200, "application/json", state(sh).to_string()),
        (&Method::POST, "/debug/stall") if debug => stall(sh, req.query),
        (&Method::POST, "/reload") => reload(sh, reloader),
        (&Method::GET, "/") => (
            200,
            "text/plain",
            "endpoints: GET /metrics /healthz /state, POST /reload\n".to_string(),
        ),
        _ => (404, "text/plain", "not found\n".to_string()),
    }
}

/// Reloads the configuration file: 200 and a summary, or 400 naming every problem (the running
/// configuration stays).
fn reload(sh: &Shared, r: &Reloader) -> Answer {
    let macs: Vec<_> = sh.ports.iter().map(|p| p.mac).collect();
    match r.reload(&sh.tables.load(), &macs) {
        Ok((tables, msg)) => {
            sh.publish_tables(tables);
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
            // {stage: {reason: count}}, the stages and reasons that dropped anything.
            let mut drops = serde_json::Map::new();
            for (stage, r, n) in s.drops.nonzero() {
                drops.entry(stage.name()).or_insert_with(|| json!({}))[r.name()] = json!(n);
            }
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
