//! The mapper: authoritative DNS for the application hostnames (see `answer.rs` for what it answers),
//! over UDP and TCP, with health checks of the edges' management endpoints and Prometheus metrics.
//!
//!   mapper --config conf/mapper.toml [--check]
use clap::Parser;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts as MOpts, Registry, TextEncoder};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

mod answer;

use answer::{Config, Outcome, Zone};

#[derive(Parser, Debug)]
#[command(about = "Authoritative DNS for application hostnames: the VIP of the best healthy edge")]
struct Cli {
    #[arg(long)]
    config: std::path::PathBuf,
    /// Check the configuration and exit (0 valid, 2 invalid).
    #[arg(long)]
    check: bool,
}

/// Most TCP connections served at once; more are closed at accept.
const MAX_TCP: usize = 64;

struct Metrics {
    registry: Registry,
    queries: IntCounterVec,
    healthy: IntGaugeVec,
    checks: IntCounterVec,
    /// DNS-over-TCP connections by what became of them.
    tcp: IntCounterVec,
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let queries = IntCounterVec::new(
            MOpts::new(
                "mapper_queries_total",
                "Queries by name (configured hostnames; 'other' for the rest), answer kind and client region.",
            ),
            &["name", "answer", "region"],
        )
        .expect("metric");
        let healthy = IntGaugeVec::new(
            MOpts::new("mapper_edge_healthy", "1 while the edge's health endpoint answers 200."),
            &["edge"],
        )
        .expect("metric");
        let checks = IntCounterVec::new(
            MOpts::new("mapper_health_checks_total", "Health checks by edge and result."),
            &["edge", "result"],
        )
        .expect("metric");
        let tcp = IntCounterVec::new(
            MOpts::new(
                "mapper_tcp_connections_total",
                "DNS-over-TCP connections: served, refused (the most allowed were open, or no thread could \
                 start), or accept_error (a failed accept, e.g. no file descriptor left; retried after 100 ms).",
            ),
            &["result"],
        )
        .expect("metric");
        for m in [
            Box::new(queries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(healthy.clone()),
            Box::new(checks.clone()),
            Box::new(tcp.clone()),
        ] {
            registry.register(m).expect("register");
        }
        Metrics {
            registry,
            queries,
            healthy,
            checks,
            tcp,
        }
    }

    fn count(&self, zone: &Zone, o: &Outcome) {
        let known = zone.apps.iter().any(|a| a.name.to_ascii() == o.name);
        let name = if known { o.name.as_str() } else { "other" };
        self.queries.with_label_values(&[name, o.kind, o.region.as_str()]).inc();
    }
}

fn load(path: &std::path::Path) -> Result<Config, String> {
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml).required(true))
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    conf_load::deserialize(&built).map_err(|e| format!("{}: {}", e.path, e.msg))
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let cfg = match load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: configuration {} is invalid:\n  {e}", cli.config.display());
            std::process::exit(2);
        }
    };
    let mut problems = Vec::new();
    let listen: Option<SocketAddr> = cfg
        .listen
        .parse()
        .map_err(|_| problems.push(format!("listen: '{}' is not an address:port", cfg.listen)))
        .ok();
    let metrics_at: Option<SocketAddr> = cfg
        .metrics
        .parse()
        .map_err(|_| problems.push(format!("metrics: '{}' is not an address:port", cfg.metrics)))
        .ok();
    let zone = match Zone::new(&cfg) {
        Ok(z) => Some(z),
        Err(e) => {
            problems.extend(e);
            None
        }
    };
    let (Some(listen), Some(metrics_at), Some(zone), true) = (listen, metrics_at, zone, problems.is_empty()) else {
        eprintln!("error: configuration {} is invalid:", cli.config.display());
        for p in problems {
            eprintln!("  {p}");
        }
        std::process::exit(2);
    };
    if cli.check {
        println!("configuration {} is valid", cli.config.display());
        return;
    }
    let bind = |what: &str, r: std::io::Result<()>| {
        if let Err(e) = r {
            eprintln!("error: {what}: {e}");
            std::process::exit(1);
        }
    };
    let udp = UdpSocket::bind(listen);
    let tcp = TcpListener::bind(listen);
    let http = mgmt_http::Endpoint::bind(metrics_at);
    let (udp, tcp, http) = match (udp, tcp, http) {
        (Ok(u), Ok(t), Ok(h)) => (u, t, h),
        (u, t, h) => {
            bind("udp listen", u.map(|_| ()));
            bind("tcp listen", t.map(|_| ()));
            bind(
                "metrics listen",
                h.map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())),
            );
            unreachable!("one of the binds failed");
        }
    };
    let zone = Arc::new(zone);
    let metrics = Arc::new(Metrics::new());
    log::info!(
        "authoritative for {} on {listen} (udp, tcp), metrics on http://{metrics_at}/metrics",
        zone.origin
    );

    // Health checks.
    {
        let (zone, metrics) = (zone.clone(), metrics.clone());
        let (every, timeout) = (
            Duration::from_millis(cfg.health_interval_ms.max(50)),
            Duration::from_millis(cfg.health_timeout_ms.max(10)),
        );
        std::thread::spawn(move || health_loop(&zone, &metrics, every, timeout));
    }
    // UDP: two threads on the same socket.
    for _ in 0..2 {
        let sock = udp.try_clone().expect("udp socket");
        let (zone, metrics) = (zone.clone(), metrics.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((resp, o)) = answer::answer(&zone, &buf[..n], from.ip()) {
                    metrics.count(&zone, &o);
                    let _ = sock.send_to(&resp, from);
                }
            }
        });
    }
    // TCP: a thread per connection, at most MAX_TCP at once. A failed accept (EMFILE: the connection
    // stays queued, so the next accept fails at once too) waits before the next try instead of spinning.
    {
        let (zone, metrics) = (zone.clone(), metrics.clone());
        let open = Arc::new(AtomicUsize::new(0));
        let mut failing = false;
        std::thread::spawn(move || loop {
            let s = match tcp.accept() {
                Ok((s, _)) => s,
                Err(e) => {
                    metrics.tcp.with_label_values(&["accept_error"]).inc();
                    if !failing {
                        log::warn!("tcp accept failed ({e}); trying again every 100 ms");
                        failing = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if std::mem::take(&mut failing) {
                log::warn!("tcp: accepting again");
            }
            if open.fetch_add(1, Relaxed) >= MAX_TCP {
                open.fetch_sub(1, Relaxed);
                metrics.tcp.with_label_values(&["refused"]).inc();
                continue;
            }
            let (zone, m2, o2) = (zone.clone(), metrics.clone(), open.clone());
            let started = std::thread::Builder::new().spawn(move || {
                m2.tcp.with_label_values(&["served"]).inc();
                serve_tcp(s, &zone, &m2);
                o2.fetch_sub(1, Relaxed);
            });
            if started.is_err() {
                open.fetch_sub(1, Relaxed);
                metrics.tcp.with_label_values(&["refused"]).inc();
            }
        });
    }
    // Metrics, served on this thread (connections bounded and timed out, see mgmt_http).
    http.serve(
        || true,
        move |req| {
            if req.path == "/metrics" {
                let mut out = Vec::new();
                let _ = TextEncoder::new().encode(&metrics.registry.gather(), &mut out);
                mgmt_http::Reply::new(200, "text/plain; version=0.0.4", out)
            } else {
                mgmt_http::Reply::new(404, "text/plain", "not found\n")
            }
        },
    );
}

/// DNS over TCP (RFC 7766): two-byte length, message; several per connection; 10 s idle limit.
fn serve_tcp(mut s: TcpStream, zone: &Zone, metrics: &Metrics) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(peer) = s.peer_addr() else { return };
    let mut buf = vec![0u8; 65535];
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let n = u16::from_be_bytes(len) as usize;
        if s.read_exact(&mut buf[..n]).is_err() {
            return;
        }
        let Some((resp, o)) = answer::answer(zone, &buf[..n], peer.ip()) else {
            return;
        };
        metrics.count(zone, &o);
        let mut out = (resp.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&resp);
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

fn health_loop(zone: &Zone, metrics: &Metrics, every: Duration, timeout: Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    loop {
        for e in &zone.edges {
            let ok = match &e.health {
                None => true,
                Some(url) => agent.get(url).call().is_ok_and(|r| r.status() == 200),
            };
            let was = e.healthy.swap(ok, Relaxed);
            if was != ok {
                log::warn!("edge {} is now {}", e.name, if ok { "healthy" } else { "unhealthy" });
            }
            metrics.healthy.with_label_values(&[e.name.as_str()]).set(ok as i64);
            metrics
                .checks
                .with_label_values(&[e.name.as_str(), if ok { "ok" } else { "fail" }])
                .inc();
        }
        std::thread::sleep(every);
    }
}
