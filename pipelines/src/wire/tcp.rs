//! TCP (RFC 9293): the header and its options, enough to read flags and clamp the MSS.
use super::{be16, set_be16, Error, Layer};
use crate::checksum;

pub mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS: usize = 20;
}

pub const MIN_HEADER_LEN: usize = 20;

pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// A view of a TCP segment (the IPv4 payload).
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }

    /// Checks that the header, options included, fits in the buffer.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Error::Truncated {
                layer: Layer::Tcp,
                need: MIN_HEADER_LEN,
                have: b.len(),
            });
        }
        let off = ((b[field::DATA_OFF] >> 4) as usize) * 4;
        if off < MIN_HEADER_LEN {
            return Err(Error::Malformed {
                layer: Layer::Tcp,
                field: "data offset",
            });
        }
        if off > b.len() {
            return Err(Error::Truncated {
                layer: Layer::Tcp,
                need: off,
                have: b.len(),
            });
        }
        Ok(Packet { buf })
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), field::DST_PORT)
    }

    pub fn header_len(&self) -> usize {
        ((self.buf.as_ref()[field::DATA_OFF] >> 4) as usize) * 4
    }

    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[field::FLAGS]
    }

    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), field::CHECKSUM)
    }

    fn options(&self) -> &[u8] {
        &self.buf.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// Offset (from the start of the segment) and value of the MSS option, if present and well formed.
    pub fn mss_option(&self) -> Option<(usize, u16)> {
        let opts = self.options();
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                OPT_END => return None,
                OPT_NOP => i += 1,
                kind => {
                    let len = *opts.get(i + 1)? as usize;
                    if len < 2 || i + len > opts.len() {
                        return None; // malformed option list: leave it alone
                    }
                    if kind == OPT_MSS && len == 4 {
                        return Some((field::OPTIONS + i + 2, be16(opts, i + 2)));
                    }
                    i += len;
                }
            }
        }
        None
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Lowers the MSS option to `max` if it is larger, patching the checksum incrementally (RFC 1624).
    /// Returns the previous value when it changed.
    pub fn clamp_mss(&mut self, max: u16) -> Option<u16> {
        let (at, mss) = self.mss_option()?;
        if mss <= max {
            return None;
        }
        let csum = self.checksum();
        let b = self.buf.as_mut();
        set_be16(b, at, max);
        // The option may start at an odd offset in the segment; the checksum sums aligned 16-bit words.
        let c = if at % 2 == 0 {
            checksum::update16(csum, mss, max)
        } else {
            let (o, n) = (mss.to_be_bytes(), max.to_be_bytes());
            let c = checksum::update16(
                csum,
                u16::from_be_bytes([b[at - 1], o[0]]),
                u16::from_be_bytes([b[at - 1], n[0]]),
            );
            checksum::update16(
                c,
                u16::from_be_bytes([o[1], b[at + 2]]),
                u16::from_be_bytes([n[1], b[at + 2]]),
            )
        };
        set_be16(b, field::CHECKSUM, c);
        Some(mss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, TcpOptionElement};
    use proptest::prelude::*;

    fn syn(opts: &[TcpOptionElement]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1234, 80, 1, 65535)
            .syn()
            .options(opts)
            .unwrap();
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    fn checksum_ok(seg: &[u8]) -> bool {
        let (h, payload) = etherparse::TcpHeader::from_slice(seg).unwrap();
        h.checksum == h.calc_checksum_ipv4_raw([10, 0, 0, 1], [10, 0, 0, 2], payload).unwrap()
    }

    #[test]
    fn clamp_even_and_odd_offsets() {
        use TcpOptionElement::*;
        for opts in [
            vec![MaximumSegmentSize(1460), WindowScale(7)],
            vec![Noop, MaximumSegmentSize(1460), Noop, Noop, Noop],
            vec![SelectiveAcknowledgementPermitted, Noop, MaximumSegmentSize(8960)],
            vec![Noop, Noop, Noop, MaximumSegmentSize(1500)],
        ] {
            let mut pkt = syn(&opts);
            let seg = &mut pkt[20..];
            let mut t = Packet::new_checked(&mut *seg).unwrap();
            assert!(t.syn());
            let before = t.mss_option().unwrap().1;
            assert_eq!(t.clamp_mss(1396), Some(before), "{opts:?}");
            assert_eq!(t.mss_option().unwrap().1, 1396);
            assert!(checksum_ok(seg), "{opts:?}");
            let mut t = Packet::new_checked(&mut *seg).unwrap();
            assert_eq!(t.clamp_mss(1400), None, "already small enough");
        }
    }

    #[test]
    fn no_or_malformed_options_are_left_alone() {
        let mut pkt = syn(&[TcpOptionElement::WindowScale(3)]);
        let mut t = Packet::new_checked(&mut pkt[20..]).unwrap();
        assert_eq!(t.clamp_mss(100), None);
        let mut seg = syn(&[TcpOptionElement::MaximumSegmentSize(1460)])[20..].to_vec();
        seg[21] = 40; // option length beyond the header
        let t = Packet::new_checked(&seg[..]).unwrap();
        assert_eq!(t.mss_option(), None);
        seg[20 - 8] = 0x40; // data offset 4 words
        assert!(matches!(
            Packet::new_checked(&seg[..]),
            Err(Error::Malformed {
                field: "data offset",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn clamp_keeps_checksum_valid(mss in 500u16..9000, max in 500u16..9000, pad in 0usize..3) {
            let mut opts = vec![TcpOptionElement::Noop; pad];
            opts.push(TcpOptionElement::MaximumSegmentSize(mss));
            let mut pkt = syn(&opts);
            let mut t = Packet::new_checked(&mut pkt[20..]).unwrap();
            t.clamp_mss(max);
            prop_assert_eq!(t.mss_option().unwrap().1, mss.min(max));
            prop_assert!(checksum_ok(&pkt[20..]));
        }

        #[test]
        fn any_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..80), max in any::<u16>()) {
            if let Ok(mut p) = Packet::new_checked(&mut b[..]) {
                let _ = (p.mss_option(), p.flags());
                let _ = p.clamp_mss(max);
            }
        }
    }
}
