//! Large per-core tables (NAT sessions and their index) in memory the kernel may back with 2 MB
//! transparent huge pages: a table of a million sessions spans tens of megabytes, and with 4 KB pages
//! nearly every lookup also misses the TLB. The memory is aligned to 2 MB and marked `MADV_HUGEPAGE`, which
//! is all THP needs in its default `madvise` mode. Small tables and failures fall back to ordinary pages;
//! nothing else changes.
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

const HUGE: usize = 2 << 20;

/// A fixed-length array of `T` allocated once, on huge pages when it is large enough.
pub struct HugeSlice<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    layout: Option<Layout>,
}

// SAFETY: HugeSlice owns its elements like a Box<[T]>; it is Send/Sync exactly when T is.
unsafe impl<T: Copy + Send> Send for HugeSlice<T> {}
// SAFETY: as above; shared access only hands out &[T].
unsafe impl<T: Copy + Sync> Sync for HugeSlice<T> {}

impl<T: Copy> HugeSlice<T> {
    /// `len` copies of `value`.
    pub fn filled(len: usize, value: T) -> HugeSlice<T> {
        let size = len.checked_mul(std::mem::size_of::<T>()).expect("table size overflows");
        if size == 0 {
            return HugeSlice {
                ptr: NonNull::dangling(),
                len,
                layout: None,
            };
        }
        let align = if size >= HUGE { HUGE } else { std::mem::align_of::<T>() };
        let layout = Layout::from_size_align(size, align.max(std::mem::align_of::<T>())).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) } as *mut T;
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        if size >= HUGE {
            // SAFETY: the range is the allocation just made, 2 MB aligned; madvise only changes how the
            // kernel backs it (a failure leaves ordinary pages, which is fine).
            unsafe {
                libc::madvise(raw as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
            }
        }
        for i in 0..len {
            // SAFETY: i < len and the allocation holds len elements of T, properly aligned.
            unsafe { raw.add(i).write(value) };
        }
        HugeSlice {
            ptr,
            len,
            layout: Some(layout),
        }
    }
}

impl<T: Copy> Deref for HugeSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: ptr points to len initialized elements (or is dangling with len 0 / size-0 T).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for HugeSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `filled` with this layout; T is Copy, so there is nothing to drop.
            unsafe { dealloc(self.ptr.as_ptr() as *mut u8, layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_large_and_empty() {
        let mut s = HugeSlice::filled(10, 7u64);
        s[3] = 1;
        assert_eq!((s.len(), s[3], s[9]), (10, 1, 7));
        let big = HugeSlice::filled((4 << 20) / 8, u64::MAX);
        assert_eq!(big.as_ptr() as usize % HUGE, 0);
        assert!(big.iter().all(|v| *v == u64::MAX));
        let e: HugeSlice<u32> = HugeSlice::filled(0, 0);
        assert!(e.is_empty());
    }
}
