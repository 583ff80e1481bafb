//! Bring-up and shutdown: EAL, mempool, ports, workers on their lcores, the control and management
//! threads; SIGINT/SIGTERM stop the workers, print final counters and exit 0.
use crate::config::overlay::RoleSpec;
use crate::config::{problem, Problems, Validated};
use crate::control::Control;
use crate::shared::{PortRt, Shared};
use crate::stats::{ControlShared, WorkerShared};
use crate::tables::{Reloader, Tables};
use crate::worker::{ToControl, ToWorker, Worker};
use arc_swap::ArcSwap;
use pipelines::handoff::Handoff;
use pipelines::neigh::{NeighConfig, NeighSnapshot};
use pipelines::MacAddr;
use pmd_bindings::{Eal, LcoreId, Mempool, Port, PortConfig, PortId, RxQueue, SocketId, TxQueue};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the appliance could not run.
#[derive(Debug)]
pub enum RunError {
    /// The configuration does not fit what the EAL found (exit 2, nothing started).
    Config(Problems),
    /// A runtime failure (exit 1).
    Fatal(String),
}

impl From<pmd_bindings::Error> for RunError {
    fn from(e: pmd_bindings::Error) -> Self {
        RunError::Fatal(e.to_string())
    }
}

pub fn run(v: Validated, eal_argv: Vec<String>, reloader: Reloader) -> Result<(), RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
            .map_err(|e| RunError::Fatal(format!("installing signal handlers: {e}")))?;
    }
    // Bind the management endpoint before anything is started, so a taken address touches nothing.
    let server = crate::mgmt::bind(v.management.listen)
        .map_err(|e| RunError::Config(Problems(vec![problem("management.listen", e)])))?;

    let eal = Eal::init(&eal_argv)?;
    let d = &v.dataplane;

    // What the configuration assumed about the EAL, checked against what it found.
    let mut errs = Vec::new();
    let mut ports = Vec::new();
    for (i, p) in v.ports.iter().enumerate() {
        match Port::new(&eal, PortId(p.id)) {
            Ok(port) => ports.push(port),
            Err(_) => errs.push(problem(
                format!("ports[{i}].id"),
                format!(
                    "port {} does not exist: the EAL found {} port(s)",
                    p.id,
                    eal.port_count()
                ),
            )),
        }
    }
    for (i, w) in d.workers.iter().enumerate() {
        if !eal.lcore_enabled(LcoreId(*w)) {
            errs.push(problem(
                format!("dataplane.workers[{i}]"),
                format!("lcore {w} is not enabled in the EAL"),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(RunError::Config(Problems(errs)));
    }

    let nworkers = d.workers.len() as u16;
    let pool_size = v.mbufs;
    let pool = Mempool::new(&eal, "pkt", pool_size, d.mbuf_cache, 2048 + 128, SocketId(-1))?;
    let mut rx_by_worker: Vec<Vec<RxQueue>> = (0..nworkers).map(|_| Vec::new()).collect();
    let mut tx_by_worker: Vec<Vec<TxQueue>> = (0..nworkers).map(|_| Vec::new()).collect();
    let mut port_rts = Vec::new();
    for (mut p, vp) in ports.into_iter().zip(&v.ports) {
        let info = p.info()?;
        if info.max_rx_queues < nworkers || info.max_tx_queues < nworkers {
            return Err(RunError::Config(Problems(vec![problem(
                "dataplane.workers",
                format!(
                    "{} workers need {} rx and tx queues, but port {} ({}) has at most {} rx / {} tx (for net_af_packet, set qpairs=N on the --vdev)",
                    nworkers, nworkers, vp.id, info.name, info.max_rx_queues, info.max_tx_queues
                ),
            )])));
        }
        let pc = PortConfig {
            rx_queues: nworkers,
            tx_queues: nworkers,
            rx_desc: d.rx_desc,
            tx_desc: d.tx_desc,
            mtu: vp.mtu,
            mac: vp.mac.map(|m| m.0),
            promiscuous: vp.promiscuous,
        };
        let (rxqs, txqs) = p.configure(&pc, &pool)?;
        for (w, q) in rxqs.into_iter().enumerate() {
            rx_by_worker[w].push(q);
        }
        for (w, q) in txqs.into_iter().enumerate() {
            tx_by_worker[w].push(q);
        }
        p.start()?;
        // The configured MAC is the one we answer to; if the device could not take it, the port runs
        // promiscuous and the presence stage filters in software.
        let mac = match vp.mac {
            Some(m) => m,
            None => MacAddr(p.mac()?),
        };
        let name = vp.name.clone().unwrap_or_else(|| info.name.clone());
        log::info!(
            "port {} ({}, driver {}) up: mac {}, addresses {:?}, {} queue(s)",
            vp.id,
            name,
            info.driver,
            mac,
            vp.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            nworkers
        );
        port_rts.push(PortRt {
            port: p,
            name,
            mac,
            addrs: vp.addrs.clone(),
        });
    }

    // Read-only tables for workers.
    let macs: Vec<MacAddr> = port_rts.iter().map(|p| p.mac).collect();
    let tables = Tables::build(&v, &macs);
    let presence = (*tables.presence).clone();

    let now = pmd_bindings::rdtsc();
    let shared = Arc::new(Shared {
        stop: stop.clone(),
        workers: d.workers.iter().map(|l| WorkerShared::new(*l, now)).collect(),
        control: ControlShared::default(),
        neigh: ArcSwap::from_pointee(NeighSnapshot::default()),
        neigh_gen: AtomicU64::new(0),
        ports: port_rts,
        presence,
        pool,
        pool_size,
        tsc_hz: eal.tsc_hz(),
        started: Instant::now(),
        dpdk_version: pmd_bindings::version(),
        handoff: Handoff::new(nworkers as usize, v.handoff_ring as usize),
        overlay_addr: v.overlay.as_ref().map(|o| o.address),
        nat: v.nat.as_ref().map(|n| n.cfg.clone()),
        tables: ArcSwap::from_pointee(tables),
        tables_gen: AtomicU64::new(0),
        probe_replies: (0..nworkers).map(|_| crossbeam_queue::ArrayQueue::new(1024)).collect(),
        paths: ArcSwap::from_pointee(Vec::new()),
    });
    if let Some(o) = &v.overlay {
        log::info!("overlay: node {} is a {} at {}", o.node, o.role_name(), o.address);
        if let RoleSpec::Edge(s, _) | RoleSpec::Gateway(s) = &o.role {
            for (d, set) in s.dests.iter().zip(&s.sets) {
                let paths: Vec<String> = set
                    .paths()
                    .iter()
                    .map(|p| format!("{} via {}", p.id, p.relay))
                    .collect();
                log::info!("overlay: toward node {d}: paths {}", paths.join(", "));
            }
        }
    }
    if let Some(n) = &shared.nat {
        log::info!(
            "full NAT: pool {:?}, {} sessions per worker, port slices {:?}, session tables {:.1} MiB per worker",
            n.pool.addrs(),
            n.max_sessions,
            (0..nworkers).map(|w| n.pool.slice(w)).collect::<Vec<_>>(),
            n.pool.table_bytes(n.max_sessions, 0) as f64 / (1u64 << 20) as f64
        );
    }

    let to_control: Vec<Arc<ToControl>> = (0..nworkers).map(|_| Arc::new(ToControl::new(1024))).collect();
    let to_workers: Vec<Arc<ToWorker>> = (0..nworkers).map(|_| Arc::new(ToWorker::new(256))).collect();
    let n = &v.neighbour;
    let ncfg = NeighConfig {
        reachable_ns: n.reachable_secs as u64 * 1_000_000_000,
        retrans_ns: n.retrans_ms as u64 * 1_000_000,
        max_probes: n.max_probes,
        max_entries: n.max_entries as usize,
    };
    let control = Control::new(
        shared.clone(),
        ncfg,
        &v.statics,
        to_control.clone(),
        to_workers[0].clone(),
        pool,
    );
    let control_thread = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || control.run())
        .map_err(|e| RunError::Fatal(format!("spawning the control thread: {e}")))?;
    let sh = shared.clone();
    let debug = v.management.debug;
    let mgmt_thread = std::thread::Builder::new()
        .name("management".into())
        .spawn(move || crate::mgmt::run(server, sh, debug, reloader))
        .map_err(|e| RunError::Fatal(format!("spawning the management thread: {e}")))?;
    log::info!("management endpoint on http://{}", v.management.listen);

    let main_lcore = eal.main_lcore();
    let mut on_main = None;
    let mut launched = Vec::new();
    for (idx, ((rxqs, txqs), lcore)) in rx_by_worker
        .into_iter()
        .zip(tx_by_worker)
        .zip(d.workers.iter())
        .enumerate()
    {
        let w = Worker {
            idx,
            shared: shared.clone(),
            rxqs,
            txqs,
            to_control: to_control[idx].clone(),
            from_control: to_workers[idx].clone(),
            idle: d.idle,
            idle_max_us: d.idle_max_us as u64,
            hold_packets: n.hold_packets as usize,
            hold_cycles: n.hold_ms as u64 * (shared.tsc_hz / 1000),
        };
        if LcoreId(*lcore) == main_lcore {
            on_main = Some(w);
        } else {
            eal.launch(LcoreId(*lcore), move || w.run())?;
            launched.push(LcoreId(*lcore));
        }
    }
    log::info!(
        "{} worker(s) started ({:?} idle mode); SIGINT/SIGTERM to stop",
        nworkers,
        d.idle
    );
    match on_main {
        Some(w) => {
            w.run();
        }
        None => {
            while !stop.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    stop.store(true, Relaxed);
    for l in launched {
        eal.wait(l);
    }
    let _ = control_thread.join();
    let _ = mgmt_thread.join();
    // Every worker has stopped: free what is still in the hand-off rings.
    for w in 0..nworkers as usize {
        shared.handoff.recv(w, usize::MAX, drop);
    }

    print_summary(&shared);
    for p in &shared.ports {
        if let Err(e) = p.port.stop().and_then(|_| p.port.close()) {
            log::warn!("port {}: {e}", p.port.id().0);
        }
    }
    drop(eal);
    Ok(())
}

/// Final per-port and per-core counters, printed on the way out.
fn print_summary(sh: &Shared) {
    println!("=== final counters ===");
    for p in &sh.ports {
        let s = p.port.stats().unwrap_or_default();
        println!(
            "port {} ({}): rx {} pkts {} bytes, tx {} pkts {} bytes, rx_missed {}, rx_errors {}, tx_errors {}, rx_nombuf {}",
            p.port.id().0,
            p.name,
            s.rx_packets,
            s.rx_bytes,
            s.tx_packets,
            s.tx_bytes,
            s.rx_missed,
            s.rx_errors,
            s.tx_errors,
            s.rx_nombuf
        );
    }
    for (i, w) in sh.workers.iter().enumerate() {
        let s = w.snapshot();
        println!(
            "worker {} (lcore {}): rx {}, tx {}, consumed {}, dropped {}, idle sleeps {}",
            i,
            s.lcore,
            s.rx,
            s.tx,
            s.consumed,
            s.drops.total(),
            s.idle_sleeps
        );
        for (stage, r, c) in s.drops.nonzero() {
            println!("  drop {} at {}: {}", r.name(), stage.name(), c);
        }
        if sh.nat.is_some() {
            println!(
                "  nat: sessions live tcp/udp/icmp {:?}, created {:?}, expired {:?}, translated out {} in {}, handoffs out {} in {}",
                s.nat_live, s.nat.created, s.nat.expired, s.nat.translated_out, s.nat.translated_in, s.handoff_out, s.handoff_in
            );
        }
    }
    let tables = sh.tables.load();
    if !tables.path_names.is_empty() {
        for (i, w) in sh.workers.iter().enumerate() {
            let (c, streams) = w.dedupe();
            println!(
                "worker {i} dedupe: streams {streams}, passed {}, discarded {}, out of order {}, rogue {}, lost {}, resets {}",
                c.passed, c.discarded, c.out_of_order, c.rogue, c.lost, c.resets
            );
        }
        for (id, name) in &tables.path_names {
            let (rx, tx) = sh.workers.iter().fold((0, 0), |(r, t), w| {
                let (a, b) = w.path(*id);
                (r + a, t + b)
            });
            println!("path {id} ({name}): sent {tx}, received {rx}");
        }
    }
    println!("mempool: {} of {} buffers in use", sh.pool.in_use(), sh.pool_size);
}
