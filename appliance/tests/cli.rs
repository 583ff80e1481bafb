//! The command line: `--check` validates without starting the EAL; a bad configuration is refused with
//! a message naming the field and exit code 2, and no port is touched (the EAL never starts, so it leaves
//! no runtime directory).
mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const GOOD: &str = r#"
[dataplane]
workers = [0]
mbufs = 4095
rx_desc = 512
tx_desc = 512

[[ports]]
id = 0
addresses = ["10.0.0.2/24"]

[[routes]]
prefix = "0.0.0.0/0"
via = "10.0.0.1"
"#;

/// Runs the binary with `eal` args and `config`; returns (exit code, stdout, stderr). `check` adds --check.
fn run(tag: &str, eal: &[&str], config: &str, check: bool, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let dir = TempDir::new(tag);
    let cfg = dir.write("c.toml", config);
    let prefix = unique(tag);
    let mut cmd = Command::new(BIN);
    cmd.args(["--file-prefix", &prefix])
        .args(eal)
        .arg("--")
        .arg("--config")
        .arg(&cfg);
    if check {
        cmd.arg("--check");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let runtime_dir = Path::new("/var/run/dpdk").join(&prefix);
    let eal_started = runtime_dir.exists();
    let _ = std::fs::remove_dir_all(&runtime_dir);
    assert!(!eal_started, "the EAL must not start for a refused configuration");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const EAL: &[&str] = &["-l", "0-1", "--no-pci", "--no-huge", "-m", "256", "--vdev", "net_null0"];

#[test]
fn check_accepts_a_good_config() {
    let (code, out, err) = run("ok", EAL, GOOD, true, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("is valid: 1 port(s), 1 worker(s)"), "{out}");
}

fn refused(tag: &str, eal: &[&str], config: &str, path: &str, words: &str) {
    for check in [true, false] {
        let (code, _, err) = run(tag, eal, config, check, &[]);
        assert_eq!(code, Some(2), "check={check}: {err}");
        let line = err.lines().find(|l| l.trim_start().starts_with(path));
        let line = line.unwrap_or_else(|| panic!("no line names {path}:\n{err}"));
        assert!(line.contains(words), "{line}");
    }
}

#[test]
fn unknown_key_is_refused() {
    refused(
        "unk",
        EAL,
        &GOOD.replace("id = 0", "id = 0\nspeed = 100"),
        "ports[0].speed",
        "unknown field `speed`",
    );
}

#[test]
fn address_outside_any_port_subnet_is_refused() {
    refused(
        "sub",
        EAL,
        &GOOD.replace("via = \"10.0.0.1\"", "via = \"10.9.0.1\""),
        "routes[0].via",
        "outside every port subnet",
    );
    let statics = GOOD.replace(
        "[[ports]]",
        "[[neighbour.static]]\nport = 0\nip = \"192.168.7.1\"\nmac = \"02:00:00:00:00:05\"\n\n[[ports]]",
    );
    refused(
        "sub2",
        EAL,
        &statics,
        "neighbour.static[0].ip",
        "outside every subnet of port 0",
    );
}

#[test]
fn duplicate_port_id_is_refused() {
    let two = format!("{GOOD}\n[[ports]]\nid = 0\naddresses = [\"10.1.0.2/24\"]\n");
    let eal = [
        "-l",
        "0-1",
        "--no-pci",
        "--no-huge",
        "-m",
        "256",
        "--vdev",
        "net_null0",
        "--vdev",
        "net_null1",
    ];
    refused("dup", &eal, &two, "ports[1].id", "duplicate port id 0 (also ports[0])");
}

#[test]
fn worker_lcore_not_in_eal_core_list_is_refused() {
    refused(
        "lcore",
        EAL,
        &GOOD.replace("workers = [0]", "workers = [3]"),
        "dataplane.workers[0]",
        "lcore 3 is not in the EAL core list (-l 0-1)",
    );
}

#[test]
fn port_without_a_vdev_is_refused() {
    refused(
        "novdev",
        EAL,
        &GOOD.replace("id = 0", "id = 1"),
        "ports[0].id",
        "port 1 does not exist",
    );
}

#[test]
fn all_problems_are_reported_together() {
    let bad = GOOD
        .replace("workers = [0]", "workers = [7]")
        .replace("via = \"10.0.0.1\"", "via = \"8.8.8.8\"");
    let (code, _, err) = run("all", EAL, &bad, true, &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("dataplane.workers[0]") && err.contains("routes[0].via"),
        "{err}"
    );
}

#[test]
fn environment_overrides_and_is_validated_too() {
    let (code, _, err) = run(
        "env",
        EAL,
        GOOD,
        true,
        &[("APPLIANCE__MANAGEMENT__LISTEN", "not-an-address")],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("management.listen: 'not-an-address'"), "{err}");
    let (code, _, err) = run("env2", EAL, GOOD, true, &[("APPLIANCE__DATAPLANE__IDLE", "busy")]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn missing_file_and_bad_toml_exit_2() {
    let (code, _, err) = run("toml", EAL, "[dataplane\nworkers = [0]", true, &[]);
    assert_eq!(code, Some(2), "{err}");
    let out = run_bounded(
        Command::new(BIN).args(["--", "--config", "/nonexistent/appliance.toml", "--check"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/appliance.toml"));
}

#[test]
fn example_overlay_configurations_pass_check_and_broken_ones_name_the_field() {
    let two: &[&str] = &["-l", "0", "--no-pci", "--vdev", "net_null0", "--vdev", "net_null1"];
    let one: &[&str] = &["-l", "0", "--no-pci", "--vdev", "net_null0"];
    for (file, eal) in [
        ("edge.toml", two),
        ("gateway.toml", two),
        ("relay1.toml", one),
        ("relay2.toml", one),
    ] {
        let text = std::fs::read_to_string(format!("{}/../conf/overlay/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let (code, out, err) = run("ovc", eal, &text, true, &[]);
        assert_eq!(code, Some(0), "{file}: {out}{err}");
        if file == "edge.toml" {
            // Two paths toward the gateway through one region; an application whose gateway has no path.
            let bad = text
                .replace("region = \"us\"", "region = \"eu\"")
                .replace("gateway = 4", "gateway = 5");
            refused("ovb", eal, &bad, "overlay.paths", "both go through region 'eu'");
            refused(
                "ovb",
                eal,
                &bad,
                "overlay.apps[0].gateway",
                "no path in overlay.paths leads to node 5",
            );
            let bad = text.clone() + "\n[overlay.select]\nmin_gain_us = 99999999\n";
            refused("ovs", eal, &bad, "overlay.select.min_gain_us", "at most 60000000");
        }
        if file == "gateway.toml" {
            let bad = text.replace("[nat]", "[nat_off]");
            let (code, _, err) = run("ovg", eal, &bad, true, &[]);
            assert_eq!(code, Some(2), "{err}");
        }
    }
}
