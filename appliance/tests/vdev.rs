//! The real binary on vdevs, one process per test (cargo-nextest), each with its own --file-prefix and
//! --no-pci: ARP and ICMP through net_pcap (compared as pcaps), malformed IPv4 counted by reason, and the
//! health endpoint turning non-200 when a worker stalls.
mod common;

use common::*;
use etherparse::{ArpEthIpv4Packet, ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv4Type, PacketBuilder};
use std::process::Command;
use std::time::Duration;

const ME: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const MY_IP: [u8; 4] = [10, 0, 0, 2];
const PEER_IP: [u8; 4] = [10, 0, 0, 1];

fn config(mgmt: u16, extra: &str) -> String {
    format!(
        r#"
[dataplane]
workers = [0]
mbufs = 4095
rx_desc = 512
tx_desc = 512

[management]
listen = "127.0.0.1:{mgmt}"
{extra}

[[ports]]
id = 0
mac = "02:00:00:00:00:01"
addresses = ["10.0.0.2/24"]
"#
    )
}

fn arp_request(tpa: [u8; 4]) -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &PEER,
        &PEER_IP,
        &[0; 6],
        &tpa,
    )
    .unwrap();
    let mut out = Vec::new();
    PacketBuilder::ethernet2(PEER, [0xff; 6])
        .arp(arp)
        .write(&mut out)
        .unwrap();
    out
}

fn ping(ttl: u8, seq: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(PEER, ME)
        .ipv4(PEER_IP, MY_IP, ttl)
        .icmpv4_echo_request(0x4242, seq)
        .write(&mut out, b"abcdefgh")
        .unwrap();
    out
}

/// Runs the appliance over `frames` (net_pcap rx from a file, tx to a file), waits until it has received
/// them all, reads /metrics, stops it with SIGTERM; returns (metrics text, frames sent, stdout).
fn run_pcap(tag: &str, frames: &[Vec<u8>]) -> (String, Vec<Vec<u8>>, String) {
    run_pcap_with(tag, frames, |mgmt| config(mgmt, ""))
}

/// As [`run_pcap`], with the configuration `cfg` makes for a management port.
fn run_pcap_with(tag: &str, frames: &[Vec<u8>], cfg: impl Fn(u16) -> String) -> (String, Vec<Vec<u8>>, String) {
    let dir = TempDir::new(tag);
    let input = dir.path("in.pcap");
    let output = dir.path("out.pcap");
    write_pcap(&input, frames);
    let mgmt = free_port();
    let cfg = dir.write("appliance.toml", &cfg(mgmt));
    let prefix = unique(tag);
    let mut cmd = Command::new(BIN);
    cmd.args(eal_base(&prefix, "0"))
        .arg("--vdev")
        .arg(format!(
            "net_pcap0,rx_pcap={},tx_pcap={}",
            input.display(),
            output.display()
        ))
        .arg("--")
        .arg("--config")
        .arg(&cfg);
    let mut app = Appliance::spawn(cmd, &prefix, &dir);
    let n = frames.len() as f64;
    let metrics = wait_for(Duration::from_secs(20), || {
        let (_, body) = get(mgmt, "/metrics")?;
        (metric(&body, "appliance_worker_rx_packets_total", &[])? >= n).then_some(body)
    });
    let metrics = metrics.unwrap_or_else(|| panic!("appliance never received {n} packets; stderr:\n{}", app.stderr()));
    // Let the tx buffer drain (100 µs tick) before stopping.
    let tx = wait_for(Duration::from_secs(5), || {
        let (_, body) = get(mgmt, "/metrics")?;
        let tx = metric(&body, "appliance_worker_tx_packets_total", &[])?;
        let expect = n - metric(&body, "appliance_drops_total", &[])?;
        (tx >= expect).then_some(body)
    })
    .unwrap_or(metrics);
    let (code, stdout) = app.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "SIGTERM must exit 0; stderr:\n{}", app.stderr());
    assert!(stdout.contains("=== final counters ==="), "{stdout}");
    (tx, read_pcap(&output), stdout)
}

#[test]
fn arp_request_through_net_pcap_gets_the_right_reply() {
    let frames = vec![arp_request(MY_IP), arp_request([10, 0, 0, 77]), ping(64, 1)];
    let (metrics, out, stdout) = run_pcap("arp", &frames);
    assert_eq!(out.len(), 2, "one ARP reply and one echo reply; stdout:\n{stdout}");
    // The ARP reply, byte for byte through an independent parser.
    let reply = &out[0];
    assert_eq!(&reply[0..6], &PEER, "to the requester");
    assert_eq!(&reply[6..12], &ME, "from our MAC");
    assert_eq!(&reply[12..14], &[0x08, 0x06]);
    let arp = ArpPacket::from_slice(&reply[14..]).unwrap().try_eth_ipv4().unwrap();
    assert_eq!(
        arp,
        ArpEthIpv4Packet {
            operation: ArpOperation::REPLY,
            sender_mac: ME,
            sender_ipv4: MY_IP,
            target_mac: PEER,
            target_ipv4: PEER_IP
        }
    );
    // The echo reply.
    let s = etherparse::SlicedPacket::from_ethernet(&out[1]).unwrap();
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = s.transport else {
        panic!("not ICMP")
    };
    assert!(matches!(icmp.icmp_type(), Icmpv4Type::EchoReply(e) if e.id == 0x4242 && e.seq == 1));
    // The request for someone else was dropped by the presence stage under its reason.
    assert_eq!(
        metric(
            &metrics,
            "appliance_drops_total",
            &[("stage", "presence"), ("reason", "arp_not_for_us")]
        ),
        Some(1.0)
    );
    assert_eq!(metric(&metrics, "appliance_drops_total", &[]), Some(1.0));
    assert!(stdout.contains("drop arp_not_for_us at presence: 1"), "{stdout}");
}

#[test]
fn malformed_ipv4_is_dropped_and_counted_under_its_reason() {
    let good = ping(64, 9);
    let mut bad_csum = ping(64, 2);
    bad_csum[24] ^= 0xff;
    let mut bad_version = ping(64, 3);
    bad_version[14] = 0x55;
    let mut bad_ihl = ping(64, 4);
    bad_ihl[14] = 0x43;
    let mut too_long = ping(64, 5);
    too_long[16..18].copy_from_slice(&1400u16.to_be_bytes());
    let mut ttl0 = ping(0, 6);
    // etherparse computed the checksum with TTL 0 already: only the TTL is wrong.
    ttl0[22] = 0;
    let mut truncated = ping(64, 7);
    truncated.truncate(14 + 12);
    let frames = vec![bad_csum, bad_version, bad_ihl, too_long, ttl0, truncated, good];
    let (metrics, out, _) = run_pcap("malformed", &frames);
    for reason in [
        "ipv4_checksum",
        "ipv4_version",
        "ipv4_header_length",
        "ipv4_total_length",
        "ipv4_ttl_expired",
        "ipv4_truncated",
    ] {
        assert_eq!(
            metric(&metrics, "appliance_drops_total", &[("reason", reason)]),
            Some(1.0),
            "reason {reason}\n{metrics}"
        );
    }
    assert_eq!(metric(&metrics, "appliance_drops_total", &[]), Some(6.0));
    assert_eq!(out.len(), 1, "only the valid ping is answered");
}

/// Whether the management endpoint on `mgmt` answers /healthz with 200 within `secs` seconds.
fn healthy(mgmt: u16, secs: u64) -> bool {
    wait_for(Duration::from_secs(secs), || {
        get(mgmt, "/healthz").filter(|(c, _)| *c == 200)
    })
    .is_some()
}

/// An appliance on net_null (frames of garbage as fast as it polls), one worker on lcore 0.
struct NullRun {
    app: Appliance,
    mgmt: u16,
    _dir: TempDir,
}

fn start_null(tag: &str, extra: &str) -> NullRun {
    let dir = TempDir::new(tag);
    let mgmt = free_port();
    let cfg = dir.write("appliance.toml", &config(mgmt, extra));
    let prefix = unique(tag);
    let mut cmd = Command::new(BIN);
    cmd.args(eal_base(&prefix, "0"))
        .args(["--vdev", "net_null0", "--", "--config"])
        .arg(&cfg);
    NullRun {
        app: Appliance::spawn(cmd, &prefix, &dir),
        mgmt,
        _dir: dir,
    }
}

#[test]
fn healthz_fails_when_a_worker_stalls_and_recovers() {
    let NullRun { mut app, mgmt, _dir } = start_null("health", "debug = true");
    assert!(healthy(mgmt, 20), "healthz never 200; stderr:\n{}", app.stderr());
    let (code, _) = http("POST", mgmt, "/debug/stall?worker=0&ms=3000").unwrap();
    assert_eq!(code, 200);
    let bad = wait_for(Duration::from_secs(3), || {
        get(mgmt, "/healthz").filter(|(c, _)| *c == 503)
    });
    let (_, body) = bad.expect("healthz must turn 503 while the worker is stalled");
    assert!(body.contains("stalled"), "{body}");
    assert!(healthy(mgmt, 10), "healthz must recover after the stall");
    let (code, _) = app.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}

/// Shrinks a connected socket's receive buffer to the minimum (and stops its autotuning).
fn small_receive_buffer(s: &std::net::TcpStream) {
    let size: libc::c_int = 4096;
    // SAFETY: the descriptor is the stream's, open for the call; the value is a c_int on the stack with
    // its size, which is what SO_RCVBUF reads.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(s),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
}

#[test]
fn a_management_client_that_never_reads_stalls_only_itself() {
    use std::io::Write;
    let NullRun { mut app, mgmt, _dir } = start_null("mgmtread", "");
    assert!(healthy(mgmt, 20), "healthz never 200; stderr:\n{}", app.stderr());
    // A client asks for the metrics 1200 times at once (12 MB of answers), with a small receive buffer,
    // and never reads: the answers fill its socket (the sender's buffer grows to 4 MB at most here, see
    // tcp_wmem). When one thread made and wrote every answer, /healthz then never answered: each stuck
    // write waits for the send timeout, one after another. (The limits below are generous for a loaded
    // machine; the answer normally comes at once.)
    let mut bad = std::net::TcpStream::connect(("127.0.0.1", mgmt)).unwrap();
    small_receive_buffer(&bad);
    bad.write_all(&b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1200))
        .unwrap();
    for _ in 0..2 {
        assert!(healthy(mgmt, 20), "healthz must answer while other clients do not read");
    }
    drop(bad);
    let (code, _) = app.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}

#[test]
fn the_management_endpoint_comes_back_after_file_descriptors_run_out() {
    let NullRun { mut app, mgmt, _dir } = start_null("mgmtfds", "");
    assert!(healthy(mgmt, 20), "healthz never 200; stderr:\n{}", app.stderr());
    // The appliance gets room for exactly SPARE more descriptors than it holds now, and the client opens
    // twice as many connections. The listen backlog (128) and the endpoint's connection bound (256) are
    // far above that, so every connect completes in the kernel whatever the host, and the endpoint must
    // run out of descriptors while connections still wait to be accepted.
    const SPARE: u64 = 8;
    let open = testkit::leave_descriptors(app.pid(), SPARE);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], mgmt));
    let held: Vec<_> = (0..2 * SPARE)
        .map(|i| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("connection {i} of {}: {e}", 2 * SPARE))
        })
        .collect();
    let exhausted = wait_for(Duration::from_secs(20), || {
        app.stderr().contains("Too many open files").then_some(())
    });
    assert!(
        exhausted.is_some(),
        "{} connections over {open} open descriptors did not exhaust the limit:\n{}",
        held.len(),
        app.stderr()
    );
    drop(held);
    assert!(
        healthy(mgmt, 20),
        "healthz must come back once descriptors are free; stderr:\n{}",
        app.stderr()
    );
    let (_, text) = get(mgmt, "/metrics").expect("metrics");
    let errors = metric(&text, "appliance_management_accept_errors_total", &[]).expect("the counter");
    assert!(errors > 0.0, "failed accepts are counted");
    let (code, _) = app.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}

#[test]
fn flood_of_unsolicited_frames_is_dropped_by_reason_and_every_buffer_returns() {
    // net_null delivers frames of garbage as fast as the worker polls.
    let NullRun { mut app, mgmt, _dir } = start_null("nombuf", "");
    let m = wait_for(Duration::from_secs(20), || {
        let (_, b) = get(mgmt, "/metrics")?;
        (metric(&b, "appliance_worker_rx_packets_total", &[])? > 100_000.0).then_some(b)
    })
    .unwrap_or_else(|| panic!("no traffic; stderr:\n{}", app.stderr()));
    // Garbage from net_null is not for us: every packet is dropped by reason, none leaks.
    let rx = metric(&m, "appliance_worker_rx_packets_total", &[]).unwrap();
    let dropped = metric(&m, "appliance_drops_total", &[]).unwrap();
    assert!(dropped <= rx && dropped > 0.0);
    let (code, stdout) = app.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let line = stdout.lines().find(|l| l.starts_with("mempool:")).unwrap();
    assert!(line.starts_with("mempool: 0 of"), "all buffers back after stop: {line}");
}

#[test]
fn metrics_pass_promtool_and_state_is_json() {
    let NullRun {
        mut app,
        mgmt,
        _dir: dir,
    } = start_null(
        "prom",
        r#"
[nat]
pool = ["10.0.0.100"]
max_sessions = 1024
[[nat.apps]]
id = 1
vip = "10.0.0.50"
targets = ["10.0.0.9"]
services = [{ proto = "udp", port = 53, target_port = 53 }]
"#,
    );
    let body = wait_for(Duration::from_secs(20), || {
        get(mgmt, "/metrics").filter(|(c, _)| *c == 200).map(|(_, b)| b)
    })
    .unwrap_or_else(|| panic!("no metrics; stderr:\n{}", app.stderr()));
    for family in [
        "appliance_port_rx_packets_total",
        "appliance_port_tx_packets_total",
        "appliance_port_rx_missed_total",
        "appliance_port_rx_errors_total",
        "appliance_worker_rx_packets_total",
        "appliance_drops_total",
        "appliance_mempool_in_use",
        "appliance_nat_sessions",
        "appliance_nat_sessions_created_total",
        "appliance_nat_alloc_failures_total",
        "appliance_handoff_packets_total",
    ] {
        assert!(body.contains(&format!("# TYPE {family} ")), "missing {family}");
    }
    let file = dir.write("metrics.txt", &body);
    let out = run_bounded(
        Command::new("sh")
            .arg("-c")
            .arg(format!("promtool check metrics < {}", file.display())),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, state) = get(mgmt, "/state").unwrap();
    assert_eq!(code, 200);
    assert!(
        state.starts_with('{') && state.contains("\"workers\"") && state.contains("\"ports\""),
        "{state}"
    );
    let (code, _) = app.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}

/// Overlay frames as the sample edge (node 1, 10.1.0.1) sends them over path 1 to the relay at 10.2.0.1,
/// addressed to our MAC; `from` replaces the edge's address and `hops` the hop count.
fn overlay_frame(from: std::net::Ipv4Addr, hops: u8) -> Vec<u8> {
    use pipelines::buf::VecBuf;
    use pipelines::overlay::encap::{AppRoute, Encap};
    use pipelines::overlay::sample;
    use pipelines::stage::{Burst, Meta, Scratch};
    let mut fx = Scratch::default();
    let mut client = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xc1], [2, 0, 0, 0, 0, 0xe1])
        .ipv4([192, 168, 1, 10], sample::VIP.octets(), 64)
        .udp(5000, 53)
        .write(&mut client, b"query")
        .unwrap();
    let mut b = Burst::with_capacity(4);
    b.push(VecBuf::new(&client, 128), Meta::new(0)).unwrap();
    sample::classifier().run(&mut b, &mut fx.cx(1));
    let mut e = Encap::new(
        sample::EDGE_NODE,
        from,
        40000,
        hops,
        0,
        vec![sample::GW_NODE],
        vec![AppRoute {
            vni: sample::VNI,
            dest: 0,
        }],
    );
    e.run(&mut b, &mut fx.cx(1));
    sample::replicate().run(&mut b, &mut fx.cx(1));
    let (p, _) = b.drain().find(|(_, m)| m.path == 1).unwrap();
    let mut f = p.to_vec();
    f[0..6].copy_from_slice(&ME);
    f[6..12].copy_from_slice(&PEER);
    f
}

#[test]
fn relay_role_forwards_overlay_packets_from_peers_to_the_next_node() {
    use pipelines::overlay::{parse_outer, sample};
    let frames = vec![
        overlay_frame(sample::EDGE, 8),
        overlay_frame(std::net::Ipv4Addr::new(10, 1, 0, 9), 8),
        overlay_frame(sample::EDGE, 1),
    ];
    let (metrics, out, stdout) = run_pcap_with("relay", &frames, |mgmt| {
        format!(
            r#"
[dataplane]
workers = [0]
mbufs = 4095
rx_desc = 512
tx_desc = 512

[management]
listen = "127.0.0.1:{mgmt}"

[neighbour]
static = [{{ port = 0, ip = "10.2.0.254", mac = "02:00:00:00:00:fe" }}]

[[ports]]
id = 0
mac = "02:00:00:00:00:01"
addresses = ["10.2.0.1/24"]

[overlay]
node = 2
role = "relay"
address = "10.2.0.1"
peers = ["10.1.0.1"]

[[overlay.hops]]
node = 4
path = 1
next = "10.4.0.1"
via = "10.2.0.254"
"#
        )
    });
    assert_eq!(
        out.len(),
        1,
        "only the peer's packet with hops left is relayed; stdout:\n{stdout}"
    );
    let f = &out[0];
    assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 0xfe], "to the underlay next hop's MAC");
    assert_eq!(&f[6..12], &ME);
    let o = parse_outer(f).expect("valid outer headers and option");
    assert_eq!(
        (o.ip_src, o.ip_dst),
        (sample::R1, sample::GW),
        "outer header rewritten toward the gateway"
    );
    assert_eq!(o.opt.hops, 7, "hop count decremented");
    assert_eq!(o.opt.path, 1);
    let ip = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]).unwrap().to_header();
    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
    assert_eq!(&f[frames[0].len() - 5..], b"query", "inner packet untouched");
    for (reason, n) in [("not_a_peer", 1.0), ("hop_limit", 1.0)] {
        assert_eq!(
            metric(&metrics, "appliance_drops_total", &[("reason", reason)]),
            Some(n),
            "{reason}"
        );
    }
}
