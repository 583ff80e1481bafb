//! testpmd-style benchmark harness: each role's pipeline (relay, edge, gateway, and the edge -> relay ->
//! gateway chain on one core) measured on one worker core, beside `dpdk-testpmd` io forward in the same
//! invocation.
//!
//!   bench [EAL args] -- [--roles relay,edge] [--seconds 5] [--json FILE] [--smoke] ...
//!
//! Without `--child-*`, the process orchestrates: for each memory mode (no hugepages; hugepages when they
//! can be set up) it runs
//! 1. one child that measures every role in-process: the generator and sink on lcore 1 feed the worker on
//!    lcore 0 through `net_ring` (one ring port in, one out), a warm-up, a phase at full rate and one at
//!    half that rate (for latency), with per-second rx/tx/drop lines on stderr;
//! 2. per role, the same generator in one process feeding, over `net_memif`, first `dpdk-testpmd` in io
//!    forward mode on one forwarding core, then the role's worker in a process of its own: same generator,
//!    same driver, same cores, so the ratio compares like with like.
use clap::Parser;
use serde::Serialize;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod alloc;
mod roles;
mod run;

use pmd_bindings::{Eal, LcoreId, Mempool, Port, PortConfig, PortId, SocketId};
use roles::{Pipeline, Role};
use run::{GenSlot, Generator, Latency, Live};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

#[derive(Parser, Debug, Clone)]
#[command(about = "Per-role pipeline benchmark beside dpdk-testpmd (EAL args, then --, then these)")]
struct Opts {
    /// Roles to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Role::ALL.to_vec())]
    roles: Vec<Role>,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of warm-up before measuring (NAT sessions and dedupe streams get created).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Flows of the relay, edge and chain input.
    #[arg(long, default_value_t = 10_000)]
    flows: u32,
    /// Flows (so NAT sessions) of the gateway input; spread over 40 edges x 256 streams.
    #[arg(long, default_value_t = 1_000_000)]
    sessions: u32,
    /// Gateway input: probability that each copy is lost on its path.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Gateway input: share of packets whose second copy arrives (1: every packet twice).
    #[arg(long, default_value_t = 1.0)]
    dup_ratio: f64,
    /// Share of packets that open a new flow (gateway and chain: a new NAT session each).
    #[arg(long, default_value_t = 0.0)]
    new_flows: f64,
    /// Client packet size on the wire, FCS included (64 to 1500); overlay frames are 78 bytes longer.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(64..=1500))]
    size: u16,
    /// Hugepages: auto (use them when they can be set up), on, off.
    #[arg(long, default_value = "auto")]
    hugepages: String,
    /// Skip the net_memif comparison with dpdk-testpmd.
    #[arg(long)]
    no_testpmd: bool,
    /// Write every figure as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// A short run for CI: 1 s phases, 0.3 s warm-up, 20 000 sessions, 2 000 flows.
    #[arg(long)]
    smoke: bool,
    #[arg(long, hide = true)]
    child: Option<String>,
    #[arg(long, hide = true)]
    role: Option<Role>,
    #[arg(long, hide = true)]
    mode: Option<String>,
}

impl Opts {
    fn mix(&self) -> run::Mix {
        run::Mix {
            loss: self.loss,
            dup_ratio: self.dup_ratio,
            new_flows: self.new_flows,
        }
    }

    /// NAT sessions a gateway worker must hold: the standing flows, plus new ones for the whole run.
    fn nat_capacity(&self) -> usize {
        let extra = if self.new_flows > 0.0 {
            (self.new_flows * 30e6 * (self.warmup + 2.0 * self.seconds)) as usize
        } else {
            0
        };
        self.sessions as usize + extra
    }
}

#[derive(Debug, Clone, Serialize, Default)]
struct RoleReport {
    role: String,
    mode: String,
    seconds: f64,
    /// Input packets the worker took per second (millions), and output packets it sent.
    rx_mpps: f64,
    tx_mpps: f64,
    drops: u64,
    cycles_per_packet: f64,
    /// What one core could take at that cost (TSC Hz / cycles per packet), whatever the generator managed.
    capacity_mpps: f64,
    busy_percent: f64,
    /// The generator found the input ring full this often (the worker was the bottleneck).
    generator_ring_full: u64,
    latency_full_rate: Latency,
    half_rate_mpps: f64,
    latency_half_rate: Latency,
    mempool_before: u32,
    mempool_after: u32,
    allocations: u64,
    allocations_per_packet: f64,
    nat_sessions: u64,
    dedupe_passed: u64,
    dedupe_discarded: u64,
    dedupe_lost: u64,
    drop_reasons: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize, Default)]
struct MemifReport {
    role: String,
    mode: String,
    dut: String,
    /// Packets per second the DUT took from the generator, and sent back (millions).
    in_mpps: f64,
    out_mpps: f64,
}

#[derive(Debug, Serialize, Default)]
struct Report {
    machine: String,
    date: String,
    command: String,
    inprocess: Vec<RoleReport>,
    memif: Vec<MemifReport>,
    notes: Vec<String>,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let split = argv.iter().position(|a| a == "--");
    let (eal_args, own): (Vec<String>, Vec<String>) = match split {
        Some(i) => (argv[1..i].to_vec(), argv[i + 1..].to_vec()),
        None => (vec![], argv[1..].to_vec()),
    };
    let mut opts = Opts::parse_from(std::iter::once("bench".to_string()).chain(own));
    if opts.smoke {
        opts.seconds = opts.seconds.min(1.0);
        opts.warmup = opts.warmup.min(0.3);
        opts.sessions = opts.sessions.min(20_000);
        opts.flows = opts.flows.min(2_000);
    }
    let code = match opts.child.as_deref() {
        Some("inproc") => child_inproc(&eal_args, &opts),
        Some("gen") => child_gen(&eal_args, &opts),
        Some("dut") => child_dut(&eal_args, &opts),
        Some(other) => {
            eprintln!("unknown child mode {other}");
            2
        }
        None => orchestrate(&eal_args, &opts, &argv),
    };
    std::process::exit(code);
}

fn die(msg: impl std::fmt::Display) -> i32 {
    eprintln!("bench: {msg}");
    1
}

/// One port's rx and tx queue.
type Queues = (pmd_bindings::RxQueue, pmd_bindings::TxQueue);

/// What [`bring_up`] started: the EAL, the pool, the ports and each port's queues.
type Up = (Eal, Mempool, Vec<Port>, Vec<Queues>);

/// Starts the EAL and configures `ports` ports with one rx and one tx queue each.
fn bring_up(eal_args: &[String], ports: u16) -> Result<Up, String> {
    let args: Vec<String> = std::iter::once("bench".to_string())
        .chain(eal_args.iter().cloned())
        .collect();
    let eal = Eal::init(&args).map_err(|e| format!("EAL: {e}"))?;
    let pool = Mempool::new(&eal, "bench", 65535, 256, 2048 + 128, SocketId(-1)).map_err(|e| e.to_string())?;
    let (mut started, mut qs) = (Vec::new(), Vec::new());
    for p in 0..ports {
        let mut port = Port::new(&eal, PortId(p)).map_err(|e| format!("port {p}: {e}"))?;
        let cfg = PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: None,
            mac: None,
            promiscuous: false,
        };
        let (mut rx, mut tx) = port.configure(&cfg, &pool).map_err(|e| e.to_string())?;
        port.start().map_err(|e| e.to_string())?;
        qs.push((rx.remove(0), tx.remove(0)));
        started.push(port);
    }
    Ok((eal, pool, started, qs))
}

/// Prints rx/tx/drop rates once a second until `done`.
fn reporter(label: String, live: Arc<Live>, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last = (0u64, 0u64, 0u64, 0u64, Instant::now());
        let mut t = 0;
        while !done.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if last.4.elapsed() < Duration::from_secs(1) {
                continue;
            }
            t += 1;
            let (rx, tx, dr, full) = (
                live.rx.load(Relaxed),
                live.tx.load(Relaxed),
                live.drops.load(Relaxed),
                live.gen_full.load(Relaxed),
            );
            let s = last.4.elapsed().as_secs_f64();
            eprintln!(
                "  {label} {t:>3}s  rx-pps {:>11.0}  tx-pps {:>11.0}  drop-pps {:>9.0}  gen-ring-full/s {:>9.0}",
                (rx - last.0) as f64 / s,
                (tx - last.1) as f64 / s,
                (dr - last.2) as f64 / s,
                (full - last.3) as f64 / s
            );
            last = (rx, tx, dr, full, Instant::now());
        }
    })
}

/// One role measured in this process: generator on `gen_lcore`, worker here.
#[allow(clippy::too_many_arguments)]
fn measure_role(
    eal: &Eal,
    pool: Mempool,
    gen_lcore: LcoreId,
    wq: &mut (pmd_bindings::RxQueue, pmd_bindings::TxQueue),
    role: Role,
    opts: &Opts,
    mode: &str,
    slot: &GenSlot,
) -> RoleReport {
    let hz = eal.tsc_hz();
    let flows = if role == Role::Gateway {
        opts.sessions
    } else {
        opts.flows
    };
    let traffic = roles::traffic(role, flows, opts.size as usize);
    let mut pipe = Pipeline::new(role, opts.nat_capacity());
    let mempool_before = pool.in_use();
    let mut drops = pipelines::drop::DropCounts::default();
    let completions = Arc::new(run::Completions::new(8192));
    if let Some(g) = slot.lock().unwrap().as_mut() {
        g.reset(traffic);
        g.completions = Some(completions.clone());
    }
    let mut phase = |secs: f64, pps: Option<f64>, label: &str, pipe: &mut Pipeline| {
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::default());
        if let Some(g) = slot.lock().unwrap().as_mut() {
            g.hist.reset();
        }
        let (s2, l2, g2) = (stop.clone(), live.clone(), slot.clone());
        eal.launch(gen_lcore, move || {
            let mut g = g2.lock().unwrap().take().expect("generator");
            g.run(&s2, pps, &l2);
            *g2.lock().unwrap() = Some(g);
            0
        })
        .expect("launch generator");
        let done = Arc::new(AtomicBool::new(false));
        let rep = reporter(format!("{} {mode} {label}", role.name()), live.clone(), done.clone());
        let until = pmd_bindings::rdtsc() + (secs * hz as f64) as u64;
        let t = run::worker(
            pipe,
            &mut wq.0,
            &mut wq.1,
            &stop,
            until,
            hz,
            &live,
            &mut drops,
            Some(&*completions),
        );
        stop.store(true, Relaxed);
        eal.wait(gen_lcore);
        done.store(true, Relaxed);
        let _ = rep.join();
        // Let the worker take what is left in its input ring, then the sink what is left in its own.
        let never = AtomicBool::new(false);
        let flush = pmd_bindings::rdtsc() + hz / 20;
        let _ = run::worker(
            pipe,
            &mut wq.0,
            &mut wq.1,
            &never,
            flush,
            hz,
            &Live::default(),
            &mut drops,
            Some(&*completions),
        );
        let g = slot.lock().unwrap().take().expect("generator back");
        let mut g = g;
        g.drain_sink();
        while let Some(m) = completions.pop() {
            drop(m);
        }
        let lat = Latency::of(&g.hist);
        let full = g.full;
        *slot.lock().unwrap() = Some(g);
        (t, lat, full)
    };
    eprintln!("== {} ({mode}): warm-up {:.1} s", role.name(), opts.warmup);
    phase(opts.warmup, None, "warm-up", &mut pipe);
    let (full, lat_full, ring_full) = phase(opts.seconds, None, "full-rate", &mut pipe);
    let secs = full.cycles as f64 / hz as f64;
    let rx_pps = full.rx as f64 / secs;
    let (half, lat_half, _) = phase(opts.seconds, Some(rx_pps / 2.0), "half-rate", &mut pipe);
    let half_secs = half.cycles as f64 / hz as f64;
    let (passed, discarded, lost) = pipe.dedupe_counters();
    let mempool_after = pool.in_use();
    RoleReport {
        role: role.name().into(),
        mode: mode.into(),
        seconds: secs,
        rx_mpps: rx_pps / 1e6,
        tx_mpps: full.tx as f64 / secs / 1e6,
        drops: full.drops,
        cycles_per_packet: full.busy_cycles as f64 / full.rx.max(1) as f64,
        capacity_mpps: hz as f64 / (full.busy_cycles as f64 / full.rx.max(1) as f64).max(1.0) / 1e6,
        busy_percent: 100.0 * full.busy_cycles as f64 / full.cycles.max(1) as f64,
        generator_ring_full: ring_full,
        latency_full_rate: lat_full,
        half_rate_mpps: half.rx as f64 / half_secs / 1e6,
        latency_half_rate: lat_half,
        mempool_before,
        mempool_after,
        allocations: full.allocs + half.allocs,
        allocations_per_packet: (full.allocs + half.allocs) as f64 / (full.rx + half.rx).max(1) as f64,
        nat_sessions: pipe.nat_live(),
        dedupe_passed: passed,
        dedupe_discarded: discarded,
        dedupe_lost: lost,
        drop_reasons: pipelines::DropReason::ALL
            .iter()
            .filter(|r| drops.reason(**r) > 0)
            .map(|r| (r.name().to_string(), drops.reason(*r)))
            .collect(),
    }
}

/// Stops and closes the ports before the EAL goes.
fn shutdown(ports: &[Port]) {
    for port in ports {
        let _ = port.stop();
        let _ = port.close();
    }
}

fn child_inproc(eal_args: &[String], opts: &Opts) -> i32 {
    let (eal, pool, ports, mut qs) = match bring_up(eal_args, 2) {
        Ok(x) => x,
        Err(e) => return die(e),
    };
    // Port 0: generator -> worker; port 1: worker -> sink (a net_ring port hands its tx to its own rx).
    let (rx1, tx1) = qs.remove(1);
    let (rx0, tx0) = qs.remove(0);
    let mut wq = (rx0, tx1);
    let Some(gen_lcore) = (0..64)
        .map(LcoreId)
        .find(|l| *l != eal.main_lcore() && eal.lcore_enabled(*l))
    else {
        return die("the EAL needs a second lcore for the generator (-l 0-1)");
    };
    let mode = opts.mode.clone().unwrap_or_else(|| "custom".into());
    let first = opts.roles.first().copied().unwrap_or(Role::Relay);
    let empty = roles::traffic(first, 1, opts.size as usize);
    let slot: GenSlot = Arc::new(Mutex::new(Some(Generator::new(
        empty,
        pool,
        tx0,
        rx1,
        opts.mix(),
        eal.tsc_hz(),
    ))));
    let mut out = Vec::new();
    for role in &opts.roles {
        out.push(measure_role(&eal, pool, gen_lcore, &mut wq, *role, opts, &mode, &slot));
    }
    drop(slot.lock().unwrap().take());
    shutdown(&ports);
    println!("{}", serde_json::to_string(&out).unwrap_or_default());
    let _ = std::io::stdout().flush();
    0
}

/// Generator over net_memif (server side): feeds the DUT for warm-up + seconds, prints the rates.
fn child_gen(eal_args: &[String], opts: &Opts) -> i32 {
    let (eal, pool, ports, mut qs) = match bring_up(eal_args, 1) {
        Ok(x) => x,
        Err(e) => return die(e),
    };
    let port = &ports[0];
    let t0 = Instant::now();
    while !port.link().map(|l| l.up).unwrap_or(false) {
        if t0.elapsed() > Duration::from_secs(20) {
            return die("memif link never came up");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let role = opts.role.unwrap_or(Role::Relay);
    let flows = if role == Role::Gateway {
        opts.sessions
    } else {
        opts.flows
    };
    let (rx, tx) = qs.remove(0);
    let mut g = Generator::new(
        roles::traffic(role, flows, opts.size as usize),
        pool,
        tx,
        rx,
        opts.mix(),
        eal.tsc_hz(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(Live::default());
    let (s2, l2) = (stop.clone(), live.clone());
    let (warm, secs) = (opts.warmup, opts.seconds);
    let timer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(warm));
        let a = (l2.gen_tx.load(Relaxed), l2.sink_rx.load(Relaxed), Instant::now());
        std::thread::sleep(Duration::from_secs_f64(secs));
        let b = (l2.gen_tx.load(Relaxed), l2.sink_rx.load(Relaxed));
        let s = a.2.elapsed().as_secs_f64();
        s2.store(true, Relaxed);
        ((b.0 - a.0) as f64 / s, (b.1 - a.1) as f64 / s)
    });
    g.run(&stop, None, &live);
    let (inp, outp) = timer.join().unwrap_or((0.0, 0.0));
    g.drain_sink();
    println!("{{\"in_pps\":{inp},\"out_pps\":{outp}}}");
    let _ = std::io::stdout().flush();
    drop(g);
    shutdown(&ports);
    drop(eal);
    0
}

/// The role's worker on net_memif (client side), for warm-up + seconds + a margin.
fn child_dut(eal_args: &[String], opts: &Opts) -> i32 {
    let (eal, _pool, ports, mut qs) = match bring_up(eal_args, 1) {
        Ok(x) => x,
        Err(e) => return die(e),
    };
    let role = opts.role.unwrap_or(Role::Relay);
    let mut pipe = Pipeline::new(role, opts.nat_capacity());
    let hz = eal.tsc_hz();
    let until = pmd_bindings::rdtsc() + ((opts.warmup + opts.seconds + 6.0) * hz as f64) as u64;
    let stop = AtomicBool::new(false);
    let mut drops = pipelines::drop::DropCounts::default();
    let (mut rxq, mut txq) = qs.remove(0);
    let t = run::worker(
        &mut pipe,
        &mut rxq,
        &mut txq,
        &stop,
        until,
        hz,
        &Live::default(),
        &mut drops,
        None,
    );
    eprintln!("dut {}: rx {} tx {} drops {}", role.name(), t.rx, t.tx, t.drops);
    shutdown(&ports);
    0
}

/// What the hugepage set-up changed, to put back at the end.
#[derive(Default)]
struct HugeRestore {
    nr: Option<String>,
    unmount: bool,
}

impl Drop for HugeRestore {
    fn drop(&mut self) {
        if self.unmount {
            let _ = Command::new("umount").arg("/dev/hugepages").status();
        }
        if let Some(nr) = &self.nr {
            let _ = std::fs::write("/proc/sys/vm/nr_hugepages", nr);
        }
    }
}

fn hugepages_ready(want: &str, notes: &mut Vec<String>, restore: &mut HugeRestore) -> bool {
    if want == "off" {
        return false;
    }
    let total = || {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("HugePages_Total:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    if total() < 1024 {
        restore.nr = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").ok();
        let _ = std::fs::write("/proc/sys/vm/nr_hugepages", "1024");
    }
    let mounted = std::fs::read_to_string("/proc/mounts").is_ok_and(|m| m.contains("hugetlbfs"));
    if !mounted {
        let _ = std::fs::create_dir_all("/dev/hugepages");
        restore.unmount = Command::new("mount")
            .args(["-t", "hugetlbfs", "nodev", "/dev/hugepages"])
            .status()
            .is_ok_and(|s| s.success());
    }
    let ok = total() >= 512 && std::fs::read_to_string("/proc/mounts").is_ok_and(|m| m.contains("hugetlbfs"));
    if !ok {
        notes.push(format!(
            "hugepages could not be set up (HugePages_Total {}); runs without them only",
            total()
        ));
    }
    ok
}

fn orchestrate(user_eal: &[String], opts: &Opts, argv: &[String]) -> i32 {
    let me = std::env::current_exe().expect("own path");
    let mut report = Report {
        machine: machine(),
        date: String::from_utf8_lossy(
            &Command::new("date")
                .args(["-u", "+%Y-%m-%d %H:%M"])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default(),
        )
        .trim()
        .to_string(),
        command: argv.join(" "),
        ..Default::default()
    };
    let mut modes = vec![("no-huge", vec!["--no-huge".to_string(), "-m".into(), "1024".into()])];
    let mut restore = HugeRestore::default();
    if hugepages_ready(&opts.hugepages, &mut report.notes, &mut restore) {
        modes.push(("hugepages", vec!["--in-memory".to_string(), "-m".into(), "1024".into()]));
    }
    let lcores: Vec<String> = if user_eal.is_empty() {
        vec!["-l".into(), "0-1".into()]
    } else {
        user_eal.to_vec()
    };
    let base = |prefix: &str, mode: &[String]| -> Vec<String> {
        let mut v = vec![
            "--no-pci".to_string(),
            "--file-prefix".into(),
            prefix.into(),
            "--log-level".into(),
            "lib.eal:error".into(),
        ];
        v.extend(mode.iter().cloned());
        v
    };
    let own_opts = |o: &Opts| -> Vec<String> {
        let roles: Vec<&str> = o.roles.iter().map(|r| r.name()).collect();
        let mut v: Vec<String> = if o.smoke { vec!["--smoke".into()] } else { vec![] };
        v.extend([
            "--roles".into(),
            roles.join(","),
            "--seconds".into(),
            o.seconds.to_string(),
            "--warmup".into(),
            o.warmup.to_string(),
            "--flows".into(),
            o.flows.to_string(),
            "--sessions".into(),
            o.sessions.to_string(),
            "--loss".into(),
            o.loss.to_string(),
            "--dup-ratio".into(),
            o.dup_ratio.to_string(),
            "--new-flows".into(),
            o.new_flows.to_string(),
            "--size".into(),
            o.size.to_string(),
        ]);
        v
    };
    let pid = std::process::id();
    for (mode, margs) in &modes {
        // 1. Every role in one process over net_ring.
        let prefix = format!("bench{pid}{}", mode.replace('-', ""));
        let mut args = lcores.clone();
        args.extend(base(&prefix, margs));
        args.extend([
            "--vdev".into(),
            "net_ring0".into(),
            "--vdev".into(),
            "net_ring1".into(),
            "--".into(),
        ]);
        args.extend(own_opts(opts));
        args.extend(["--child".into(), "inproc".into(), "--mode".into(), mode.to_string()]);
        eprintln!("== in-process run ({mode}): {} {}", me.display(), args.join(" "));
        let out = Command::new(&me).args(&args).stderr(Stdio::inherit()).output();
        cleanup(&prefix);
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                match text.lines().last().map(serde_json::from_str::<Vec<serde_json::Value>>) {
                    Some(Ok(v)) => {
                        for r in v {
                            report.inprocess.push(from_value(r));
                        }
                    }
                    _ => report
                        .notes
                        .push(format!("in-process run ({mode}) printed no result: {text}")),
                }
            }
            Ok(o) => report
                .notes
                .push(format!("in-process run ({mode}) failed: {}", o.status)),
            Err(e) => report.notes.push(format!("in-process run ({mode}) did not start: {e}")),
        }
        // 2. Over net_memif: the same generator feeds testpmd, then the role's worker.
        if opts.no_testpmd {
            continue;
        }
        // The smoke run compares the relay only (CI time).
        let compared: Vec<Role> = if opts.smoke {
            vec![Role::Relay]
        } else {
            opts.roles.clone()
        };
        for role in &compared {
            for dut in ["testpmd", "role"] {
                match memif_pair(&me, *role, dut, margs, opts, &base, &own_opts) {
                    Ok((inp, outp)) => report.memif.push(MemifReport {
                        role: role.name().into(),
                        mode: mode.to_string(),
                        dut: if dut == "role" {
                            role.name().into()
                        } else {
                            "testpmd".into()
                        },
                        in_mpps: inp / 1e6,
                        out_mpps: outp / 1e6,
                    }),
                    Err(e) => report.notes.push(format!("memif {} {dut} ({mode}): {e}", role.name())),
                }
            }
        }
    }
    drop(restore);
    print_table(&report);
    if let Some(path) = &opts.json {
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&report).unwrap_or_default()) {
            return die(format!("writing {}: {e}", path.display()));
        }
    }
    let leaks = report
        .inprocess
        .iter()
        .any(|r| r.mempool_after > r.mempool_before + 2 * 256);
    let allocs = report.inprocess.iter().any(|r| r.allocations > 0);
    if report.inprocess.is_empty() || leaks || allocs {
        eprintln!("bench: no result, a mempool leak or allocations on the hot path (see the table)");
        return 1;
    }
    0
}

fn from_value(v: serde_json::Value) -> RoleReport {
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    let u = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let lat = |k: &str| {
        let l = v.get(k);
        let g = |n: &str| l.and_then(|l| l.get(n)).and_then(|x| x.as_f64()).unwrap_or(0.0);
        Latency {
            samples: l.and_then(|l| l.get("samples")).and_then(|x| x.as_u64()).unwrap_or(0),
            p50_us: g("p50_us"),
            p90_us: g("p90_us"),
            p99_us: g("p99_us"),
            p999_us: g("p999_us"),
            max_us: g("max_us"),
        }
    };
    RoleReport {
        role: v.get("role").and_then(|x| x.as_str()).unwrap_or("?").into(),
        mode: v.get("mode").and_then(|x| x.as_str()).unwrap_or("?").into(),
        seconds: f("seconds"),
        rx_mpps: f("rx_mpps"),
        tx_mpps: f("tx_mpps"),
        drops: u("drops"),
        cycles_per_packet: f("cycles_per_packet"),
        capacity_mpps: f("capacity_mpps"),
        busy_percent: f("busy_percent"),
        generator_ring_full: u("generator_ring_full"),
        latency_full_rate: lat("latency_full_rate"),
        half_rate_mpps: f("half_rate_mpps"),
        latency_half_rate: lat("latency_half_rate"),
        mempool_before: u("mempool_before") as u32,
        mempool_after: u("mempool_after") as u32,
        allocations: u("allocations"),
        allocations_per_packet: f("allocations_per_packet"),
        nat_sessions: u("nat_sessions"),
        dedupe_passed: u("dedupe_passed"),
        dedupe_discarded: u("dedupe_discarded"),
        dedupe_lost: u("dedupe_lost"),
        drop_reasons: v
            .get("drop_reasons")
            .and_then(|x| serde_json::from_value(x.clone()).ok())
            .unwrap_or_default(),
    }
}

/// Runs the generator (server) against a DUT (client) over net_memif; returns (in, out) packets/s.
#[allow(clippy::too_many_arguments)]
fn memif_pair(
    me: &std::path::Path,
    role: Role,
    dut: &str,
    margs: &[String],
    opts: &Opts,
    base: &dyn Fn(&str, &[String]) -> Vec<String>,
    own_opts: &dyn Fn(&Opts) -> Vec<String>,
) -> Result<(f64, f64), String> {
    let pid = std::process::id();
    let sock = format!("/tmp/bench-memif-{pid}-{}-{dut}.sock", role.name());
    let (gp, dp) = (format!("bg{pid}{}", role.name()), format!("bd{pid}{}", role.name()));
    let mut gargs = vec!["-l".to_string(), "0".into()];
    gargs.extend(base(&gp, margs));
    gargs.extend([
        "--vdev".into(),
        format!("net_memif0,role=server,socket={sock},id=0"),
        "--".into(),
    ]);
    let mut o = opts.clone();
    o.roles = vec![role];
    gargs.extend(own_opts(&o));
    gargs.extend(["--child".into(), "gen".into(), "--role".into(), role.name().into()]);
    let mut gen = Command::new(me)
        .args(&gargs)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    let mut dargs: Vec<String>;
    let mut dutp = if dut == "testpmd" {
        dargs = vec!["-l".into(), "0-1".into()];
        dargs.extend(base(&dp, margs));
        dargs.extend([
            "--vdev".into(),
            format!("net_memif0,role=client,socket={sock},id=0"),
            "--".into(),
            "--forward-mode=io".into(),
            "--nb-cores=1".into(),
            "--port-topology=loop".into(),
            "--stats-period=1".into(),
        ]);
        Command::new("dpdk-testpmd")
            .args(&dargs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("dpdk-testpmd: {e}"))?
    } else {
        dargs = vec!["-l".into(), "1".into()];
        dargs.extend(base(&dp, margs));
        dargs.extend([
            "--vdev".into(),
            format!("net_memif0,role=client,socket={sock},id=0"),
            "--".into(),
        ]);
        dargs.extend(own_opts(&o));
        dargs.extend(["--child".into(), "dut".into(), "--role".into(), role.name().into()]);
        Command::new(me)
            .args(&dargs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?
    };
    let limit = Instant::now() + Duration::from_secs_f64(opts.warmup + opts.seconds + 60.0);
    let status = loop {
        if let Some(s) = gen.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > limit {
            let _ = gen.kill();
            break gen.wait().map_err(|e| e.to_string())?;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = String::new();
    if let Some(mut out) = gen.stdout.take() {
        use std::io::Read;
        let _ = out.read_to_string(&mut text);
    }
    // SAFETY-free signal: ask the DUT to stop (testpmd prints and exits on SIGINT), then make sure.
    let _ = Command::new("kill").args(["-INT", &dutp.id().to_string()]).status();
    let t = Instant::now();
    while dutp.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = dutp.kill();
    let _ = dutp.wait();
    cleanup(&gp);
    cleanup(&dp);
    let _ = std::fs::remove_file(&sock);
    if !status.success() {
        return Err(format!("generator exited with {status}"));
    }
    let v: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| format!("{e}: {text}"))?;
    Ok((
        v.get("in_pps").and_then(|x| x.as_f64()).unwrap_or(0.0),
        v.get("out_pps").and_then(|x| x.as_f64()).unwrap_or(0.0),
    ))
}

fn cleanup(prefix: &str) {
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("?").trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cpu}, {n} vCPU")
}

fn print_table(r: &Report) {
    println!("Machine: {}; {}", r.machine, r.date);
    println!();
    println!("In-process (generator core -> net_ring -> worker core -> net_ring -> sink), 64-byte client packets:");
    println!();
    println!("| role | memory | Mpps in | Mpps out | cycles/pkt | capacity Mpps | worker busy | p50 / p99 µs (full rate) | half rate Mpps | p99 µs (half rate) | mempool before / after | allocs/pkt |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for x in &r.inprocess {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.0} | {:.1} | {:.0} % | {:.1} / {:.1} | {:.2} | {:.1} | {} / {} | {} |",
            x.role,
            x.mode,
            x.rx_mpps,
            x.tx_mpps,
            x.cycles_per_packet,
            x.capacity_mpps,
            x.busy_percent,
            x.latency_full_rate.p50_us,
            x.latency_full_rate.p99_us,
            x.half_rate_mpps,
            x.latency_half_rate.p99_us,
            x.mempool_before,
            x.mempool_after,
            x.allocations_per_packet
        );
    }
    if !r.memif.is_empty() {
        println!();
        println!("Over net_memif, the same generator process feeding dpdk-testpmd io forward (one forwarding core) or the role's worker:");
        println!();
        println!("| role | memory | testpmd Mpps in | role Mpps in | ratio |");
        println!("|---|---|---:|---:|---:|");
        for x in r.memif.iter().filter(|m| m.dut == "testpmd") {
            if let Some(y) = r
                .memif
                .iter()
                .find(|m| m.dut != "testpmd" && m.role == x.role && m.mode == x.mode)
            {
                println!(
                    "| {} | {} | {:.2} | {:.2} | {:.2} |",
                    x.role,
                    x.mode,
                    x.in_mpps,
                    y.in_mpps,
                    y.in_mpps / x.in_mpps.max(1e-9)
                );
            }
        }
    }
    for x in &r.inprocess {
        if !x.drop_reasons.is_empty() || x.nat_sessions > 0 || x.dedupe_passed > 0 {
            println!(
                "\n{} ({}): NAT sessions {}, dedupe passed {} discarded {} lost {}, drops {:?}",
                x.role, x.mode, x.nat_sessions, x.dedupe_passed, x.dedupe_discarded, x.dedupe_lost, x.drop_reasons
            );
        }
    }
    for n in &r.notes {
        println!("\nnote: {n}");
    }
}
