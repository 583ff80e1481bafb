//! A cache prefetch hint, for stages that look up per-flow state for a whole burst before using it.

/// Asks the CPU to bring the cache line holding `p` toward L1. A hint only: it never faults and never
/// reads into program state, whatever the address (dangling, null or unmapped included).
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 does not dereference its operand architecturally (no fault, no value returned) for
    // any address, and SSE, which provides it, is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
