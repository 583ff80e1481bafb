//! The mapper binary answered with `dig` (and a small client for the load test): VIP per client prefix, by
//! EDNS Client Subnet (scope echoed) and by source address; an unhealthy edge leaves the answers within two
//! TTLs and comes back; NXDOMAIN, NODATA and REFUSED; TCP; `getent hosts` in a client namespace through
//! the system resolver; 20 000 queries in a bounded burst; bad configurations exit 2 naming the field;
//! DNS over TCP survives running out of file descriptors and cuts off a client that sends too slowly.
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::wait_for;

const BIN: &str = env!("CARGO_BIN_EXE_mapper");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Mapper {
    child: Child,
    port: u16,
    metrics: u16,
    dir: std::path::PathBuf,
}

impl Mapper {
    /// What the mapper has logged so far.
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The mapper's metrics page.
    fn scrape(&self) -> String {
        let out = Command::new("curl")
            .args(["-s", "-m", "10", &format!("http://127.0.0.1:{}/metrics", self.metrics)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The DNS address, TCP.
    fn tcp(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// `mapper_tcp_connections_total{result}` in a metrics page, if there.
fn tcp_connections(text: &str, result: &str) -> Option<f64> {
    let line = format!("mapper_tcp_connections_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(line.as_str())?.parse().ok())
}

/// An A query for shop.app.example with id `id`.
fn query(id: u16) -> Vec<u8> {
    let mut q = Message::new(id, MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.queries.push(Query::query(
        Name::from_ascii("shop.app.example.").unwrap(),
        RecordType::A,
    ));
    q.to_vec().unwrap()
}

impl Drop for Mapper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(port: u16, metrics: u16, ttl: u32, health_eu: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:{port}"
metrics = "127.0.0.1:{metrics}"
zone = "app.example"
ttl = {ttl}
health_interval_ms = 100
health_timeout_ms = 200
default_region = "eu"

[[regions]]
prefix = "10.1.0.0/16"
region = "eu"

[[regions]]
prefix = "10.2.0.0/16"
region = "us"

[[regions]]
prefix = "127.0.0.3/32"
region = "us"

[[edges]]
name = "edge-eu"
region = "eu"
{health_eu}

[[edges]]
name = "edge-us"
region = "us"

[[apps]]
hostname = "shop.app.example"
edges = [{{ edge = "edge-eu", vip = "10.91.0.100" }}, {{ edge = "edge-us", vip = "10.92.0.100" }}]
"#
    )
}

/// The mapper on `port` (DNS) and `metrics`, once it answers; its log goes to `stderr.log` in its folder.
fn start(text: &str, port: u16, metrics: u16) -> Mapper {
    let dir = std::env::temp_dir().join(format!("mapper-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("mapper.toml");
    std::fs::write(&cfg, text).unwrap();
    let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mapper");
    let m = Mapper {
        child,
        port,
        metrics,
        dir,
    };
    // Up once it answers with an address: dig prints its errors on stdout too (";; communications error
    // ... connection refused" while nothing listens yet), so any output is not an answer.
    let t0 = Instant::now();
    loop {
        let short = dig(&m, &["shop.app.example", "+short", "+tries=1", "+time=1"]);
        if short.lines().any(|l| l.trim().parse::<Ipv4Addr>().is_ok()) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "mapper did not answer: {short}");
        std::thread::sleep(Duration::from_millis(50));
    }
    m
}

fn dig(m: &Mapper, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &m.port.to_string(), "+tries=2", "+time=1"])
        .args(args)
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn answers_per_client_prefix_with_ecs_and_source_address() {
    let (p, mp) = (free_port(), free_port());
    let m = start(&config(p, mp, 20, ""), p, mp);
    let eu = dig(&m, &["shop.app.example", "A", "+subnet=10.1.7.0/24"]);
    println!("{eu}");
    assert!(eu.contains("shop.app.example.\t20\tIN\tA\t10.91.0.100"), "{eu}");
    assert!(eu.contains("CLIENT-SUBNET: 10.1.7.0/24/16"), "ECS scope echoed: {eu}");
    assert!(eu.contains("flags: qr aa rd;"), "authoritative, RA clear: {eu}");
    let us = dig(&m, &["shop.app.example", "A", "+subnet=10.2.9.0/24"]);
    assert!(us.contains("\tA\t10.92.0.100"), "{us}");
    assert!(us.contains("CLIENT-SUBNET: 10.2.9.0/24/16"), "{us}");
    // Without ECS, the resolver's source address decides: 127.0.0.3 maps to "us", others to the default.
    assert_eq!(
        dig(&m, &["-b", "127.0.0.3", "shop.app.example", "+short"]).trim(),
        "10.92.0.100"
    );
    assert_eq!(
        dig(&m, &["-b", "127.0.0.2", "shop.app.example", "+short"]).trim(),
        "10.91.0.100"
    );
    // Authoritative whether or not RD is set.
    let norec = dig(&m, &["shop.app.example", "+norec"]);
    assert!(
        norec.contains("flags: qr aa;") && norec.contains("10.91.0.100"),
        "{norec}"
    );
}

#[test]
fn nxdomain_nodata_refused_and_tcp() {
    let (p, mp) = (free_port(), free_port());
    let m = start(&config(p, mp, 20, ""), p, mp);
    let nx = dig(&m, &["nope.app.example", "A"]);
    assert!(nx.contains("status: NXDOMAIN") && nx.contains("flags: qr aa"), "{nx}");
    assert!(nx.contains("IN\tSOA"), "SOA in the authority section: {nx}");
    let nodata = dig(&m, &["shop.app.example", "AAAA"]);
    assert!(
        nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
        "{nodata}"
    );
    assert!(nodata.contains("IN\tSOA"), "{nodata}");
    let mx = dig(&m, &["shop.app.example", "MX"]);
    assert!(mx.contains("status: NOERROR") && mx.contains("ANSWER: 0"), "{mx}");
    let refused = dig(&m, &["example.com", "A"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
    let tcp = dig(&m, &["+tcp", "shop.app.example", "A", "+subnet=10.2.0.0/16"]);
    assert!(tcp.contains("\tA\t10.92.0.100") && tcp.contains("(TCP)"), "{tcp}");
    let text = m.scrape();
    assert!(
        text.contains(r#"mapper_queries_total{answer="nxdomain",name="other",region="eu"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"mapper_queries_total{answer="answer",name="shop.app.example.",region="us"}"#),
        "{text}"
    );
    assert_eq!(tcp_connections(&text, "served"), Some(1.0), "{text}");
    assert_eq!(tcp_connections(&text, "refused"), Some(0.0), "{text}");
    assert_eq!(tcp_connections(&text, "accept_error"), Some(0.0), "{text}");
}

#[test]
fn an_unhealthy_edge_leaves_the_answers_within_two_ttls_and_comes_back() {
    // The eu edge's health endpoint, switchable.
    let server = mgmt_http::Endpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let hport = server.addr().port();
    let up = Arc::new(AtomicBool::new(true));
    let u2 = up.clone();
    let hits = Arc::new(AtomicU16::new(0));
    let h2 = hits.clone();
    std::thread::spawn(move || {
        server.serve(
            || true,
            move |_| {
                h2.fetch_add(1, Relaxed);
                let code = if u2.load(Relaxed) { 200 } else { 503 };
                mgmt_http::Reply::new(code, "text/plain", "x")
            },
        )
    });
    let ttl = 2u32;
    let (p, mp) = (free_port(), free_port());
    let health = format!("health = \"http://127.0.0.1:{hport}/healthz\"");
    let m = start(&config(p, mp, ttl, &health), p, mp);
    let ask = || {
        dig(&m, &["shop.app.example", "+short", "+subnet=10.1.0.0/24"])
            .trim()
            .to_string()
    };
    assert_eq!(ask(), "10.91.0.100");
    up.store(false, Relaxed);
    let t0 = Instant::now();
    while ask() != "10.92.0.100" {
        assert!(
            t0.elapsed() < Duration::from_secs(2 * ttl as u64),
            "still answered after two TTLs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("unhealthy edge left the answers after {:?} (TTL {ttl} s)", t0.elapsed());
    up.store(true, Relaxed);
    let t0 = Instant::now();
    while ask() != "10.91.0.100" {
        assert!(t0.elapsed() < Duration::from_secs(2 * ttl as u64), "did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(hits.load(Relaxed) > 2);
}

#[test]
fn getent_in_a_client_namespace_resolves_through_the_system_resolver() {
    let ns = format!("mapns{}", std::process::id());
    let run = |args: &[&str]| Command::new(args[0]).args(&args[1..]).status().unwrap().success();
    assert!(run(&["ip", "netns", "add", &ns]));
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.0));
        }
    }
    let _c = Cleanup(ns.clone());
    assert!(run(&["ip", "-n", &ns, "link", "set", "lo", "up"]));
    std::fs::create_dir_all(format!("/etc/netns/{ns}")).unwrap();
    std::fs::write(
        format!("/etc/netns/{ns}/resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n",
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("mapper-ns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("mapper.toml");
    std::fs::write(&cfg, config(53, 9200, 20, "")).unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns, BIN, "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut last = String::new();
    while t0.elapsed() < Duration::from_secs(10) {
        let o = Command::new("ip")
            .args(["netns", "exec", &ns, "getent", "hosts", "shop.app.example"])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&o.stdout).into_owned();
        if o.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!("getent: {last}");
    assert!(last.starts_with("10.91.0.100"), "{last}");
}

#[test]
fn twenty_thousand_queries_in_a_bounded_burst_all_answered() {
    let (p, mp) = (free_port(), free_port());
    let m = start(&config(p, mp, 20, ""), p, mp);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", m.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    const N: u16 = 20_000;
    const WINDOW: u16 = 64;
    let mut sent_at = vec![None; N as usize];
    let mut lat = Vec::with_capacity(N as usize);
    let (mut next, mut errors) = (0u16, 0u32);
    let t0 = Instant::now();
    let mut buf = [0u8; 1500];
    while lat.len() + (errors as usize) < N as usize && t0.elapsed() < Duration::from_secs(60) {
        while next < N && (next as usize) < lat.len() + errors as usize + WINDOW as usize {
            sock.send(&query(next)).unwrap();
            sent_at[next as usize] = Some(Instant::now());
            next += 1;
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                let r = Message::from_vec(&buf[..n]).unwrap();
                let ok = r
                    .answers
                    .first()
                    .is_some_and(|a| a.data == RData::A(Ipv4Addr::new(10, 91, 0, 100).into()));
                match sent_at.get_mut(r.metadata.id as usize).and_then(|s| s.take()) {
                    Some(t) if ok => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            Err(_) => {
                // A lost datagram: count the oldest unanswered query as an error and move on.
                if let Some(s) = sent_at.iter_mut().find(|s| s.is_some()) {
                    *s = None;
                    errors += 1;
                }
            }
        }
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "{} queries answered in {:?} ({} errors); latency p50 {:?} p99 {:?} max {:?}",
        lat.len(),
        t0.elapsed(),
        errors,
        p(0.5),
        p(0.99),
        lat.last().unwrap()
    );
    assert_eq!(errors, 0);
    assert_eq!(lat.len(), N as usize);
}

#[test]
fn bad_configurations_exit_2_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("mapper-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, field) in [
        (config(1, 2, 20, "").replace("ttl = 20", "ttl = 0"), "ttl"),
        // A float for an integer: refused, not rounded.
        (config(1, 2, 20, "").replace("ttl = 20", "ttl = 20.5"), "ttl"),
        (
            config(1, 2, 20, "").replace("edge = \"edge-us\"", "edge = \"edge-xx\""),
            "apps[0].edges[1].edge",
        ),
        (
            config(1, 2, 20, "").replace("prefix = \"10.2.0.0/16\"", "prefix = \"banana\""),
            "regions[1].prefix",
        ),
        (
            config(1, 2, 20, "").replace("shop.app.example", "shop.other.example"),
            "apps[0].hostname",
        ),
        (
            config(1, 2, 20, "").replace("zone = ", "colour = \"red\"\nzone = "),
            "colour",
        ),
    ] {
        let cfg = dir.join("bad.toml");
        std::fs::write(&cfg, &text).unwrap();
        let o = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .arg("--check")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{field}: {err}");
        assert!(err.contains(field), "{field} not named: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// User plus system CPU time of process `pid` so far, in clock ticks (`/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which is in parentheses): utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Clock ticks a second (`sysconf(_SC_CLK_TCK)`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(hz > 0, "_SC_CLK_TCK");
    hz as f64
}

#[test]
fn tcp_accept_failures_wait_instead_of_spinning_and_the_mapper_recovers() {
    let (p, mp) = (free_port(), free_port());
    let m = start(&config(p, mp, 20, ""), p, mp);
    // The mapper gets room for exactly SPARE more descriptors than it holds now, and idle clients open
    // twice as many connections. The listen backlog (128 at least) and the connection bound (64) are far
    // above that, so every connect completes in the kernel whatever the host, and the mapper runs out of
    // descriptors while connections still wait to be accepted: each accept fails with EMFILE until the
    // accepted ones end (idle for 10 s).
    const SPARE: u64 = 8;
    let pid = m.child.id();
    let open = testkit::leave_descriptors(pid, SPARE);
    let held: Vec<_> = (0..2 * SPARE)
        .map(|i| {
            TcpStream::connect_timeout(&m.tcp(), Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("connection {i} of {}: {e}", 2 * SPARE))
        })
        .collect();
    let (failing, again) = (
        format!("127.0.0.1:{p}: accepting failed"),
        format!("127.0.0.1:{p}: accepting again"),
    );
    let exhausted = wait_for(Duration::from_secs(20), || m.stderr().contains(&failing).then_some(()));
    assert!(
        exhausted.is_some(),
        "{} connections over {open} open descriptors did not exhaust the limit:\n{}",
        held.len(),
        m.stderr()
    );
    // While accepts keep failing, the mapper waits between tries: a loop that retried at once would take a
    // whole core; allow a fifth of one.
    let (cpu0, t0) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (used, window) = (cpu_ticks(pid) - cpu0, t0.elapsed().as_secs_f64());
    assert!(
        !m.stderr().contains(&again),
        "accepting came back within the window, which measured nothing:\n{}",
        m.stderr()
    );
    assert!(
        (used as f64) < 0.2 * ticks_per_second() * window,
        "{used} ticks of CPU in {window:.1} s of failing accepts"
    );
    drop(held);
    // Answers over TCP again, and the failed accepts were counted.
    let answered = wait_for(Duration::from_secs(20), || {
        dig(&m, &["+tcp", "shop.app.example", "A", "+subnet=10.2.0.0/16"])
            .contains("\tA\t10.92.0.100")
            .then_some(())
    });
    assert!(
        answered.is_some(),
        "no TCP answer after the clients left:\n{}",
        m.stderr()
    );
    let text = m.scrape();
    assert!(
        tcp_connections(&text, "accept_error").is_some_and(|n| n > 0.0),
        "accept failures are counted:\n{text}"
    );
    assert!(m.stderr().contains(&again), "{}", m.stderr());
}

/// Whether `s` (with a read timeout) has been closed by the peer: a read gives 0 or an error other than
/// the timeout. Panics on data.
fn closed(s: &mut TcpStream) -> bool {
    match s.read(&mut [0u8; 512]) {
        Ok(0) => true,
        Ok(n) => panic!("{n} bytes from the mapper"),
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[test]
fn a_tcp_message_sent_byte_by_byte_is_cut_off_by_its_deadline() {
    let (p, mp) = (free_port(), free_port());
    let m = start(&config(p, mp, 20, ""), p, mp);
    let framed = |id: u16| {
        let q = query(id);
        [&(q.len() as u16).to_be_bytes()[..], &q].concat()
    };
    let mut s = TcpStream::connect(m.tcp()).unwrap();
    let mut idle = TcpStream::connect(m.tcp()).unwrap();
    let idle_since = Instant::now();
    // Two messages in one write: two answers on the connection.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[framed(1), framed(2)].concat()).unwrap();
    for id in [1, 2] {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut msg).unwrap();
        let r = Message::from_vec(&msg).unwrap();
        assert_eq!(r.metadata.id, id);
        assert_eq!(r.answers[0].data, RData::A(Ipv4Addr::new(10, 91, 0, 100).into()));
    }
    // A third, one byte every 2 s: each read is quick, but the message is not whole 10 s after its first
    // byte, which ends the connection.
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let t0 = Instant::now();
    let mut cut = None;
    for b in framed(3) {
        if t0.elapsed() > Duration::from_secs(30) {
            break;
        }
        if s.write_all(&[b]).is_err() || closed(&mut s) {
            cut = Some(t0.elapsed());
            break;
        }
    }
    let cut = cut.expect("a message dribbled in for 30 s kept its connection");
    assert!(
        cut >= Duration::from_secs(9) && cut < Duration::from_secs(25),
        "cut off after {cut:?}, the deadline is 10 s"
    );
    // A connection that never sends ends too.
    idle.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let ended = wait_for(Duration::from_secs(25), || {
        closed(&mut idle).then(|| idle_since.elapsed())
    });
    let ended = ended.expect("an idle connection kept for 25 s");
    assert!(ended >= Duration::from_secs(9), "idle connection ended after {ended:?}");
    // Others are answered all along.
    let tcp = dig(&m, &["+tcp", "shop.app.example", "A"]);
    assert!(tcp.contains("\tA\t10.91.0.100"), "{tcp}");
}
