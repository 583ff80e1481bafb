//! The harness's smoke run (what `.ci/run` runs): every role in-process for a second, and the relay over
//! net_memif beside dpdk-testpmd. Asserts only that numbers came out, no buffer leaked and the hot path
//! allocated nothing; speed is never asserted.
use std::process::Command;
use std::time::{Duration, Instant};

fn run_bounded(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn bench");
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn smoke_run_produces_numbers_without_leaks_or_allocations() {
    let json = std::env::temp_dir().join(format!("bench-smoke-{}.json", std::process::id()));
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_bench"))
            .args([
                "--",
                "--smoke",
                "--hugepages",
                "off",
                "--roles",
                "relay,edge,gateway,chain",
                "--json",
            ])
            .arg(&json),
        Duration::from_secs(200),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let _ = std::fs::remove_file(&json);
    let rows = v["inprocess"].as_array().expect("in-process rows");
    assert_eq!(rows.len(), 4, "{v}");
    for r in rows {
        let role = r["role"].as_str().unwrap();
        assert!(r["rx_mpps"].as_f64().unwrap() > 0.0, "{role}: no packets in");
        assert!(r["tx_mpps"].as_f64().unwrap() > 0.0, "{role}: no packets out");
        assert!(r["cycles_per_packet"].as_f64().unwrap() > 0.0, "{role}");
        assert!(
            r["latency_half_rate"]["samples"].as_u64().unwrap() > 0,
            "{role}: no latency samples"
        );
        assert_eq!(
            r["allocations"].as_u64(),
            Some(0),
            "{role}: allocations on the hot path"
        );
        assert_eq!(
            r["mempool_after"], r["mempool_before"],
            "{role}: buffers not back in the pool"
        );
    }
    let memif = v["memif"].as_array().expect("memif rows");
    for dut in ["testpmd", "relay"] {
        let row = memif
            .iter()
            .find(|m| m["dut"] == dut)
            .unwrap_or_else(|| panic!("no memif row for {dut}: {v}"));
        assert!(
            row["in_mpps"].as_f64().unwrap() > 0.0,
            "{dut} over memif took nothing: {v}"
        );
    }
}
