//! Finds the system DPDK with pkg-config (>= 22.11), generates bindings with an allowlist and compiles the
//! C shim that exports DPDK's inline functions.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/wrapper.h");
    println!("cargo:rerun-if-changed=csrc/shim.c");

    let dpdk = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .unwrap_or_else(|e| panic!("libdpdk >= 22.11 not found by pkg-config ({e}); run scripts/setup.sh as root"));

    // The C flags pkg-config gives DPDK users: include dirs, `-include rte_config.h`, -march (the inline
    // functions use SSE4.2 intrinsics).
    let mut clang_args: Vec<String> = dpdk
        .include_paths
        .iter()
        .map(|p| format!("-I{}", p.display()))
        .collect();
    clang_args.push("-include".into());
    clang_args.push("rte_config.h".into());
    // -march matters for the SIMD intrinsics in the inline functions.
    clang_args.push("-march=corei7".into());

    let mut build = cc::Build::new();
    build
        .file("csrc/shim.c")
        .opt_level(3)
        .flag("-include")
        .flag("rte_config.h");
    build.flag_if_supported("-march=corei7");
    for p in &dpdk.include_paths {
        build.include(p);
    }
    build.warnings(false).compile("pmdshim");

    let bindings = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_args(&clang_args)
        .allowlist_function("shim_.*")
        .allowlist_function(
            "rte_eal_init|rte_eal_cleanup|rte_eal_remote_launch|rte_eal_wait_lcore|rte_lcore_count|\
             rte_get_main_lcore|rte_lcore_is_enabled|rte_lcore_to_socket_id|rte_socket_id|rte_strerror|\
             rte_get_tsc_hz|rte_pktmbuf_pool_create|rte_mempool_free|rte_mempool_avail_count|\
             rte_mempool_in_use_count|rte_pktmbuf_free_bulk|rte_pktmbuf_copy|rte_eth_dev_count_avail|\
             rte_eth_dev_configure|rte_eth_rx_queue_setup|rte_eth_tx_queue_setup|rte_eth_dev_start|\
             rte_eth_dev_stop|rte_eth_dev_close|rte_eth_dev_info_get|rte_eth_macaddr_get|\
             rte_eth_dev_default_mac_addr_set|rte_eth_dev_set_mtu|rte_eth_link_get_nowait|rte_eth_stats_get|\
             rte_eth_promiscuous_enable|rte_eth_dev_get_name_by_port|rte_eth_dev_is_valid_port|\
             rte_eth_dev_socket_id",
        )
        .allowlist_type("rte_mbuf|rte_mempool|rte_eth_conf|rte_eth_dev_info|rte_eth_stats|rte_eth_link|rte_ether_addr")
        .allowlist_var("RTE_ETH_.*|RTE_PKTMBUF_HEADROOM|RTE_MAX_LCORE|RTE_MAX_ETHPORTS|RTE_ETHER_ADDR_LEN|RTE_VER_.*|SOCKET_ID_ANY")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .generate()
        .expect("bindgen over the DPDK headers failed");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings");
}
