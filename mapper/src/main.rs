//! The mapper: authoritative DNS for the application hostnames (see `answer.rs` for what it answers),
//! over UDP and TCP, with health checks of the edges' management endpoints and Prometheus metrics.
//!
//!   mapper --config conf/mapper.toml [--check]
use clap::Parser;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts as MOpts, Registry, TextEncoder};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
/// How long a DNS-over-TCP client may take: to send a whole message from its first byte, to start the
/// next message (an idle connection ends), and to let a write of an answer make progress.
const TCP_DEADLINE: Duration = Duration::from_secs(10);

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
                "DNS-over-TCP connections: served, refused (the most allowed were open), or accept_error (a \
                 failed accept, e.g. no file descriptor left; retried after 100 ms).",
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

    /// Brings `mapper_tcp_connections_total` up to the TCP listener's counters. Called only by the metrics
    /// thread, the metric's only writer: each result grows by what its counter has grown since.
    fn sync_tcp(&self, c: &mgmt_http::Counters) {
        for (result, counter) in [
            ("served", &c.served),
            ("refused", &c.refused),
            ("accept_error", &c.accept_errors),
        ] {
            let m = self.tcp.with_label_values(&[result]);
            m.inc_by(counter.load(Relaxed).saturating_sub(m.get()));
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
    let tcp = mgmt_http::accept::Listener::bind(listen);
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
    // TCP: one thread serves every connection, at most MAX_TCP at once (see mgmt_http::accept).
    let tcp_counters = tcp.counters();
    {
        let (zone, metrics, counters) = (zone.clone(), metrics.clone(), tcp.counters());
        std::thread::spawn(move || {
            tcp.serve(
                "dns tcp",
                MAX_TCP,
                || true,
                move |s| serve_tcp(s, zone.clone(), metrics.clone(), counters.clone()),
            )
        });
    }
    // Metrics, served on this thread (connections bounded and timed out, see mgmt_http).
    http.serve(
        || true,
        move |req| {
            if req.path == "/metrics" {
                metrics.sync_tcp(&tcp_counters);
                let mut out = Vec::new();
                let _ = TextEncoder::new().encode(&metrics.registry.gather(), &mut out);
                mgmt_http::Reply::new(200, "text/plain; version=0.0.4", out)
            } else {
                mgmt_http::Reply::new(404, "text/plain", "not found\n")
            }
        },
    );
}

/// DNS over TCP (RFC 7766): two-byte length, message; several per connection. Each message must arrive
/// whole within [`TCP_DEADLINE`] of its first byte, and its first byte within [`TCP_DEADLINE`] of the last
/// answer (or of the accept); an answer whose write makes no progress for that long ends the connection.
async fn serve_tcp(
    stream: tokio::net::TcpStream,
    zone: Arc<Zone>,
    metrics: Arc<Metrics>,
    counters: Arc<mgmt_http::Counters>,
) {
    let Ok(peer) = stream.peer_addr() else { return };
    let mut s = mgmt_http::Stalls::new(stream, TCP_DEADLINE, &counters.stalled);
    let mut buf = vec![0u8; 65535];
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_DEADLINE, s.read(&mut len[..1])).await {
            Ok(Ok(1)) => {}
            _ => return,
        }
        let message = async {
            s.read_exact(&mut len[1..]).await?;
            let n = u16::from_be_bytes(len) as usize;
            s.read_exact(&mut buf[..n]).await
        };
        let Ok(Ok(n)) = tokio::time::timeout(TCP_DEADLINE, message).await else {
            return;
        };
        let Some((resp, o)) = answer::answer(&zone, &buf[..n], peer.ip()) else {
            return;
        };
        metrics.count(&zone, &o);
        let mut out = (resp.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&resp);
        if s.write_all(&out).await.is_err() {
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
