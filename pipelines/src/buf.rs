//! The packet-buffer trait the stages work on, so they run on DPDK mbufs in the appliance and on plain
//! byte buffers in tests. Encapsulation reads as prepend into the headroom, decapsulation as `adj`.

/// A packet in one contiguous segment with headroom in front of it.
pub trait PacketBuf: Sized {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable; `None` when the segment is shared with another copy (writing would
    /// change that copy too).
    fn data_mut(&mut self) -> Option<&mut [u8]>;
    /// Free bytes in front of the data.
    fn headroom(&self) -> usize;
    /// Grows the data by `n` bytes at the front; false (nothing changed) when the headroom is short.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front; false (nothing changed) when the packet is shorter.
    fn adj(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the end; false (nothing changed) when the packet is shorter.
    fn trim(&mut self, n: usize) -> bool;
    /// An independent copy for another path (never sharing a writable segment with `self`); `None` when
    /// no buffer is available.
    fn replica(&self) -> Option<Self>;

    /// Appends to `pkts` a replica of `pkts[i]` for each `i` in `from`, in that order, and returns how many
    /// it made: it stops at the first that finds no buffer. Each replica's bytes go through
    /// `patch(k, bytes)` (`k`: its position in `from`) as soon as it is made, while they are in cache (an
    /// empty slice for a replica that cannot be written in place). The caller leaves room in `pkts` for
    /// all of them. The default makes them one by one with [`PacketBuf::replica`]; an implementation may
    /// take the buffers in bulk (the mbuf does, one mempool get per call).
    fn replicate_into(pkts: &mut Vec<Self>, from: &[u16], mut patch: impl FnMut(usize, &mut [u8])) -> usize {
        for (k, &i) in from.iter().enumerate() {
            let Some(mut c) = pkts[i as usize].replica() else {
                return k;
            };
            patch(k, c.data_mut().unwrap_or(&mut []));
            pkts.push(c);
        }
        from.len()
    }

    fn len(&self) -> usize {
        self.data().len()
    }

    fn is_empty(&self) -> bool {
        self.data().is_empty()
    }
}

/// A Vec-backed buffer with headroom, for tests and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecBuf {
    buf: Vec<u8>,
    start: usize,
}

impl VecBuf {
    /// `data` with `headroom` free bytes in front.
    pub fn new(data: &[u8], headroom: usize) -> VecBuf {
        let mut buf = vec![0u8; headroom + data.len()];
        buf[headroom..].copy_from_slice(data);
        VecBuf { buf, start: headroom }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl PacketBuf for VecBuf {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn data_mut(&mut self) -> Option<&mut [u8]> {
        Some(&mut self.buf[self.start..])
    }

    fn headroom(&self) -> usize {
        self.start
    }

    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }

    fn adj(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.start += n;
        true
    }

    fn trim(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.buf.truncate(self.buf.len() - n);
        true
    }

    fn replica(&self) -> Option<Self> {
        Some(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_adj_trim() {
        let mut b = VecBuf::new(&[1, 2, 3, 4], 4);
        assert!(!b.prepend(5));
        assert!(b.prepend(2));
        assert_eq!(b.data(), &[0, 0, 1, 2, 3, 4]);
        assert_eq!(b.headroom(), 2);
        assert!(b.adj(3));
        assert!(b.trim(1));
        assert_eq!(b.data(), &[2, 3]);
        assert!(!b.adj(3) && !b.trim(3));
        let mut r = b.replica().unwrap();
        r.data_mut().unwrap()[0] = 9;
        assert_eq!(b.data(), &[2, 3], "a replica never shares bytes");
    }
}
