//! Typed errors from negative returns and NULL + `rte_errno`.
use crate::ffi;
use std::ffi::CStr;
use std::fmt;

/// A DPDK call failed: which operation, and the errno it reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub op: &'static str,
    pub errno: i32,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn new(op: &'static str, errno: i32) -> Error {
        Error { op, errno: errno.abs() }
    }

    /// An error from the calling thread's `rte_errno` (after a NULL return).
    pub(crate) fn from_rte_errno(op: &'static str) -> Error {
        // SAFETY: reads the calling thread's per-lcore errno variable.
        Error::new(op, unsafe { ffi::shim_errno() })
    }
}

/// Turns a negative return value into an error naming the operation.
pub(crate) fn check(op: &'static str, ret: i32) -> Result<i32> {
    if ret < 0 {
        Err(Error::new(op, ret))
    } else {
        Ok(ret)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(ffi::rte_strerror(self.errno)) };
        write!(
            f,
            "{} failed: {} (errno {})",
            self.op,
            msg.to_string_lossy(),
            self.errno
        )
    }
}

impl std::error::Error for Error {}
