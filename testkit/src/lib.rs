//! Helpers for the tests that run the project's binaries (the appliance's and the mapper's).
use std::time::{Duration, Instant};

/// Calls `f` every 50 ms until it gives a value, for up to `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lowers process `pid`'s file descriptor limit to what it holds open now plus `spare`, so that it runs
/// out after `spare` more whatever the host's limits; returns how many it holds open. Panics if it
/// cannot (the test cannot go on).
pub fn leave_descriptors(pid: u32, spare: u64) -> u64 {
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("the descriptors of process {pid}: {e}"))
        .count() as u64;
    let limit = libc::rlimit {
        rlim_cur: open + spare,
        rlim_max: open + spare,
    };
    // SAFETY: prlimit reads the new limit from a valid rlimit on the stack and writes no old value (null).
    let r = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
    open
}
