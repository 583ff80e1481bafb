//! The Lua dissector (wireshark/overlay.lua) decodes every field of the option as the encap and replicate
//! stages wrote it: the stages write a pcap, tshark reads it with the script, and each field is compared
//! with the value sent. Needs tshark (installed by scripts/setup.sh); fails, never skips, without it.
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pipelines::buf::{PacketBuf, VecBuf};
use pipelines::overlay::classify::{Classifier, Service};
use pipelines::overlay::encap::{AppRoute, Encap};
use pipelines::overlay::replicate::{Path, PathSet, Replicate};
use pipelines::overlay::{parse_outer, OPT_OFF};
use pipelines::stage::{Burst, Meta, Scratch};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[test]
fn tshark_decodes_every_field_the_encap_stage_wrote() {
    let vip = Ipv4Addr::new(100, 64, 0, 1);
    let mut classifier = Classifier::new(
        &[Service {
            vip,
            proto: 17,
            port: 9999,
            app: 0,
        }],
        &[],
    );
    let mut encap = Encap::new(
        513,
        Ipv4Addr::new(10, 1, 0, 1),
        40000,
        9,
        3,
        vec![1027],
        vec![AppRoute { vni: 0xabcdef, dest: 0 }],
    );
    let mk = |id: u8, region: &str, relay: [u8; 4]| Path {
        id,
        name: region.into(),
        region: region.into(),
        relay: relay.into(),
        port: 0,
        next_hop: Ipv4Addr::new(10, 1, 0, 254),
        up: true,
    };
    let mut replicate = Replicate::new(vec![PathSet::new(vec![
        mk(17, "eu", [10, 2, 0, 1]),
        mk(200, "us", [10, 3, 0, 1]),
    ])
    .unwrap()]);
    let mut burst = Burst::with_capacity(64);
    for i in 0..12u16 {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 168, 0, 9], vip.octets(), 64)
            .udp(1000 + (i % 4) * 37, 9999)
            .write(&mut f, b"query")
            .unwrap();
        burst.push(VecBuf::new(&f, 128), Meta::new(0)).unwrap();
    }
    let mut fx = Scratch::default();
    let mut cx = fx.cx(0x0123_4567_89ab_cdef);
    classifier.run(&mut burst, &mut cx);
    encap.run(&mut burst, &mut cx);
    replicate.run(&mut burst, &mut cx);
    // One probe-reply with a key, written the way a probe sender would, to cover flags and key.
    let mut probe = burst.pkts[0].clone();
    {
        let d = probe.data_mut().unwrap();
        d[OPT_OFF] = 0x12;
        d[OPT_OFF + 10..OPT_OFF + 12].copy_from_slice(&0xbeefu16.to_be_bytes());
    }
    burst.push(probe, Meta::new(0)).unwrap();

    let dir = std::env::temp_dir().join(format!("overlay-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("encap.pcap");
    {
        let mut w = PcapWriter::with_header(std::fs::File::create(&pcap).unwrap(), PcapHeader::default()).unwrap();
        for (i, p) in burst.pkts.iter().enumerate() {
            w.write_packet(&PcapPacket::new(
                Duration::from_millis(i as u64),
                p.len() as u32,
                p.data(),
            ))
            .unwrap();
        }
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wireshark/overlay.lua");
    let fields = [
        "mpoverlay.version",
        "mpoverlay.flags",
        "mpoverlay.hops",
        "mpoverlay.path",
        "mpoverlay.sender",
        "mpoverlay.dest",
        "mpoverlay.stream",
        "mpoverlay.key",
        "mpoverlay.seq",
        "mpoverlay.tstamp",
        "geneve.vni",
        "udp.srcport",
    ];
    let mut cmd = Command::new("tshark");
    cmd.arg("-X")
        .arg(format!("lua_script:{}", script.display()))
        .arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-E", "separator=;", "-E", "occurrence=f"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark must be installed (scripts/setup.sh)");
    if std::env::var_os("KEEP_PCAP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), burst.len(), "{text}");
    let num = |s: &str| -> u64 {
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).unwrap(),
            None => s.parse().unwrap_or_else(|_| panic!("not a number: {s:?} in\n{text}")),
        }
    };
    for (row, p) in rows.iter().zip(&burst.pkts) {
        let o = parse_outer(p.data()).unwrap();
        let got: Vec<u64> = row.split(';').map(num).collect();
        let want = vec![
            1,
            o.opt.flags as u64,
            o.opt.hops as u64,
            o.opt.path as u64,
            o.opt.sender as u64,
            o.opt.dest as u64,
            o.opt.stream as u64,
            o.opt.key as u64,
            o.opt.seq as u64,
            o.opt.tstamp,
            o.vni as u64,
            o.udp_src as u64,
        ];
        assert_eq!(got, want, "row {row}");
    }
    println!("{text}");
    // The values really vary across the capture (a constant decode could not pass by accident).
    let distinct = |col: usize| {
        rows.iter()
            .map(|r| r.split(';').nth(col).unwrap())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    assert_eq!(distinct(3), 2, "two paths");
    assert!(
        distinct(6) >= 2 && distinct(8) >= 3,
        "several streams and sequence numbers"
    );
    assert!(
        rows.last().unwrap().starts_with("1;0x02;"),
        "probe-reply flag: {}",
        rows.last().unwrap()
    );
}
