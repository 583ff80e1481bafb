//! The appliance in its own network namespace on net_af_packet (veth), a kernel host in another: the host
//! pings it 20 times and resolves it with arping; /metrics then shows the traffic. Namespace and veth
//! names carry the test's PID, and everything is removed on drop, even when the test fails.
mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// The appliance's namespace and kernel hosts, each joined to it by a veth pair; deleted on drop.
struct Topo {
    app: String,
    hosts: Vec<String>,
}

fn sh(args: &[&str]) {
    let out = run_bounded(Command::new(args[0]).args(&args[1..]), Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str], limit: Duration) -> std::process::Output {
    run_bounded(Command::new("ip").args(["netns", "exec", ns]).args(args), limit)
}

impl Topo {
    /// One host per entry of `host_addrs` (address with prefix): host i is joined to the appliance by
    /// `a{i}-PID` (appliance side, for net_af_packet) and `h{i}-PID` (host side).
    fn new(tag: &str, host_addrs: &[&str]) -> Topo {
        let id = std::process::id();
        let mut t = Topo {
            app: format!("{tag}a{id}"),
            hosts: vec![],
        };
        sh(&["ip", "netns", "add", &t.app]);
        sh(&["ip", "-n", &t.app, "link", "set", "lo", "up"]);
        for (i, addr) in host_addrs.iter().enumerate() {
            let host = format!("{tag}h{i}-{id}");
            let (va, vh) = (Self::app_if(i), format!("h{i}-{id}"));
            sh(&["ip", "netns", "add", &host]);
            t.hosts.push(host.clone());
            sh(&["ip", "link", "add", &va, "type", "veth", "peer", "name", &vh]);
            sh(&["ip", "link", "set", &va, "netns", &t.app]);
            sh(&["ip", "link", "set", &vh, "netns", &host]);
            sh(&["ip", "-n", &t.app, "link", "set", &va, "up"]);
            sh(&["ip", "-n", &host, "link", "set", "lo", "up"]);
            sh(&["ip", "-n", &host, "addr", "add", addr, "dev", &vh]);
            sh(&["ip", "-n", &host, "link", "set", &vh, "up"]);
            // af_packet must not see merged (GRO) frames; kernel peers must not leave checksums to offload.
            sh(&[
                "ip", "netns", "exec", &t.app, "ethtool", "-K", &va, "gro", "off", "tso", "off", "gso", "off", "tx",
                "off",
            ]);
            sh(&["ip", "netns", "exec", &host, "ethtool", "-K", &vh, "tx", "off"]);
        }
        t
    }

    fn app_if(i: usize) -> String {
        format!("a{i}-{}", std::process::id())
    }

    fn host_if(i: usize) -> String {
        format!("h{i}-{}", std::process::id())
    }

    /// Starts the appliance in its namespace with one net_af_packet port per host, one worker on lcore 0.
    fn start(&self, prefix: &str, dir: &TempDir, config: &str) -> Appliance {
        self.start_with(prefix, dir, config, "0", "")
    }

    /// As `start`, with an EAL core list and extra net_af_packet arguments (e.g. ",qpairs=2").
    fn start_with(&self, prefix: &str, dir: &TempDir, config: &str, lcores: &str, vdev_extra: &str) -> Appliance {
        let cfg = dir.write("appliance.toml", config);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.app, BIN])
            .args(eal_base(prefix, lcores));
        for i in 0..self.hosts.len() {
            cmd.arg("--vdev")
                .arg(format!("net_af_packet{i},iface={}{vdev_extra}", Self::app_if(i)));
        }
        cmd.args(["--", "--config"]).arg(&cfg);
        Appliance::spawn(cmd, prefix, dir)
    }

    /// GET on the appliance's management endpoint (loopback inside its namespace).
    fn curl(&self, path: &str) -> Option<String> {
        let url = format!("http://127.0.0.1:9100{path}");
        let o = in_ns(&self.app, &["curl", "-s", "-m", "2", &url], Duration::from_secs(5));
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn wait_healthy(&self, app: &Appliance) {
        assert!(
            wait_for(Duration::from_secs(20), || self
                .curl("/healthz")
                .filter(|b| b == "ok\n"))
            .is_some(),
            "appliance not healthy; stderr:\n{}",
            app.stderr()
        );
    }
}

/// 20 pings from `ns` to `target` at 20 per second; asserts that all 20 were answered.
fn ping_20(ns: &str, target: &str, app: &Appliance) -> String {
    let ping = in_ns(
        ns,
        &["ping", "-c", "20", "-i", "0.05", "-W", "2", target],
        Duration::from_secs(30),
    );
    let out = String::from_utf8_lossy(&ping.stdout).into_owned();
    println!("{out}");
    assert!(
        out.contains("20 packets transmitted, 20 received"),
        "{out}\nstderr:\n{}",
        app.stderr()
    );
    out
}

impl Drop for Topo {
    fn drop(&mut self) {
        for ns in std::iter::once(&self.app).chain(self.hosts.iter()) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn kernel_host_pings_and_arpings_the_appliance_on_af_packet() {
    let topo = Topo::new("p", &["10.77.0.1/24"]);
    let dir = TempDir::new("netns");
    let prefix = unique("netns");
    let mut app = topo.start(
        &prefix,
        &dir,
        r#"
[dataplane]
workers = [0]
idle = "adaptive"
rx_desc = 512
tx_desc = 512

[[ports]]
id = 0
addresses = ["10.77.0.2/24"]
"#,
    );
    topo.wait_healthy(&app);
    let host = &topo.hosts[0];

    ping_20(host, "10.77.0.2", &app);

    let arping = in_ns(
        host,
        &["arping", "-c", "3", "-w", "5", "-I", &Topo::host_if(0), "10.77.0.2"],
        Duration::from_secs(10),
    );
    let arping_out = String::from_utf8_lossy(&arping.stdout);
    println!("{arping_out}");
    assert!(
        arping.status.success() && arping_out.contains("Received 3 response(s)"),
        "{arping_out}"
    );

    let metrics = topo.curl("/metrics").expect("metrics");
    let rx = metric(&metrics, "appliance_port_rx_packets_total", &[("port", "0")]).unwrap();
    let tx = metric(&metrics, "appliance_port_tx_packets_total", &[("port", "0")]).unwrap();
    println!("port 0: rx {rx} tx {tx}");
    // 20 echo requests + 3 ARP requests (+ the kernel's own ARP before the first ping) in, replies out.
    assert!(rx >= 23.0, "rx {rx}");
    assert!(tx >= 23.0, "tx {tx}");
    assert_eq!(
        metric(&metrics, "appliance_drops_total", &[("reason", "icmp_unhandled")]),
        Some(0.0)
    );

    let (code, stdout) = app.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", app.stderr());
    println!("{stdout}");
}

#[test]
fn forwarding_between_two_hosts_resolves_next_hops_by_arp() {
    let topo = Topo::new("f", &["10.81.0.1/24", "10.82.0.1/24"]);
    sh(&[
        "ip",
        "-n",
        &topo.hosts[0],
        "route",
        "add",
        "10.82.0.0/24",
        "via",
        "10.81.0.2",
    ]);
    sh(&[
        "ip",
        "-n",
        &topo.hosts[1],
        "route",
        "add",
        "10.81.0.0/24",
        "via",
        "10.82.0.2",
    ]);
    let dir = TempDir::new("fwd");
    let prefix = unique("fwd");
    let mut app = topo.start(
        &prefix,
        &dir,
        r#"
[dataplane]
workers = [0]
forwarding = true
rx_desc = 512
tx_desc = 512

[neighbour]
retrans_ms = 200

[[ports]]
id = 0
addresses = ["10.81.0.2/24"]

[[ports]]
id = 1
addresses = ["10.82.0.2/24"]
"#,
    );
    topo.wait_healthy(&app);
    // Nothing is resolved yet: the first packets toward 10.82.0.1 wait in the hold queue for the ARP reply.
    let ping_out = ping_20(&topo.hosts[0], "10.82.0.1", &app);
    // Replies crossed the appliance with TTL decremented once.
    assert!(ping_out.contains("ttl=63"), "{ping_out}");

    let metrics = topo.curl("/metrics").expect("metrics");
    let m = |n: &str| metric(&metrics, n, &[]).unwrap();
    println!(
        "neighbour requests {} resolved {} entries {} published {}",
        m("appliance_neighbour_requests_total"),
        m("appliance_neighbour_resolved_total"),
        m("appliance_neighbour_entries"),
        m("appliance_neighbour_published")
    );
    assert!(m("appliance_neighbour_requests_total") >= 1.0);
    assert!(
        m("appliance_neighbour_resolved_total") >= 1.0,
        "the appliance resolved 10.82.0.1 itself"
    );
    assert!(m("appliance_neighbour_published") >= 2.0, "both hosts known");
    assert_eq!(
        metric(&metrics, "appliance_drops_total", &[("reason", "neighbour_unresolved")]),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, "appliance_drops_total", &[("reason", "hold_queue_full")]),
        Some(0.0)
    );
    let state = topo.curl("/state").expect("state");
    assert!(state.contains("\"ip\":\"10.82.0.1\""), "{state}");

    let (code, _) = app.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", app.stderr());
}

#[test]
fn two_workers_on_two_queue_pairs_answer_and_stop_cleanly() {
    let topo = Topo::new("q", &["10.83.0.1/24"]);
    let dir = TempDir::new("qpairs");
    let prefix = unique("qpairs");
    let mut app = topo.start_with(
        &prefix,
        &dir,
        r#"
[dataplane]
workers = [0, 1]
idle = "adaptive"
rx_desc = 512
tx_desc = 512

[[ports]]
id = 0
addresses = ["10.83.0.2/24"]
"#,
        "0-1",
        ",qpairs=2",
    );
    topo.wait_healthy(&app);
    ping_20(&topo.hosts[0], "10.83.0.2", &app);
    let metrics = topo.curl("/metrics").expect("metrics");
    // Both workers run (a heartbeat each); the kernel's fanout decides which queue a flow lands on.
    for w in ["0", "1"] {
        let age = metric(&metrics, "appliance_worker_heartbeat_age_seconds", &[("worker", w)]).unwrap();
        assert!(age < 1.0, "worker {w} heartbeat age {age}");
    }
    let rx = metric(&metrics, "appliance_worker_rx_packets_total", &[]).unwrap();
    assert!(rx >= 20.0, "rx {rx}");
    let (code, stdout) = app.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", app.stderr());
    assert!(stdout.contains("worker 1 (lcore 1)"), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("mempool:")).unwrap();
    assert!(line.starts_with("mempool: 0 of"), "{line}");
}

/// A background process killed (by PID) when dropped.
struct Bg(std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sha256(path: &std::path::Path) -> String {
    let o = run_bounded(Command::new("sha256sum").arg(path), Duration::from_secs(20));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn full_nat_with_two_workers_hands_replies_to_the_owning_worker() {
    // Client 10.84.0.1 -- [VIP 10.84.0.100] appliance [pool 10.85.0.100] -- target 10.85.0.1:8080.
    let topo = Topo::new("n", &["10.84.0.1/24", "10.85.0.1/24"]);
    let dir = TempDir::new("nat");
    let prefix = unique("nat");
    let www = dir.path("www");
    std::fs::create_dir_all(&www).unwrap();
    let file = www.join("blob");
    sh(&[
        "dd",
        "if=/dev/urandom",
        &format!("of={}", file.display()),
        "bs=64k",
        "count=16",
        "status=none",
    ]);
    let want = sha256(&file);
    let log = std::fs::File::create(dir.path("http.log")).unwrap();
    let _server = Bg(Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.hosts[1],
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "10.85.0.1",
        ])
        .arg("--directory")
        .arg(&www)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("http.server"));
    let mut app = topo.start_with(
        &prefix,
        &dir,
        r#"
[dataplane]
workers = [0, 1]
idle = "adaptive"
rx_desc = 512
tx_desc = 512

[neighbour]
retrans_ms = 200

[[ports]]
id = 0
addresses = ["10.84.0.2/24"]

[[ports]]
id = 1
addresses = ["10.85.0.2/24"]

[nat]
pool = ["10.85.0.100"]
max_sessions = 4096

[[nat.apps]]
id = 1
vip = "10.84.0.100"
targets = ["10.85.0.1"]
services = [{ proto = "tcp", port = 80, target_port = 8080 }]
"#,
        "0-1",
        ",qpairs=2",
    );
    topo.wait_healthy(&app);
    // The server listens once its port answers locally.
    assert!(
        wait_for(Duration::from_secs(10), || {
            let o = in_ns(
                &topo.hosts[1],
                &["curl", "-s", "-o", "/dev/null", "-m", "2", "http://10.85.0.1:8080/"],
                Duration::from_secs(5),
            );
            o.status.success().then_some(())
        })
        .is_some(),
        "http.server did not start"
    );

    // 16 downloads, each a new connection from a new client port: flows spread over both queues, and
    // replies land on the queue the kernel's fanout picks, often not the session owner's.
    const N: usize = 16;
    for i in 0..N {
        let out = dir.path(&format!("got{i}"));
        let o = in_ns(
            &topo.hosts[0],
            &[
                "curl",
                "-s",
                "-S",
                "-m",
                "20",
                "-o",
                out.to_str().unwrap(),
                "http://10.84.0.100/blob",
            ],
            Duration::from_secs(30),
        );
        assert!(
            o.status.success(),
            "download {i}: {}\nappliance:\n{}",
            String::from_utf8_lossy(&o.stderr),
            app.stderr()
        );
        assert_eq!(sha256(&out), want, "download {i} is intact");
    }
    // ICMP echo to the VIP reaches the target through NAT (query ids from the workers' slices).
    let ping = in_ns(
        &topo.hosts[0],
        &["ping", "-c", "5", "-i", "0.05", "-W", "2", "10.84.0.100"],
        Duration::from_secs(20),
    );
    let ping_out = String::from_utf8_lossy(&ping.stdout).into_owned();
    println!("{ping_out}");
    assert!(ping_out.contains("5 received"), "{ping_out}");
    assert!(
        ping_out.contains("ttl=63"),
        "the target answered, one hop away: {ping_out}"
    );

    // The target saw only the pool address.
    let served = std::fs::read_to_string(dir.path("http.log")).unwrap();
    let gets: Vec<&str> = served.lines().filter(|l| l.contains("GET /blob")).collect();
    assert_eq!(gets.len(), N, "{served}");
    assert!(gets.iter().all(|l| l.starts_with("10.85.0.100 ")), "{served}");

    let metrics = topo.curl("/metrics").expect("metrics");
    let m = |n: &str, l: &[(&str, &str)]| metric(&metrics, n, l).unwrap_or(-1.0);
    let created = m("appliance_nat_sessions_created_total", &[("proto", "tcp")]);
    let out = m("appliance_handoff_packets_total", &[("direction", "out")]);
    let inn = m("appliance_handoff_packets_total", &[("direction", "in")]);
    println!(
        "nat: tcp sessions created {created} (worker 0: {}, worker 1: {}), live {}, translated out {} in {}, handoffs out {out} in {inn}",
        m("appliance_nat_sessions_created_total", &[("proto", "tcp"), ("worker", "0")]),
        m("appliance_nat_sessions_created_total", &[("proto", "tcp"), ("worker", "1")]),
        m("appliance_nat_sessions", &[]),
        m("appliance_nat_translated_total", &[("direction", "out")]),
        m("appliance_nat_translated_total", &[("direction", "in")]),
    );
    assert_eq!(created, N as f64, "one session per connection");
    assert!(
        out > 0.0,
        "some replies arrived at the other worker and were handed over"
    );
    assert_eq!(out, inn, "every handed-off packet arrived");
    assert_eq!(m("appliance_drops_total", &[("reason", "handoff_full")]), 0.0);
    assert_eq!(m("appliance_drops_total", &[("reason", "nat_no_session")]), 0.0);
    let state = topo.curl("/state").expect("state");
    assert!(
        state.contains("\"handoffs\"") && state.contains("\"sessions\""),
        "{state}"
    );

    let (code, stdout) = app.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", app.stderr());
    println!("{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("mempool:")).unwrap();
    assert!(line.starts_with("mempool: 0 of"), "{line}");
}
