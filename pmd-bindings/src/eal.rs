//! The Environment Abstraction Layer: started once per process; lcore launch.
use crate::error::{Error, Result};
use crate::ffi;
use std::ffi::{c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};

/// An EAL logical core id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LcoreId(pub u32);

/// A NUMA socket id (`SOCKET_ID_ANY` is -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketId(pub i32);

static STARTED: AtomicBool = AtomicBool::new(false);

/// Proof that the EAL is running in this process. Dropping it calls `rte_eal_cleanup`.
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Starts the EAL with `args` (the first is the program name, as in `argv`). Fails with `EALREADY` when
    /// called a second time in the same process, as DPDK does.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal> {
        if STARTED.swap(true, Ordering::SeqCst) {
            return Err(Error::new("rte_eal_init", libc_ealready()));
        }
        let owned: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_ref()).map_err(|_| Error::new("rte_eal_init", 22)))
            .collect::<Result<_>>()?;
        // rte_eal_init may permute argv; it gets its own array of pointers into `owned`, which outlives it.
        let mut argv: Vec<*mut std::ffi::c_char> = owned.iter().map(|c| c.as_ptr() as *mut _).collect();
        // SAFETY: argv holds argc valid NUL-terminated strings that live until the end of this function;
        // the EAL copies what it keeps.
        let ret = unsafe { ffi::rte_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(Error::from_rte_errno("rte_eal_init"));
        }
        Ok(Eal { _private: () })
    }

    /// The main lcore (the one that called `init`).
    pub fn main_lcore(&self) -> LcoreId {
        // SAFETY: the EAL is initialised (self exists).
        LcoreId(unsafe { ffi::rte_get_main_lcore() })
    }

    /// Whether `lcore` is enabled in the EAL core list.
    pub fn lcore_enabled(&self, lcore: LcoreId) -> bool {
        // SAFETY: plain query of the EAL configuration; out-of-range ids return 0.
        unsafe { ffi::rte_lcore_is_enabled(lcore.0) != 0 }
    }

    /// Number of enabled lcores.
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: plain query of the EAL configuration.
        unsafe { ffi::rte_lcore_count() }
    }

    /// TSC frequency in Hz.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: plain query, valid after init.
        unsafe { ffi::rte_get_tsc_hz() }
    }

    /// Runs `f` on worker lcore `lcore` (not the main one). Collect its return value with [`Eal::wait`].
    pub fn launch<F>(&self, lcore: LcoreId, f: F) -> Result<()>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        type Job = Box<dyn FnOnce() -> i32 + Send>;
        unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
            // SAFETY: `arg` is the Box<Job> leaked below, handed to exactly one lcore, reclaimed once here.
            let job: Box<Job> = unsafe { Box::from_raw(arg as *mut Job) };
            job()
        }
        let job: Box<Job> = Box::new(Box::new(f));
        let arg = Box::into_raw(job) as *mut c_void;
        // SAFETY: the trampoline matches lcore_function_t; on failure the job was not handed over and is
        // reclaimed here.
        let ret = unsafe { ffi::rte_eal_remote_launch(Some(trampoline), arg, lcore.0) };
        if ret < 0 {
            // SAFETY: the launch failed, so the lcore never received `arg`; we still own it.
            drop(unsafe { Box::from_raw(arg as *mut Job) });
            return Err(Error::new("rte_eal_remote_launch", ret));
        }
        Ok(())
    }

    /// Waits for the job on `lcore` to finish and returns its value.
    pub fn wait(&self, lcore: LcoreId) -> i32 {
        // SAFETY: blocks until the lcore is back in WAIT state; valid for any lcore id.
        unsafe { ffi::rte_eal_wait_lcore(lcore.0) }
    }

    /// Number of available Ethernet ports.
    pub fn port_count(&self) -> u16 {
        // SAFETY: plain query, valid after init.
        unsafe { ffi::rte_eth_dev_count_avail() }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: all lcores have been waited for by the owner before dropping the EAL (documented contract
        // of this type); cleanup releases hugepage files and the runtime directory.
        unsafe {
            ffi::rte_eal_cleanup();
        }
    }
}

fn libc_ealready() -> i32 {
    114 // EALREADY on Linux
}
