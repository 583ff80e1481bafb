//! The overlay end to end (issue 5), in the namespace network of `scripts/overlay-net.sh`: a client, an edge,
//! two relays in different regions behind a kernel router namespace, a gateway with full NAT and a target
//! server, every appliance this crate's binary on net_af_packet. Namespaces and DPDK prefixes carry the
//! test's PID and are removed on drop, also when a test fails; the tests run one at a time (nextest group
//! `overlay`).
mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/overlay-net.sh");
const VIP: &str = "10.10.0.100";
/// The application's name, which the client resolves through the mapper (to the VIP).
const HOST: &str = "app.overlay.test";
const NODES: [&str; 4] = ["edge", "r1", "r2", "gw"];

/// The running network; torn down on drop.
struct Net {
    id: String,
    dir: TempDir,
}

/// A background process, killed on drop.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Net {
    /// Brings the network up (the `mapper` binary must have been built next to the appliance's: nextest
    /// builds the whole workspace).
    fn up(workers: u32) -> Net {
        Self::up_with(workers, 2)
    }

    /// `relays`: 2, or 3 (relay 3 joins and the edge and gateway select 2 of 3 paths from probes).
    fn up_with(workers: u32, relays: u32) -> Net {
        let id = std::process::id().to_string();
        let net = Net {
            id: id.clone(),
            dir: TempDir::new("ovl"),
        };
        let out = run_bounded(
            Command::new("bash")
                .arg(SCRIPT)
                .args(["up", &id, BIN])
                .arg(&net.dir.0)
                .arg(workers.to_string())
                .arg(relays.to_string()),
            Duration::from_secs(90),
        );
        assert!(
            out.status.success(),
            "overlay-net.sh up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        net
    }

    fn ns(&self, n: &str) -> String {
        format!("ov{}-{n}", self.id)
    }

    fn script(&self, args: &[&str]) {
        let out = run_bounded(
            Command::new("bash")
                .arg(SCRIPT)
                .arg(args[0])
                .arg(&self.id)
                .args(&args[1..]),
            Duration::from_secs(20),
        );
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `args` in namespace `n`, bounded by `limit`.
    fn exec(&self, n: &str, args: &[&str], limit: Duration) -> std::process::Output {
        run_bounded(
            Command::new("ip").args(["netns", "exec", &self.ns(n)]).args(args),
            limit,
        )
    }

    /// Starts `args` in namespace `n` in the background, output to `DIR/log`.
    fn spawn(&self, n: &str, args: &[&str], log: &str) -> Bg {
        let f = File::create(self.dir.path(log)).unwrap();
        Bg(Command::new("ip")
            .args(["netns", "exec", &self.ns(n)])
            .args(args)
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn"))
    }

    /// The node's /metrics, whole: a scrape that failed (a management thread slow to answer on a loaded
    /// machine) is tried again, up to five times, rather than read as all zeros.
    fn metrics(&self, node: &str) -> String {
        let mut text = String::new();
        for _ in 0..5 {
            let out = self.exec(
                node,
                &["curl", "-sf", "-m", "3", "http://127.0.0.1:9100/metrics"],
                Duration::from_secs(5),
            );
            text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && text.ends_with('\n') {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        text
    }

    fn metric(&self, node: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.metrics(node), name, labels).unwrap_or(0.0)
    }

    fn dedupe(&self, node: &str, result: &str) -> f64 {
        self.metric(node, "appliance_dedupe_packets_total", &[("result", result)])
    }

    fn path_pkts(&self, node: &str, path: &str, dir: &str) -> f64 {
        self.metric(
            node,
            "appliance_overlay_path_packets_total",
            &[("path", path), ("direction", dir)],
        )
    }

    fn drops(&self, node: &str, reason: &str) -> f64 {
        self.metric(node, "appliance_drops_total", &[("reason", reason)])
    }

    /// Python's http.server on port 8080 of `addr` in the server namespace, serving `dir`.
    fn http_server(&self, addr: &str, dir: &Path, log: &str) -> Bg {
        let args = [
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            addr,
            "--directory",
            dir.to_str().unwrap(),
        ];
        self.spawn("srv", &args, log)
    }

    /// An HTTP server on the target serving `DIR/www` (with a 50 MB file `blob`); returns its sha256.
    fn serve_blob(&self, mb: u32) -> (Bg, String) {
        let www = self.dir.path("www");
        std::fs::create_dir_all(&www).unwrap();
        let blob = www.join("blob");
        let out = run_bounded(
            Command::new("dd")
                .arg("if=/dev/urandom")
                .arg(format!("of={}", blob.display()))
                .args(["bs=1M", &format!("count={mb}"), "status=none"]),
            Duration::from_secs(30),
        );
        assert!(out.status.success());
        let want = sha256(&blob);
        let server = self.http_server("10.20.0.10", &www, "http.log");
        let up = wait_for(Duration::from_secs(10), || {
            let o = self.exec(
                "srv",
                &["curl", "-s", "-o", "/dev/null", "-m", "2", "http://10.20.0.10:8080/"],
                Duration::from_secs(5),
            );
            o.status.success().then_some(())
        });
        assert!(up.is_some(), "http.server did not start");
        (server, want)
    }

    /// Prints every appliance's overlay counters (for the test log).
    fn report(&self, what: &str) {
        eprintln!("--- {what}");
        for n in NODES {
            let m = self.metrics(n);
            if m.is_empty() {
                // No answer from its management endpoint: say what its log ends with.
                let err = std::fs::read_to_string(self.dir.path(&format!("{n}.err"))).unwrap_or_default();
                let tail: Vec<&str> = err.lines().rev().take(15).collect();
                eprintln!("{n}: no metrics; {n}.err ends with:");
                for l in tail.iter().rev() {
                    eprintln!("{n}!  {l}");
                }
            }
            for line in m.lines().filter(|l| {
                !l.starts_with('#')
                    && !l.ends_with(" 0")
                    && (l.contains("dedupe_packets")
                        || l.contains("path_packets")
                        || l.contains("drops_total")
                        || l.contains("nat_sessions_created")
                        || l.contains("worker_tx_packets")
                        || l.contains("mempool_in_use"))
            }) {
                eprintln!("{n}: {line}");
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = run_bounded(
            Command::new("bash")
                .arg(SCRIPT)
                .args(["down", &self.id])
                .arg(&self.dir.0),
            Duration::from_secs(30),
        );
    }
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Downloads `http://VIP/blob` in the client namespace; returns the sha256 of what arrived.
fn download(net: &Net, name: &str) -> String {
    let got = net.dir.path(name);
    let url = format!("http://{HOST}/blob");
    let args = ["curl", "-s", "-f", "-m", "60", "-o", got.to_str().unwrap(), &url];
    let out = net.exec("cl", &args, Duration::from_secs(70));
    assert!(
        out.status.success(),
        "curl failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    sha256(&got)
}

/// Starts downloading `http://HOST/blob` at 5 MB/s in the background (about 10 s for 50 MB); returns curl
/// and where the file goes.
fn slow_download(net: &Net) -> (Bg, std::path::PathBuf) {
    let got = net.dir.path("got");
    let url = format!("http://{HOST}/blob");
    let args = [
        "curl",
        "-s",
        "-f",
        "-m",
        "90",
        "--limit-rate",
        "5M",
        "-o",
        got.to_str().unwrap(),
        &url,
    ];
    (net.spawn("cl", &args, "curl.log"), got)
}

/// The IPv4 addresses seen in a tcpdump text capture (`-n`, lines "IP a.b.c.d.port > e.f.g.h.port: ...").
fn addresses(capture: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for line in capture.lines() {
        let Some(rest) = line.split(" IP ").nth(1) else {
            continue;
        };
        let mut it = rest.split_whitespace();
        for tok in [it.next(), it.nth(1)].into_iter().flatten() {
            let tok = tok.trim_end_matches(':');
            let parts: Vec<&str> = tok.split('.').collect();
            if parts.len() >= 4 {
                set.insert(parts[..4].join("."));
            }
        }
    }
    set
}

/// Mempool in use per appliance.
fn in_use(net: &Net) -> Vec<f64> {
    NODES
        .iter()
        .map(|n| net.metric(n, "appliance_mempool_in_use", &[]))
        .collect()
}

#[test]
fn download_through_two_paths_with_nat_and_dedupe() {
    // The edge and the gateway run two workers on qpairs=2: kernel fanout spreads the copies over both
    // queues, so streams owned by the other worker are handed over for real, at both ends.
    let net = Net::up(2);
    let idle = in_use(&net);
    let (_server, want) = net.serve_blob(50);
    // Captures: the target must see only the pool address, the client only the VIP.
    let cap_srv = net.spawn(
        "srv",
        &["tcpdump", "-n", "-l", "-i", "eth0", "-c", "2000", "ip"],
        "srv.cap",
    );
    let cap_cl = net.spawn(
        "cl",
        &["tcpdump", "-n", "-l", "-i", "eth0", "-c", "2000", "ip"],
        "cl.cap",
    );
    std::thread::sleep(Duration::from_millis(500));
    // The client finds the application by name: the system resolver asks the mapper.
    let o = net.exec("cl", &["getent", "hosts", HOST], Duration::from_secs(5));
    let line = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(line.starts_with(VIP), "getent hosts {HOST}: {line}");
    let t0 = Instant::now();
    let got = download(&net, "got");
    eprintln!("50 MB in {:.2} s", t0.elapsed().as_secs_f64());
    assert_eq!(got, want, "sha256 of the download");
    std::thread::sleep(Duration::from_millis(500));
    drop((cap_srv, cap_cl));
    net.report("after the download");

    // Both relays carried copies, both ways.
    for (node, path, dir) in [
        ("gw", "1", "rx"),
        ("gw", "2", "rx"),
        ("edge", "3", "rx"),
        ("edge", "4", "rx"),
    ] {
        let n = net.path_pkts(node, path, dir);
        assert!(n > 1000.0, "{node} received {n} packets on path {path}");
    }
    for r in ["r1", "r2"] {
        let tx = net.metric(r, "appliance_worker_tx_packets_total", &[]);
        assert!(tx > 1000.0, "relay {r} forwarded {tx}");
    }
    // About as many discarded as passed at both ends (ARCHITECTURE.md test contract).
    std::thread::sleep(Duration::from_millis(100));
    for node in ["gw", "edge"] {
        let text = net.metrics(node);
        let dedupe = |r| metric(&text, "appliance_dedupe_packets_total", &[("result", r)]).unwrap_or(0.0);
        let (p, d, lost) = (dedupe("passed"), dedupe("discarded"), dedupe("lost"));
        eprintln!("{node}: passed {p}, discarded {d}, lost {lost}");
        assert!(p > 1000.0 && d >= 0.9 * p, "{node}: passed {p}, discarded {d}");
    }
    for node in ["gw", "edge"] {
        let h = net.metric(node, "appliance_handoff_packets_total", &[("direction", "in")]);
        eprintln!("{node} hand-offs between its two workers: {h}");
    }
    assert!(net.metric("gw", "appliance_nat_sessions_created_total", &[("proto", "tcp")]) >= 1.0);

    let srv = std::fs::read_to_string(net.dir.path("srv.cap")).unwrap();
    let cl = std::fs::read_to_string(net.dir.path("cl.cap")).unwrap();
    let (a_srv, a_cl) = (addresses(&srv), addresses(&cl));
    eprintln!("target saw {a_srv:?}; client saw {a_cl:?}");
    assert_eq!(
        a_srv,
        ["10.20.0.10", "10.20.0.100"].iter().map(|s| s.to_string()).collect(),
        "the target sees the pool address, never the client"
    );
    assert_eq!(
        a_cl,
        ["10.10.0.2", VIP].iter().map(|s| s.to_string()).collect(),
        "the client sees the VIP, never the target"
    );

    // A VIP port no application serves is dropped at the edge; overlay packets from a non-peer are dropped
    // at the relay and the gateway; all counted in /metrics.
    let before = net.drops("edge", "no_application");
    let o = net.exec(
        "cl",
        &["curl", "-s", "-m", "1", &format!("http://{VIP}:81/")],
        Duration::from_secs(5),
    );
    assert!(!o.status.success(), "port 81 must not answer");
    assert!(net.drops("edge", "no_application") > before);
    for (node, dst) in [("r1", "10.2.0.1"), ("gw", "10.4.0.1")] {
        let before = net.drops(node, "not_a_peer");
        // From the router namespace (10.x.0.254, not a peer): a well-formed overlay packet.
        let o = net.exec(
            "inet",
            &["python3", "-c", &forged_overlay(dst)],
            Duration::from_secs(10),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let after = wait_for(Duration::from_secs(3), || {
            let n = net.drops(node, "not_a_peer");
            (n >= before + 3.0).then_some(n)
        });
        assert!(after.is_some(), "{node} did not count not_a_peer drops");
    }

    // No mbuf leak: back to the idle level (within the per-core caches).
    let settled = wait_for(Duration::from_secs(5), || {
        let now = in_use(&net);
        now.iter().zip(&idle).all(|(n, i)| *n <= i + 512.0).then_some(now)
    });
    assert!(
        settled.is_some(),
        "mempools did not return to idle {idle:?}: {:?}",
        in_use(&net)
    );
}

/// A Python program that sends 3 well-formed overlay packets (Geneve + this project's option + an inner
/// IPv4/UDP packet) to `dst`:6081 from wherever it runs.
fn forged_overlay(dst: &str) -> String {
    format!(
        r#"
import socket, struct
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
payload = b'x' * 8
udp = struct.pack('!HHHH', 1234, 80, 8 + len(payload), 0) + payload
ip = bytearray(struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
    socket.inet_aton('10.10.0.2'), socket.inet_aton('10.10.0.100')))
ip[10:12] = struct.pack('!H', csum(bytes(ip)))
opt = struct.pack('!HBB', 0xFFF0, 0x81, 6) + struct.pack('!BBBBHHHHIQ', 0x10, 8, 1, 0, 1, 4, 0, 0, 1, 0)
gen = struct.pack('!BBH', len(opt) // 4, 0x40, 0x0800) + struct.pack('!I', 7 << 8) + opt
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(3):
    s.sendto(gen + bytes(ip) + udp, ('{dst}', 6081))
"#
    )
}

#[test]
fn download_survives_a_path_cut_in_the_middle() {
    let net = Net::up(1);
    let (_server, want) = net.serve_blob(50);
    // 50 MB at 5 MB/s: about 10 s. Relay 1's links go down once a fifth of the file has arrived (the
    // download must still be running then). A second after the cut (what was queued in rings by then has
    // drained), the cut path's counters must stop while the other path's go on.
    let (mut curl, got_path) = slow_download(&net);
    let progress = wait_for(Duration::from_secs(30), || {
        let n = net.path_pkts("edge", "4", "rx");
        (n > 7000.0).then_some(n)
    });
    assert!(progress.is_some(), "the download made no progress");
    net.script(&["cut", "r1"]);
    assert!(
        curl.0.try_wait().unwrap().is_none(),
        "the download ended before the cut"
    );
    std::thread::sleep(Duration::from_secs(1));
    let settled = (net.path_pkts("gw", "1", "rx"), net.path_pkts("edge", "3", "rx"));
    let other = net.path_pkts("edge", "4", "rx");
    eprintln!(
        "1 s after cutting relay 1: gw path-1 rx {}, edge path-3 rx {}, edge path-4 rx {other}",
        settled.0, settled.1
    );
    let status = wait_for(Duration::from_secs(80), || curl.0.try_wait().unwrap());
    assert!(status.is_some_and(|s| s.success()), "curl: {status:?}");
    let got = sha256(&got_path);
    assert_eq!(got, want, "sha256 of the download across the cut");
    std::thread::sleep(Duration::from_millis(300));
    net.report("after the cut download");
    let (p1, p3) = (net.path_pkts("gw", "1", "rx"), net.path_pkts("edge", "3", "rx"));
    let (p2, p4) = (net.path_pkts("gw", "2", "rx"), net.path_pkts("edge", "4", "rx"));
    eprintln!("at the end: gw rx path1 {p1} path2 {p2}; edge rx path3 {p3} path4 {p4}");
    assert!(
        settled.0 > 0.0 && settled.1 > 0.0,
        "both paths carried traffic before the cut"
    );
    assert_eq!((p1, p3), settled, "the cut path delivered packets after the cut");
    assert!(
        p4 > other + 5000.0,
        "the other path carried the rest of the transfer ({other} -> {p4})"
    );
    for node in ["gw", "edge"] {
        let lost = net.dedupe(node, "lost");
        if lost > 0.0 {
            // Where they went: each lost sequence number missed both paths, so at least one of its copies
            // was dropped by the receiver's af_packet ring (the kernel counted it on the veth; DPDK never
            // got it). Show the accounting, and require that it explains every loss.
            let drops = ring_drops(&net, node, "u0", "1");
            eprintln!("{node}: dedupe lost {lost}; af_packet ring drops on its underlay port: {drops}");
            assert!(
                lost <= drops,
                "{node}: {lost} lost but only {drops} ring drops to explain them"
            );
        }
    }
}

/// Frames the kernel delivered to veth `ifname` in `node`'s namespace that the appliance's port `port`
/// never received: drops in the af_packet ring (the kernel's veth counters do not show them).
fn ring_drops(net: &Net, node: &str, ifname: &str, port: &str) -> f64 {
    let port = if node == "gw" { "0" } else { port };
    let o = net.exec(
        node,
        &["ip", "-s", "-j", "link", "show", "dev", ifname],
        Duration::from_secs(5),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let kernel = v[0]["stats64"]["rx"]["packets"].as_f64().unwrap_or(0.0);
    let dpdk = net.metric(node, "appliance_port_rx_packets_total", &[("port", port)]);
    eprintln!("{node} {ifname}: kernel rx {kernel}, appliance port {port} rx {dpdk}");
    (kernel - dpdk).max(0.0)
}

/// Sends 1000 echo requests to the VIP at 100 per second; returns the packets lost.
fn ping_loss(net: &Net) -> u32 {
    let o = net.exec(
        "cl",
        &["ping", "-q", "-c", "1000", "-i", "0.01", "-W", "1", VIP],
        Duration::from_secs(40),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    let num = |w: &str| -> u32 {
        let i = line.find(w).unwrap();
        line[..i]
            .trim()
            .rsplit(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    let (sent, recv) = (num(" packets transmitted"), num(" received"));
    eprintln!("ping: {line}");
    assert_eq!(sent, 1000);
    sent - recv
}

#[test]
fn ten_percent_loss_on_each_path_is_hidden_by_the_other() {
    let net = Net::up(1);
    net.script(&["loss", "r1", "10"]);
    net.script(&["loss", "r2", "10"]);
    let two = ping_loss(&net);
    net.report("two lossy paths");
    // One path alone (relay 2 cut): about 19 % for the round trip.
    net.script(&["cut", "r2"]);
    let one = ping_loss(&net);
    eprintln!("1000 pings, 10 % loss per path and direction: lost {two} over two paths, {one} over one path");
    assert!(two <= 40, "two paths lost {two} of 1000 (at most 4 %)");
    assert!(
        one >= 100,
        "one lossy path lost only {one} of 1000: is the impairment in place?"
    );
}

#[test]
fn udp_at_50_mbits_crosses_the_overlay_without_loss() {
    let net = Net::up(1);
    let _server = net.spawn("srv", &["iperf3", "-s", "-B", "10.20.0.10", "-1"], "iperf3-s.log");
    std::thread::sleep(Duration::from_millis(500));
    let o = net.exec(
        "cl",
        &["iperf3", "-c", VIP, "-u", "-b", "50M", "-l", "1300", "-t", "10", "-J"],
        Duration::from_secs(40),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("iperf3 JSON ({e}): {text}"));
    let sum = &v["end"]["sum"];
    let (lost, jitter) = (sum["lost_percent"].as_f64(), sum["jitter_ms"].as_f64());
    eprintln!(
        "iperf3 -u 50M 10 s: {} packets, lost {:?} %, jitter {:?} ms",
        sum["packets"], lost, jitter
    );
    net.report("after iperf3");
    let lost = lost.expect("lost_percent in the iperf3 summary");
    assert!(jitter.is_some(), "jitter reported");
    assert!(lost < 1.0, "UDP loss {lost} % with both paths healthy");
}

/// GET `url` from the client namespace; the body, or None.
fn get_body(net: &Net, url: &str) -> Option<String> {
    let o = net.exec("cl", &["curl", "-s", "-f", "-m", "5", url], Duration::from_secs(8));
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// POST /reload on `node`: (status line code, body).
fn post_reload(net: &Net, node: &str) -> (String, String) {
    let o = net.exec(
        node,
        &[
            "curl",
            "-s",
            "-m",
            "5",
            "-X",
            "POST",
            "-w",
            "\n%{http_code}",
            "http://127.0.0.1:9100/reload",
        ],
        Duration::from_secs(8),
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_string(), body.to_string())
}

#[test]
fn reload_adds_an_application_and_moves_a_target_without_losing_a_ping() {
    let net = Net::up(1);
    // Two HTTP servers on the target host, telling who they are.
    let o = net.exec(
        "srv",
        &["ip", "addr", "add", "10.20.0.11/24", "dev", "eth0"],
        Duration::from_secs(5),
    );
    assert!(o.status.success());
    let mut servers = Vec::new();
    for (addr, who) in [("10.20.0.10", "ten"), ("10.20.0.11", "eleven")] {
        let d = net.dir.path(who);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("who"), format!("{who}\n")).unwrap();
        servers.push(net.http_server(addr, &d, &format!("http-{who}.log")));
    }
    let ten = wait_for(Duration::from_secs(10), || get_body(&net, &format!("http://{VIP}/who")));
    assert_eq!(ten.as_deref(), Some("ten"));

    // A ping runs across the reload: 400 echo requests at 100 per second.
    let ping = net.spawn("cl", &["ping", "-c", "400", "-i", "0.01", "-W", "1", VIP], "ping.log");
    std::thread::sleep(Duration::from_secs(1));
    let edge_conf = net.dir.path("edge.toml");
    let gw_conf = net.dir.path("gateway.toml");
    let (edge_old, gw_old) = (
        std::fs::read_to_string(&edge_conf).unwrap(),
        std::fs::read_to_string(&gw_conf).unwrap(),
    );
    // The edge gets application 8 at a new VIP; the gateway moves application 7 to 10.20.0.11 and adds 8.
    let edge_new = edge_old.clone()
        + r#"
[[overlay.apps]]
id = 8
vip = "10.10.0.101"
gateway = 4
services = [{ proto = "tcp", port = 80 }]
"#;
    let gw_new = gw_old.replace(r#"targets = ["10.20.0.10"]"#, r#"targets = ["10.20.0.11"]"#)
        + r#"
[[nat.apps]]
id = 8
targets = ["10.20.0.10"]
services = [{ proto = "tcp", port = 80, target_port = 8080 }]
"#;
    assert!(
        gw_old.contains(r#"targets = ["10.20.0.10"]"#),
        "the gateway's target line"
    );
    std::fs::write(&edge_conf, &edge_new).unwrap();
    std::fs::write(&gw_conf, &gw_new).unwrap();
    let (code, body) = post_reload(&net, "edge");
    assert_eq!(code, "200", "edge reload: {body}");
    // The gateway by SIGHUP.
    let pid = std::fs::read_to_string(net.dir.path("gw.pid")).unwrap();
    let o = run_bounded(Command::new("kill").args(["-HUP", pid.trim()]), Duration::from_secs(5));
    assert!(o.status.success());
    let applied = wait_for(Duration::from_secs(5), || {
        (net.metric("gw", "appliance_config_reloads_total", &[("result", "applied")]) >= 1.0).then_some(())
    });
    assert!(applied.is_some(), "the gateway did not reload on SIGHUP");

    // The ping across both reloads lost nothing.
    let mut ping = ping;
    let status = wait_for(Duration::from_secs(15), || ping.0.try_wait().ok().flatten());
    assert!(status.is_some(), "ping did not finish");
    let log = std::fs::read_to_string(net.dir.path("ping.log")).unwrap();
    let summary = log
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .to_string();
    eprintln!("ping across the reloads: {summary}");
    assert!(
        summary.contains("400 received"),
        "ping lost packets across the reload: {summary}"
    );

    // New sessions use the new target; the new application answers at its VIP. (Retried: a first SYN may
    // wait for the gateway to resolve the new target by ARP, and the machine may be busy.)
    let moved = wait_for(Duration::from_secs(20), || get_body(&net, &format!("http://{VIP}/who")));
    assert_eq!(moved.as_deref(), Some("eleven"));
    let eight = wait_for(Duration::from_secs(20), || get_body(&net, "http://10.10.0.101/who"));
    assert_eq!(eight.as_deref(), Some("ten"), "application 8 at its new VIP");

    // An invalid configuration is refused with the field named; the old one keeps running.
    std::fs::write(
        &gw_conf,
        gw_new.replace(r#"targets = ["10.20.0.11"]"#, r#"targets = ["10.20.0.x"]"#),
    )
    .unwrap();
    let (code, body) = post_reload(&net, "gw");
    eprintln!("invalid reload: {code} {body}");
    assert_eq!(code, "400");
    assert!(body.contains("nat.apps[0].targets[0]"), "{body}");
    // So is a change that needs a restart.
    std::fs::write(&edge_conf, edge_new.replace("node = 1", "node = 9")).unwrap();
    let (code, body) = post_reload(&net, "edge");
    assert_eq!(code, "400");
    assert!(body.contains("overlay.node"), "{body}");
    assert_eq!(get_body(&net, &format!("http://{VIP}/who")).as_deref(), Some("eleven"));
    assert!(net.metric("gw", "appliance_config_reloads_total", &[("result", "refused")]) >= 1.0);

    // Read-only state: applications, path sets, NAT sessions, dedupe streams.
    for node in ["edge", "gw"] {
        let o = net.exec(
            node,
            &["curl", "-s", "-m", "3", "http://127.0.0.1:9100/state"],
            Duration::from_secs(5),
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("state JSON");
        assert!(
            v["overlay"]["path_sets"][0]["paths"]
                .as_array()
                .is_some_and(|p| p.len() == 2),
            "{v}"
        );
        assert!(v["workers"][0]["dedupe"]["streams"].as_u64().is_some(), "{v}");
        if node == "gw" {
            assert!(v["workers"][0]["nat"]["sessions"]["tcp"].as_u64().is_some(), "{v}");
            assert_eq!(v["nat_applications"].as_array().map(|a| a.len()), Some(2), "{v}");
        } else {
            assert_eq!(v["overlay"]["applications"].as_array().map(|a| a.len()), Some(2), "{v}");
        }
    }
    drop(servers);
}

/// A client that reaches the gateway directly, at an application's `vip` on the gateway's own target-side
/// network, not through the overlay: it is served as standalone full NAT serves it, and its replies are
/// routed straight back (not encapsulated toward an edge, which there is none of: node ids start at 1).
#[test]
fn a_client_at_the_gateways_own_vip_is_served_directly() {
    let net = Net::up(1);
    // The client is a second address of the target host, beside the server (10.20.0.10:8080).
    let o = net.exec(
        "srv",
        &["ip", "addr", "add", "10.20.0.20/24", "dev", "eth0"],
        Duration::from_secs(5),
    );
    assert!(o.status.success());
    let www = net.dir.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("who"), "ten\n").unwrap();
    let _server = net.http_server("10.20.0.10", &www, "http.log");
    let gw_conf = net.dir.path("gateway.toml");
    let gw = std::fs::read_to_string(&gw_conf).unwrap()
        + r#"
[[nat.apps]]
id = 9
vip = "10.20.0.200"
targets = ["10.20.0.10"]
services = [{ proto = "tcp", port = 80, target_port = 8080 }]
"#;
    std::fs::write(&gw_conf, gw).unwrap();
    let (code, body) = post_reload(&net, "gw");
    assert_eq!(code, "200", "gateway reload: {body}");
    let get = || {
        let o = net.exec(
            "srv",
            &[
                "curl",
                "-s",
                "-f",
                "-m",
                "3",
                "--interface",
                "10.20.0.20",
                "http://10.20.0.200/who",
            ],
            Duration::from_secs(6),
        );
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Retried: the first SYN may wait for the gateway to resolve the client by ARP.
    let body = wait_for(Duration::from_secs(20), get);
    net.report("direct client");
    assert_eq!(body.as_deref(), Some("ten"), "the direct client gets its answer");
    assert_eq!(net.drops("gw", "no_path"), 0.0, "no reply was sent toward the overlay");
    assert!(
        net.metric("gw", "appliance_nat_sessions_created_total", &[("proto", "tcp")]) >= 1.0,
        "the connection went through the gateway's NAT"
    );
}

/// Path ids selected at `node` (edge: 1, 2, 5 toward the gateway; gateway: 3, 4, 6 toward the edge).
fn selected(net: &Net, node: &str) -> BTreeSet<u8> {
    let m = net.metrics(node);
    (1..=6u8)
        .filter(|id| metric(&m, "appliance_path_selected", &[("path", &id.to_string())]) == Some(1.0))
        .collect()
}

#[test]
fn path_set_moves_off_a_lossy_relay_and_a_transfer_goes_on() {
    // Three relays in three regions; the edge and gateway use the best 2 (probes every 50 ms).
    let net = Net::up_with(1, 3);
    let (_server, want) = net.serve_blob(50);
    let (mut curl, got_path) = slow_download(&net);
    // Probes answered on every path first.
    let measured = wait_for(Duration::from_secs(10), || {
        let m = net.metrics("edge");
        [1, 2, 5]
            .iter()
            .all(|id| metric(&m, "appliance_path_rtt_seconds", &[("path", &id.to_string())]).is_some())
            .then_some(())
    });
    assert!(measured.is_some(), "probes were not answered on every path");
    // Changes are counted from before the sets are read: a set may move by score at any time, and a move
    // between the two reads would otherwise be in the count already while the sets still looked unmoved.
    let changes = |n: &str| net.metric(n, "appliance_path_set_changes_total", &[]);
    let (edge_changes, gw_changes) = (changes("edge"), changes("gw"));
    let (edge_before, gw_before) = (selected(&net, "edge"), selected(&net, "gw"));
    eprintln!("selected before: edge {edge_before:?}, gateway {gw_before:?}");
    assert_eq!(edge_before.len(), 2);
    assert_eq!(gw_before.len(), 2);
    // A relay that both the edge's and the gateway's sets use (with three relays and two paths each, there
    // is always one; the sets may already have moved by score) turns lossy: 30 % of what it sends, both
    // directions.
    let (relay, edge_path, gw_path) = [("r1", 1u8, 3u8), ("r2", 2, 4), ("r3", 5, 6)]
        .into_iter()
        .find(|(_, e, g)| edge_before.contains(e) && gw_before.contains(g))
        .expect("a relay in both sets");
    net.script(&["loss", relay, "30"]);
    let t0 = Instant::now();
    let moved = wait_for(Duration::from_secs(10), || {
        let (e, g) = (selected(&net, "edge"), selected(&net, "gw"));
        (!e.contains(&edge_path) && !g.contains(&gw_path) && e.len() == 2 && g.len() == 2).then_some((e, g))
    });
    let took = t0.elapsed();
    let (edge_after, gw_after) = moved.unwrap_or_else(|| panic!("the path sets did not leave {relay}"));
    eprintln!(
        "{relay} at 30 % loss: edge {edge_before:?} -> {edge_after:?}, gateway {gw_before:?} -> {gw_after:?} in {:.2} s",
        took.as_secs_f64()
    );
    // The issue asks for 2 s; asserted with the test contract's margin of twice that.
    assert!(took <= Duration::from_secs(4), "the switch took {took:?}");
    assert!(changes("edge") > edge_changes && changes("gw") > gw_changes);
    assert!(
        curl.0.try_wait().unwrap().is_none(),
        "the download ended before the switch"
    );
    let status = wait_for(Duration::from_secs(80), || curl.0.try_wait().unwrap());
    assert!(
        status.is_some_and(|s| s.success()),
        "curl across the switch: {status:?}"
    );
    assert_eq!(sha256(&got_path), want, "sha256 of the download across the switch");
    net.report("after the path switch");
}
