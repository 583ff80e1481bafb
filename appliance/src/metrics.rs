//! Prometheus text exposition, built at scrape time from the published counters with the `prometheus`
//! crate's data model and text encoder.
use crate::shared::Shared;
use pipelines::DropReason;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use std::sync::atomic::Ordering::Relaxed;

struct Families(Vec<MetricFamily>);

impl Families {
    fn add(&mut self, name: &str, help: &str, kind: MetricType, samples: Vec<(Vec<(&str, String)>, f64)>) {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        for (labels, v) in samples {
            let mut m = Metric::default();
            m.set_label(
                labels
                    .into_iter()
                    .map(|(k, v)| {
                        let mut l = LabelPair::default();
                        l.set_name(k.to_string());
                        l.set_value(v);
                        l
                    })
                    .collect(),
            );
            match kind {
                MetricType::COUNTER => {
                    let mut c = Counter::default();
                    c.set_value(v);
                    m.set_counter(c);
                }
                _ => {
                    let mut g = Gauge::default();
                    g.set_value(v);
                    m.set_gauge(g);
                }
            }
            f.mut_metric().push(m);
        }
        self.0.push(f);
    }
}

/// Full NAT: sessions by worker and protocol, creations and expiries (rate() gives per second),
/// translations, allocation failures and hand-offs between workers.
fn nat_families(fs: &mut Families, snaps: &[crate::stats::Snapshot]) {
    let per_proto = |f: fn(&crate::stats::Snapshot) -> [u64; 3]| {
        let mut v = Vec::new();
        for (i, s) in snaps.iter().enumerate() {
            for (p, n) in f(s).iter().enumerate() {
                v.push((
                    vec![
                        ("worker", i.to_string()),
                        ("lcore", s.lcore.to_string()),
                        ("proto", pipelines::nat::packet::PROTOS[p].to_string()),
                    ],
                    *n as f64,
                ));
            }
        }
        v
    };
    fs.add(
        "appliance_nat_sessions",
        "Live NAT sessions, by worker and protocol.",
        MetricType::GAUGE,
        per_proto(|s| s.nat_live),
    );
    fs.add(
        "appliance_nat_sessions_away",
        "Live NAT sessions kept off their home line, by worker: their client-side lookups read a second \
         line (many mean the pool has few pairs per session).",
        MetricType::GAUGE,
        snaps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    vec![("worker", i.to_string()), ("lcore", s.lcore.to_string())],
                    s.nat_away as f64,
                )
            })
            .collect(),
    );
    fs.add(
        "appliance_nat_sessions_created_total",
        "NAT sessions opened.",
        MetricType::COUNTER,
        per_proto(|s| s.nat.created),
    );
    fs.add(
        "appliance_nat_sessions_expired_total",
        "NAT sessions ended by their idle timeout.",
        MetricType::COUNTER,
        per_proto(|s| s.nat.expired),
    );
    type Field = fn(&crate::stats::Snapshot) -> u64;
    let by = |key: &'static str, pairs: &[(&str, Field)]| {
        let mut v = Vec::new();
        for (i, s) in snaps.iter().enumerate() {
            for (label, f) in pairs {
                v.push((
                    vec![
                        ("worker", i.to_string()),
                        ("lcore", s.lcore.to_string()),
                        (key, label.to_string()),
                    ],
                    f(s) as f64,
                ));
            }
        }
        v
    };
    fs.add(
        "appliance_nat_translated_total",
        "Packets translated, toward the target (out) and back toward the client (in).",
        MetricType::COUNTER,
        by(
            "direction",
            &[("out", |s| s.nat.translated_out), ("in", |s| s.nat.translated_in)],
        ),
    );
    fs.add(
        "appliance_nat_alloc_failures_total",
        "New flows refused: session table full, or no free pool port / ICMP id in the worker's slice.",
        MetricType::COUNTER,
        by(
            "kind",
            &[
                ("table_full", |s| s.drops.reason(DropReason::NatTableFull)),
                ("ports_exhausted", |s| s.drops.reason(DropReason::NatPortsExhausted)),
            ],
        ),
    );
}

/// Hand-offs between workers (NAT replies, dedupe streams owned by another worker).
fn handoff_family(fs: &mut Families, snaps: &[crate::stats::Snapshot]) {
    let mut v = Vec::new();
    for (i, s) in snaps.iter().enumerate() {
        for (dir, n) in [("out", s.handoff_out), ("in", s.handoff_in)] {
            v.push((
                vec![
                    ("worker", i.to_string()),
                    ("lcore", s.lcore.to_string()),
                    ("direction", dir.to_string()),
                ],
                n as f64,
            ));
        }
    }
    fs.add(
        "appliance_handoff_packets_total",
        "Packets handed to the worker that owns their state (out) and received from other workers (in).",
        MetricType::COUNTER,
        v,
    );
}

/// Duplicate removal per worker (802.1CB counters) and packets per overlay path (edge, gateway).
fn overlay_families(fs: &mut Families, sh: &Shared) {
    let tables = sh.tables.load();
    let mut dd = Vec::new();
    let mut streams = Vec::new();
    for (i, w) in sh.workers.iter().enumerate() {
        let (c, n) = w.dedupe();
        let wl = || vec![("worker", i.to_string()), ("lcore", w.lcore.to_string())];
        for (name, v) in [
            ("passed", c.passed),
            ("discarded", c.discarded),
            ("out_of_order", c.out_of_order),
            ("rogue", c.rogue),
            ("lost", c.lost),
            ("resets", c.resets),
        ] {
            let mut l = wl();
            l.push(("result", name.to_string()));
            dd.push((l, v as f64));
        }
        streams.push((wl(), n as f64));
    }
    fs.add(
        "appliance_dedupe_packets_total",
        "Duplicate removal (IEEE 802.1CB recovery) by worker: passed, discarded (a twin was delivered), \
         out_of_order, rogue (older than the window), lost (never arrived on any path), resets.",
        MetricType::COUNTER,
        dd,
    );
    fs.add(
        "appliance_dedupe_streams",
        "(sender node, stream) pairs tracked, by worker.",
        MetricType::GAUGE,
        streams,
    );
    let mut paths = Vec::new();
    for id in 0..=255u8 {
        let (rx, tx) = sh.workers.iter().fold((0, 0), |(r, t), w| {
            let (a, b) = w.path(id);
            (r + a, t + b)
        });
        let name = tables.path_names.iter().find(|(p, _)| *p == id).map(|(_, n)| n.clone());
        if rx == 0 && tx == 0 && name.is_none() {
            continue;
        }
        for (dir, v) in [("rx", rx), ("tx", tx)] {
            paths.push((
                vec![
                    ("path", id.to_string()),
                    ("name", name.clone().unwrap_or_default()),
                    ("direction", dir.to_string()),
                ],
                v as f64,
            ));
        }
    }
    fs.add(
        "appliance_overlay_path_packets_total",
        "Overlay packets per path id: received (rx, before duplicate removal) and sent (tx, copies).",
        MetricType::COUNTER,
        paths,
    );
}

/// Probe measurements and the selection, per path (edge, gateway).
fn path_families(fs: &mut Families, sh: &Shared) {
    let reports = sh.paths.load();
    let labels = |p: &crate::shared::PathReport| {
        vec![
            ("path", p.id.to_string()),
            ("name", p.name.clone()),
            ("dest", p.dest.to_string()),
            ("region", p.region.clone()),
        ]
    };
    let g = MetricType::GAUGE;
    let each = |f: &dyn Fn(&crate::shared::PathReport) -> Option<f64>| -> Vec<(Vec<(&str, String)>, f64)> {
        reports.iter().filter_map(|p| f(p).map(|v| (labels(p), v))).collect()
    };
    fs.add(
        "appliance_path_rtt_seconds",
        "Probe round-trip time per path (EWMA); absent until a probe was answered.",
        g,
        each(&|p| p.stats.rtt_ns.map(|r| r / 1e9)),
    );
    fs.add(
        "appliance_path_jitter_seconds",
        "Probe round-trip time variation per path (EWMA).",
        g,
        each(&|p| Some(p.stats.jitter_ns / 1e9)),
    );
    fs.add(
        "appliance_path_loss_ratio",
        "Probe loss per path (EWMA, 0 to 1).",
        g,
        each(&|p| Some(p.stats.loss)),
    );
    fs.add(
        "appliance_path_selected",
        "1 when the path is in its destination's path set.",
        g,
        each(&|p| Some(if p.selected { 1.0 } else { 0.0 })),
    );
    let mut probes = Vec::new();
    for p in reports.iter() {
        for (result, v) in [
            ("sent", p.stats.sent),
            ("answered", p.stats.answered),
            ("lost", p.stats.lost),
        ] {
            let mut l = labels(p);
            l.push(("result", result.to_string()));
            probes.push((l, v as f64));
        }
    }
    fs.add(
        "appliance_path_probes_total",
        "Path probes sent, answered and lost, per path.",
        MetricType::COUNTER,
        probes,
    );
    fs.add(
        "appliance_path_set_changes_total",
        "Path sets replaced by the selection (a path failed or a clearly better set appeared).",
        MetricType::COUNTER,
        vec![(vec![], sh.control.path_set_changes.load(Relaxed) as f64)],
    );
}

/// Renders every metric of the appliance.
pub fn render(sh: &Shared, http: &mgmt_http::Counters) -> String {
    let mut fs = Families(Vec::new());
    let c = MetricType::COUNTER;
    let g = MetricType::GAUGE;

    fs.add(
        "appliance_build_info",
        "Build and DPDK version (value 1).",
        g,
        vec![(
            vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("dpdk", sh.dpdk_version.clone()),
            ],
            1.0,
        )],
    );

    // Ports.
    let stats: Vec<_> = sh
        .ports
        .iter()
        .map(|p| (p, p.port.stats().unwrap_or_default()))
        .collect();
    let pl = |p: &crate::shared::PortRt| vec![("port", p.port.id().0.to_string()), ("name", p.name.clone())];
    type Field = fn(&pmd_bindings::PortStats) -> u64;
    let port_counters: [(&str, &str, Field); 8] = [
        (
            "appliance_port_rx_packets_total",
            "Packets received by the port.",
            |s| s.rx_packets,
        ),
        ("appliance_port_tx_packets_total", "Packets sent by the port.", |s| {
            s.tx_packets
        }),
        ("appliance_port_rx_bytes_total", "Bytes received by the port.", |s| {
            s.rx_bytes
        }),
        ("appliance_port_tx_bytes_total", "Bytes sent by the port.", |s| {
            s.tx_bytes
        }),
        (
            "appliance_port_rx_missed_total",
            "Packets the port dropped because rx queues were full.",
            |s| s.rx_missed,
        ),
        (
            "appliance_port_rx_errors_total",
            "Erroneous packets received by the port.",
            |s| s.rx_errors,
        ),
        (
            "appliance_port_tx_errors_total",
            "Packets the port failed to send.",
            |s| s.tx_errors,
        ),
        (
            "appliance_port_rx_nombuf_total",
            "Receive buffer allocation failures.",
            |s| s.rx_nombuf,
        ),
    ];
    for (name, help, f) in port_counters {
        fs.add(name, help, c, stats.iter().map(|(p, s)| (pl(p), f(s) as f64)).collect());
    }
    fs.add(
        "appliance_port_link_up",
        "1 when the port's link is up.",
        g,
        sh.ports
            .iter()
            .map(|p| (pl(p), p.port.link().map(|l| l.up as u8 as f64).unwrap_or(0.0)))
            .collect(),
    );

    // Workers.
    let snaps: Vec<_> = sh.workers.iter().map(|w| w.snapshot()).collect();
    let wl = |i: usize, lcore: u32| vec![("worker", i.to_string()), ("lcore", lcore.to_string())];
    type WField = fn(&crate::stats::Snapshot) -> u64;
    let worker_counters: [(&str, &str, MetricType, WField); 7] = [
        (
            "appliance_worker_rx_packets_total",
            "Packets a worker received.",
            c,
            |s| s.rx,
        ),
        (
            "appliance_worker_tx_packets_total",
            "Packets a worker handed to the driver.",
            c,
            |s| s.tx,
        ),
        (
            "appliance_worker_consumed_packets_total",
            "Packets used up without a reply (ARP replies to learn).",
            c,
            |s| s.consumed,
        ),
        (
            "appliance_worker_idle_sleeps_total",
            "Short sleeps of an adaptive worker with nothing to do.",
            c,
            |s| s.idle_sleeps,
        ),
        (
            "appliance_worker_loops_total",
            "Loop iterations a worker completed.",
            c,
            |s| s.loops,
        ),
        (
            "appliance_worker_control_ring_full_total",
            "Events to the control thread lost to a full ring.",
            c,
            |s| s.control_ring_full,
        ),
        (
            "appliance_worker_held_packets",
            "Packets held waiting for ARP resolution.",
            g,
            |s| s.hold_len,
        ),
    ];
    for (name, help, kind, f) in worker_counters {
        fs.add(
            name,
            help,
            kind,
            snaps
                .iter()
                .enumerate()
                .map(|(i, s)| (wl(i, s.lcore), f(s) as f64))
                .collect(),
        );
    }
    let mut drops = Vec::new();
    for (i, s) in snaps.iter().enumerate() {
        for (stage, r, n) in s.drops.series() {
            let mut l = wl(i, s.lcore);
            l.push(("stage", stage.name().to_string()));
            l.push(("reason", r.name().to_string()));
            drops.push((l, n as f64));
        }
    }
    fs.add(
        "appliance_drops_total",
        "Packets dropped, by worker, stage and reason.",
        c,
        drops,
    );
    if sh.nat.is_some() {
        nat_families(&mut fs, &snaps);
    }
    let overlay = sh.overlay_addr.is_some() && !sh.tables.load().path_names.is_empty();
    if sh.nat.is_some() || overlay {
        handoff_family(&mut fs, &snaps);
    }
    if overlay {
        overlay_families(&mut fs, sh);
        path_families(&mut fs, sh);
    }
    fs.add(
        "appliance_config_reloads_total",
        "Configuration reloads (SIGHUP or POST /reload): applied, or refused with the old configuration kept.",
        c,
        vec![
            (
                vec![("result", "applied".to_string())],
                sh.control.reloads.load(Relaxed) as f64,
            ),
            (
                vec![("result", "refused".to_string())],
                sh.control.reload_failures.load(Relaxed) as f64,
            ),
        ],
    );
    // The management endpoint's own counters (see mgmt_http).
    for (name, help, kind, value) in [
        (
            "appliance_management_accept_errors_total",
            "Accepts on the management endpoint that failed (file descriptors exhausted and the like); each is retried.",
            c,
            &http.accept_errors,
        ),
        (
            "appliance_management_connections_refused_total",
            "Management connections closed at once because the most allowed were open.",
            c,
            &http.refused,
        ),
        (
            "appliance_management_connections_stalled_total",
            "Management connections ended because the client did not read an answer for 10 s.",
            c,
            &http.stalled,
        ),
        (
            "appliance_management_connections",
            "Management connections open now.",
            g,
            &http.open,
        ),
    ] {
        fs.add(name, help, kind, vec![(vec![], value.load(Relaxed) as f64)]);
    }
    let now = pmd_bindings::rdtsc();
    fs.add(
        "appliance_worker_heartbeat_age_seconds",
        "Time since the worker last completed a loop iteration (published every ~100 us).",
        g,
        snaps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    wl(i, s.lcore),
                    now.saturating_sub(s.heartbeat) as f64 / sh.tsc_hz as f64,
                )
            })
            .collect(),
    );

    // Mempool.
    let pool = vec![("pool", "pkt".to_string())];
    fs.add(
        "appliance_mempool_in_use",
        "Packet buffers out of the pool.",
        g,
        vec![(pool.clone(), sh.pool.in_use() as f64)],
    );
    fs.add(
        "appliance_mempool_size",
        "Packet buffers in the pool.",
        g,
        vec![(pool, sh.pool_size as f64)],
    );

    // Neighbours.
    let ctl = &sh.control;
    fs.add(
        "appliance_neighbour_entries",
        "Entries in the neighbour table.",
        g,
        vec![(vec![], ctl.entries.load(Relaxed) as f64)],
    );
    fs.add(
        "appliance_neighbour_published",
        "Resolved neighbours published to workers.",
        g,
        vec![(vec![], sh.neigh.load().len() as f64)],
    );
    let nc: [(&str, &str, &std::sync::atomic::AtomicU64); 5] = [
        (
            "appliance_neighbour_requests_total",
            "ARP requests sent.",
            &ctl.requests_sent,
        ),
        (
            "appliance_neighbour_resolved_total",
            "Next hops resolved.",
            &ctl.resolved,
        ),
        (
            "appliance_neighbour_failed_total",
            "Next hops that did not answer.",
            &ctl.failed,
        ),
        (
            "appliance_neighbour_table_full_total",
            "Resolutions refused because the table was full.",
            &ctl.table_full,
        ),
        (
            "appliance_neighbour_tx_failed_total",
            "ARP requests not sent (no buffer or ring full).",
            &ctl.tx_failed,
        ),
    ];
    for (name, help, v) in nc {
        fs.add(name, help, c, vec![(vec![], v.load(Relaxed) as f64)]);
    }

    let mut out = Vec::with_capacity(16 * 1024);
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(&fs.0, &mut out);
    String::from_utf8(out).unwrap_or_default()
}
