//! UDP (RFC 768).
use super::{be16, set_be16, Error, Layer};
use crate::checksum;
use std::net::Ipv4Addr;

pub mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram (the IPv4 payload).
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }

    /// Checks that the header fits and that the length field lies between 8 and the buffer's length.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated {
                layer: Layer::Udp,
                need: HEADER_LEN,
                have: b.len(),
            });
        }
        let len = be16(b, field::LENGTH) as usize;
        if len < HEADER_LEN {
            return Err(Error::Malformed {
                layer: Layer::Udp,
                field: "length",
            });
        }
        if len > b.len() {
            return Err(Error::Truncated {
                layer: Layer::Udp,
                need: len,
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

    pub fn len(&self) -> usize {
        be16(self.buf.as_ref(), field::LENGTH) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), field::CHECKSUM)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..self.len()]
    }

    /// Verifies the checksum over the pseudo-header; a zero checksum (none sent) verifies.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let d = &self.buf.as_ref()[..self.len()];
        checksum::sum(d, pseudo_header_sum(src, dst, 17, d.len())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set_be16(self.buf.as_mut(), field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        set_be16(self.buf.as_mut(), field::DST_PORT, v);
    }

    pub fn set_len(&mut self, v: u16) {
        set_be16(self.buf.as_mut(), field::LENGTH, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buf.as_mut(), field::CHECKSUM, v);
    }

    /// Computes the checksum over the pseudo-header; 0 is sent as 0xffff (RFC 768).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.len();
        let d = &self.buf.as_ref()[..len];
        let c = !(checksum::sum(d, pseudo_header_sum(src, dst, 17, len)) as u16);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

/// One's-complement sum of the IPv4 pseudo-header (RFC 768/793), unfolded-safe as an initial value.
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    u16::from_be_bytes([s[0], s[1]]) as u32
        + u16::from_be_bytes([s[2], s[3]]) as u32
        + u16::from_be_bytes([d[0], d[1]]) as u32
        + u16::from_be_bytes([d[2], d[3]]) as u32
        + proto as u32
        + len as u32
}

/// A UDP header, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: p.len() - HEADER_LEN,
        }
    }

    /// Writes the 8-byte header with checksum 0 ("none", allowed over IPv4).
    pub fn emit(&self, buf: &mut [u8]) {
        set_be16(buf, field::SRC_PORT, self.src_port);
        set_be16(buf, field::DST_PORT, self.dst_port);
        set_be16(buf, field::LENGTH, (HEADER_LEN + self.payload_len) as u16);
        set_be16(buf, field::CHECKSUM, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths() {
        let mut b = [0u8; 12];
        Repr {
            src_port: 1,
            dst_port: 2,
            payload_len: 4,
        }
        .emit(&mut b);
        assert!(Packet::new_checked(&b[..]).is_ok());
        assert!(matches!(
            Packet::new_checked(&b[..11]),
            Err(Error::Truncated { need: 12, have: 11, .. })
        ));
        assert!(matches!(
            Packet::new_checked(&b[..7]),
            Err(Error::Truncated { need: 8, .. })
        ));
        set_be16(&mut b, field::LENGTH, 7);
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(Error::Malformed { field: "length", .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip_and_checksum_agrees_with_etherparse(sp in any::<u16>(), dp in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..64), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>()) {
            let r = Repr { src_port: sp, dst_port: dp, payload_len: payload.len() };
            let mut b = vec![0u8; 8 + payload.len()];
            r.emit(&mut b);
            b[8..].copy_from_slice(&payload);
            let mut p = Packet::new_checked(&mut b[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p), r);
            p.fill_checksum(src.into(), dst.into());
            prop_assert!(p.verify_checksum(src.into(), dst.into()));
            let h = etherparse::UdpHeader::from_slice(&b).unwrap().0;
            let expect = h.calc_checksum_ipv4_raw(src, dst, &payload).unwrap();
            prop_assert_eq!(h.checksum, expect);
        }

        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (Repr::parse(&p), p.payload().len(), p.verify_checksum([1, 2, 3, 4].into(), [5, 6, 7, 8].into()));
            }
        }
    }
}
