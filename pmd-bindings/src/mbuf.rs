//! Mempools and owning mbufs.
use crate::eal::{Eal, SocketId};
use crate::error::{Error, Result};
use crate::ffi;
use std::ffi::CString;
use std::ptr::NonNull;

/// A packet-buffer pool. Pools live until the process exits (never freed), so a handle is always valid.
#[derive(Clone, Copy, Debug)]
pub struct Mempool(NonNull<ffi::rte_mempool>);

// SAFETY: rte_mempool operations are thread-safe (lock-free ring underneath, per-lcore caches accessed only
// by their own lcore), and the pool is never freed.
unsafe impl Send for Mempool {}
// SAFETY: as above; all methods take &self and go through DPDK's thread-safe API.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `n` packet mbufs with a per-lcore cache of `cache` and `data_room` bytes of buffer
    /// (headroom included).
    pub fn new(_eal: &Eal, name: &str, n: u32, cache: u32, data_room: u16, socket: SocketId) -> Result<Self> {
        let cname = CString::new(name).map_err(|_| Error::new("rte_pktmbuf_pool_create", 22))?;
        // SAFETY: the EAL is running (we hold &Eal); the name is a valid C string copied by DPDK.
        let p = unsafe { ffi::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket.0) };
        NonNull::new(p)
            .map(Mempool)
            .ok_or_else(|| Error::from_rte_errno("rte_pktmbuf_pool_create"))
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.0.as_ptr()
    }

    /// Allocates one mbuf (empty, default headroom).
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid for the life of the process.
        let m = unsafe { ffi::shim_pktmbuf_alloc(self.0.as_ptr()) };
        NonNull::new(m).map(Mbuf)
    }

    /// Mbufs currently out of the pool (allocated, in rings or in per-lcore caches' complement).
    pub fn in_use(&self) -> u32 {
        // SAFETY: read-only walk of the pool's counters; DPDK documents it as approximate under concurrency.
        unsafe { ffi::rte_mempool_in_use_count(self.0.as_ptr()) }
    }

    /// Mbufs available in the pool (ring plus per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: as for in_use.
        unsafe { ffi::rte_mempool_avail_count(self.0.as_ptr()) }
    }
}

/// An owning pointer to one packet mbuf (a chain head). Freed when dropped; ownership passes to the driver
/// on transmit (then it is forgotten, never freed twice).
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<ffi::rte_mbuf>);

// SAFETY: an Mbuf is uniquely owned; DPDK allows an mbuf to be freed or used from any thread.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `p` must be a valid mbuf that nobody else will free or use afterwards.
    #[inline]
    pub unsafe fn from_raw(p: NonNull<ffi::rte_mbuf>) -> Mbuf {
        Mbuf(p)
    }

    /// Gives up ownership, returning the raw pointer.
    #[inline]
    pub fn into_raw(self) -> NonNull<ffi::rte_mbuf> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    #[inline(always)]
    fn raw(&self) -> &ffi::rte_mbuf {
        // SAFETY: we own a valid mbuf for as long as self lives.
        unsafe { self.0.as_ref() }
    }

    /// Bytes in the first segment.
    #[inline(always)]
    pub fn data_len(&self) -> usize {
        self.raw().data_len as usize
    }

    /// Bytes in the whole chain.
    #[inline(always)]
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Whether the packet is in one segment.
    #[inline(always)]
    pub fn is_contiguous(&self) -> bool {
        self.raw().nb_segs == 1
    }

    /// The port the packet arrived on (set by the driver).
    #[inline(always)]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// The first segment's data.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's buffer (DPDK invariant); we own
        // the mbuf, so it stays valid for the borrow of self.
        unsafe { std::slice::from_raw_parts((m.buf_addr as *const u8).add(m.data_off as usize), m.data_len as usize) }
    }

    /// Whether writing into the data is allowed: the segment is direct and referenced only by us.
    #[inline(always)]
    pub fn is_writable(&self) -> bool {
        let m = self.raw();
        // RTE_MBUF_F_INDIRECT | RTE_MBUF_F_EXTERNAL (bits 62 and 61).
        m.refcnt == 1 && (m.ol_flags & ((1u64 << 62) | (1u64 << 61))) == 0
    }

    /// The first segment's data, writable. `None` if the segment is shared with another mbuf (a clone):
    /// writing there would change the other copy too.
    #[inline(always)]
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        if !self.is_writable() {
            return None;
        }
        let m = self.raw();
        // SAFETY: as in data(); exclusive because we hold &mut self and the segment is referenced once.
        Some(unsafe {
            std::slice::from_raw_parts_mut((m.buf_addr as *mut u8).add(m.data_off as usize), m.data_len as usize)
        })
    }

    /// Free bytes before the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        // SAFETY: read-only on our mbuf.
        unsafe { ffi::shim_pktmbuf_headroom(self.0.as_ptr()) as usize }
    }

    /// Free bytes after the data in the last segment.
    #[inline]
    pub fn tailroom(&self) -> usize {
        // SAFETY: read-only on our mbuf.
        unsafe { ffi::shim_pktmbuf_tailroom(self.0.as_ptr()) as usize }
    }

    /// Grows the data at the front by `n` bytes (from the headroom); returns false if there is no room.
    #[inline]
    pub fn prepend(&mut self, n: u16) -> bool {
        // SAFETY: rte_pktmbuf_prepend checks the headroom and returns NULL if short.
        !unsafe { ffi::shim_pktmbuf_prepend(self.0.as_ptr(), n) }.is_null()
    }

    /// Grows the data at the end by `n` bytes; returns false if there is no room.
    #[inline]
    pub fn append(&mut self, n: u16) -> bool {
        // SAFETY: rte_pktmbuf_append checks the tailroom and returns NULL if short.
        !unsafe { ffi::shim_pktmbuf_append(self.0.as_ptr(), n) }.is_null()
    }

    /// Removes `n` bytes from the front; returns false if the first segment is shorter.
    #[inline]
    pub fn adj(&mut self, n: u16) -> bool {
        // SAFETY: rte_pktmbuf_adj checks the length and returns NULL if short.
        !unsafe { ffi::shim_pktmbuf_adj(self.0.as_ptr(), n) }.is_null()
    }

    /// Removes `n` bytes from the end; returns false if the last segment is shorter.
    #[inline]
    pub fn trim(&mut self, n: u16) -> bool {
        // SAFETY: rte_pktmbuf_trim checks the length and returns -1 if short.
        unsafe { ffi::shim_pktmbuf_trim(self.0.as_ptr(), n) == 0 }
    }

    /// A full copy (all segments, new buffers) from `pool`.
    pub fn copy(&self, pool: &Mempool) -> Option<Mbuf> {
        self.copy_from_pool(pool.as_ptr())
    }

    /// `rte_pktmbuf_copy` of the whole chain into buffers from `pool`; None on exhaustion.
    fn copy_from_pool(&self, pool: *mut ffi::rte_mempool) -> Option<Mbuf> {
        // SAFETY: we own a valid mbuf; pool is a valid mempool (a Mempool handle, or the pool this mbuf came
        // from); the result is a new chain we then own, or NULL.
        let p = unsafe { ffi::rte_pktmbuf_copy(self.0.as_ptr(), pool, 0, u32::MAX) };
        NonNull::new(p).map(Mbuf)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and give it back exactly once.
        unsafe { ffi::shim_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// A burst of up to `N` received mbufs, owned; whatever is left in it is freed on drop.
pub struct Burst<const N: usize> {
    ptrs: [*mut ffi::rte_mbuf; N],
    len: usize,
    next: usize,
}

impl<const N: usize> Default for Burst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Burst<N> {
    pub const fn new() -> Self {
        Burst {
            ptrs: [std::ptr::null_mut(); N],
            len: 0,
            next: 0,
        }
    }

    /// Number of mbufs not yet taken.
    pub fn len(&self) -> usize {
        self.len - self.next
    }

    pub fn is_empty(&self) -> bool {
        self.len == self.next
    }

    pub(crate) fn fill_raw(&mut self) -> *mut *mut ffi::rte_mbuf {
        debug_assert!(self.is_empty());
        self.len = 0;
        self.next = 0;
        self.ptrs.as_mut_ptr()
    }

    pub(crate) fn set_len(&mut self, n: usize) {
        debug_assert!(n <= N);
        self.len = n;
    }

    /// Takes the next mbuf out of the burst.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.next == self.len {
            return None;
        }
        let p = self.ptrs[self.next];
        self.next += 1;
        // SAFETY: slots next..len are non-null mbufs owned by the burst; this one leaves it now.
        Some(Mbuf(unsafe { NonNull::new_unchecked(p) }))
    }
}

impl<const N: usize> Drop for Burst<N> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

/// Up to `N` owned mbufs kept as raw pointers for DPDK's bulk calls; whatever it holds is freed on drop.
struct MbufArray<const N: usize> {
    ptrs: [*mut ffi::rte_mbuf; N],
    len: usize,
}

// SAFETY: owns the mbufs it holds; see Mbuf.
unsafe impl<const N: usize> Send for MbufArray<N> {}

impl<const N: usize> MbufArray<N> {
    const fn new() -> Self {
        MbufArray {
            ptrs: [std::ptr::null_mut(); N],
            len: 0,
        }
    }

    #[inline]
    fn push(&mut self, m: Mbuf) -> std::result::Result<(), Mbuf> {
        if self.len == N {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw().as_ptr();
        self.len += 1;
        Ok(())
    }

    /// Empties the array: the first `handed_over` mbufs now belong to someone else (the driver), the rest
    /// are freed with one bulk call. Returns how many were freed.
    #[inline]
    fn release(&mut self, handed_over: usize) -> usize {
        let handed_over = handed_over.min(self.len);
        let rest = self.len - handed_over;
        if rest > 0 {
            // SAFETY: slots handed_over..len hold mbufs we own; each is freed exactly once, then forgotten.
            unsafe { ffi::rte_pktmbuf_free_bulk(self.ptrs.as_mut_ptr().add(handed_over), rest as u32) };
        }
        self.len = 0;
        rest
    }
}

impl<const N: usize> Drop for MbufArray<N> {
    fn drop(&mut self) {
        self.release(0);
    }
}

/// Mbufs to free at the end of a burst, freed in bulk.
pub struct DropList<const N: usize>(MbufArray<N>);

impl<const N: usize> Default for DropList<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> DropList<N> {
    pub const fn new() -> Self {
        DropList(MbufArray::new())
    }

    /// Adds an mbuf to free; frees everything first if the list is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) {
        if let Err(m) = self.0.push(m) {
            self.0.release(0);
            // Cannot fail: the array was just emptied and N > 0 (a zero-sized list frees at once).
            if let Err(m) = self.0.push(m) {
                drop(m);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.len
    }

    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// Frees every mbuf held, with one bulk call.
    #[inline]
    pub fn free_all(&mut self) {
        self.0.release(0);
    }
}

/// Packets waiting to be sent on one tx queue, sent when full or when the owner drains it.
pub struct TxBuffer<const N: usize>(MbufArray<N>);

impl<const N: usize> Default for TxBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TxBuffer<N> {
    pub const fn new() -> Self {
        TxBuffer(MbufArray::new())
    }

    pub fn len(&self) -> usize {
        self.0.len
    }

    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.0.len == N
    }

    /// Queues an mbuf. The caller sends first ([`crate::TxQueue::send`]) when [`TxBuffer::is_full`]; if
    /// it did not, the mbuf is handed back.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> std::result::Result<(), Mbuf> {
        self.0.push(m)
    }

    /// The queued mbufs, for a transmit call: (first pointer, count). The caller hands the first `sent`
    /// to the driver and then calls [`TxBuffer::sent`].
    #[inline]
    pub(crate) fn raw(&mut self) -> (*mut *mut ffi::rte_mbuf, usize) {
        (self.0.ptrs.as_mut_ptr(), self.0.len)
    }

    /// The driver took the first `sent` mbufs; the rest are freed. Returns how many were freed.
    #[inline]
    pub(crate) fn sent(&mut self, sent: usize) -> usize {
        self.0.release(sent)
    }
}

/// Makes `d` a copy of the one-segment mbuf `src`: same headroom, length and port, the bytes copied;
/// offload flags, packet type and VLAN tags cleared. Only the first cache line of `d`'s header is
/// written, as PMDs do on receive: the second (tx_offload and the like) is read only when ol_flags asks
/// for an offload, and ol_flags is cleared. Returns `d`'s data.
///
/// # Safety
/// `d` must be a valid mbuf owned by the caller with refcnt 1, one segment and `next` NULL (as
/// `rte_mbuf_raw_alloc` and `rte_pktmbuf_alloc` give them), from a pool with `src`'s buffer size (so
/// `src.data_off + src.data_len` fits), and `src` must be one segment.
#[inline(always)]
unsafe fn copy_one_segment<'a>(d: *mut ffi::rte_mbuf, src: &ffi::rte_mbuf) -> &'a mut [u8] {
    // SAFETY: the caller's contract: d is valid and ours, the buffers are distinct and the copy fits.
    unsafe {
        let m = &mut *d;
        m.data_off = src.data_off;
        m.port = src.port;
        m.ol_flags &= 1u64 << 61; // RTE_MBUF_F_EXTERNAL stays
        m.__bindgen_anon_1.packet_type = 0;
        m.pkt_len = src.data_len as u32;
        m.data_len = src.data_len;
        m.vlan_tci = 0;
        m.vlan_tci_outer = 0;
        let to = (m.buf_addr as *mut u8).add(m.data_off as usize);
        std::ptr::copy_nonoverlapping(
            (src.buf_addr as *const u8).add(src.data_off as usize),
            to,
            src.data_len as usize,
        );
        std::slice::from_raw_parts_mut(to, src.data_len as usize)
    }
}

impl pipelines::buf::PacketBuf for Mbuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }

    #[inline(always)]
    fn data_mut(&mut self) -> Option<&mut [u8]> {
        Mbuf::data_mut(self)
    }

    #[inline(always)]
    fn headroom(&self) -> usize {
        Mbuf::headroom(self)
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        u16::try_from(n).is_ok_and(|n| Mbuf::prepend(self, n))
    }

    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        u16::try_from(n).is_ok_and(|n| Mbuf::adj(self, n))
    }

    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        u16::try_from(n).is_ok_and(|n| Mbuf::trim(self, n))
    }

    /// A full copy into a new buffer from the mbuf's own pool (ARCHITECTURE.md "Replicas": every copy but
    /// the first is a full copy, so no copy writes into a segment another shares). A packet in one segment
    /// is copied with the same headroom by one allocation from the lcore's cache and a memcpy; a chain
    /// goes through `rte_pktmbuf_copy`.
    #[inline]
    fn replica(&self) -> Option<Self> {
        let src = self.raw();
        if src.nb_segs == 1 {
            // SAFETY: pool is the valid mempool this mbuf came from; alloc returns NULL or a fresh mbuf we
            // own (one segment).
            let m = NonNull::new(unsafe { ffi::shim_pktmbuf_alloc(src.pool) })?;
            // SAFETY: m is a fresh one-segment mbuf of the source's pool, owned by us.
            unsafe { copy_one_segment(m.as_ptr(), src) };
            return Some(Mbuf(m));
        }
        self.copy_from_pool(src.pool)
    }

    /// Replicas in bulk: for each run of sources that are one segment from the same pool, the buffers
    /// come from one mempool get ([`ffi::shim_mempool_get_bulk`]); each is filled and patched before the
    /// next. Other sources, and a run the pool cannot serve whole, go one by one through
    /// [`Mbuf::replica`].
    fn replicate_into(pkts: &mut Vec<Self>, from: &[u16], mut patch: impl FnMut(usize, &mut [u8])) -> usize {
        const CHUNK: usize = 64;
        let mut made = 0;
        while made < from.len() {
            let pool = pkts[from[made] as usize].raw().pool;
            let run = from[made..from.len().min(made + CHUNK)]
                .iter()
                .take_while(|&&i| {
                    let m = pkts[i as usize].raw();
                    m.nb_segs == 1 && m.pool == pool
                })
                .count();
            let mut out = [std::ptr::null_mut::<std::ffi::c_void>(); CHUNK];
            // SAFETY: pool is the valid mempool the sources came from; out has room for run pointers, which
            // on success are mbufs we then own.
            if run > 0 && unsafe { ffi::shim_mempool_get_bulk(pool, out.as_mut_ptr(), run as u32) } == 0 {
                for (k, &p) in out[..run].iter().enumerate() {
                    let d = p.cast::<ffi::rte_mbuf>();
                    // SAFETY: d is a mbuf taken raw from the source's pool and owned by us, with refcnt 1,
                    // nb_segs 1 and next NULL (rte_mbuf_raw_alloc's guarantees); the source is one segment
                    // (checked above).
                    let bytes = unsafe { copy_one_segment(d, pkts[from[made + k] as usize].raw()) };
                    patch(made + k, bytes);
                    // SAFETY: non-null (the get succeeded), a valid mbuf owned by us from here on.
                    pkts.push(Mbuf(unsafe { NonNull::new_unchecked(d) }));
                }
                made += run;
                continue;
            }
            let Some(mut c) = pkts[from[made] as usize].replica() else {
                return made;
            };
            patch(made, c.data_mut().unwrap_or(&mut []));
            pkts.push(c);
            made += 1;
        }
        made
    }
}
