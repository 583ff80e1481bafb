//! IPv4 (RFC 791).
use super::{be16, set_be16, Error, Layer};
use crate::checksum;
use std::net::Ipv4Addr;

pub mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

pub const MIN_HEADER_LEN: usize = 20;

pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET: u16 = 0x1fff;

/// A view of an IPv4 packet. The buffer may be longer than the packet (Ethernet padding); `payload` stops
/// at the total length.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }

    /// Checks version, header length and total length against the buffer. The checksum is checked
    /// separately ([`Packet::verify_checksum`]), since a forwarder may want to tell the two apart.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        let have = b.len();
        if have < MIN_HEADER_LEN {
            return Err(Error::Truncated {
                layer: Layer::Ipv4,
                need: MIN_HEADER_LEN,
                have,
            });
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(Error::Malformed {
                layer: Layer::Ipv4,
                field: "version",
            });
        }
        let ihl = ((b[field::VER_IHL] & 0x0f) as usize) * 4;
        if ihl < MIN_HEADER_LEN {
            return Err(Error::Malformed {
                layer: Layer::Ipv4,
                field: "header length",
            });
        }
        if ihl > have {
            return Err(Error::Truncated {
                layer: Layer::Ipv4,
                need: ihl,
                have,
            });
        }
        let total = be16(b, field::TOTAL_LEN) as usize;
        if total < ihl {
            return Err(Error::Malformed {
                layer: Layer::Ipv4,
                field: "total length",
            });
        }
        if total > have {
            return Err(Error::Truncated {
                layer: Layer::Ipv4,
                need: total,
                have,
            });
        }
        Ok(Packet { buf })
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn version(&self) -> u8 {
        self.buf.as_ref()[field::VER_IHL] >> 4
    }

    pub fn header_len(&self) -> usize {
        ((self.buf.as_ref()[field::VER_IHL] & 0x0f) as usize) * 4
    }

    pub fn dscp_ecn(&self) -> u8 {
        self.buf.as_ref()[field::DSCP_ECN]
    }

    pub fn total_len(&self) -> usize {
        be16(self.buf.as_ref(), field::TOTAL_LEN) as usize
    }

    pub fn ident(&self) -> u16 {
        be16(self.buf.as_ref(), field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        be16(self.buf.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buf.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        ((be16(self.buf.as_ref(), field::FLAGS_FRAG) & FRAG_OFFSET) as usize) * 8
    }

    /// Whether this is a fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        be16(self.buf.as_ref(), field::FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), field::CHECKSUM)
    }

    pub fn src(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::verify(&self.buf.as_ref()[..self.header_len()])
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_ttl(&mut self, v: u8) {
        self.buf.as_mut()[field::TTL] = v;
    }

    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::SRC..field::SRC + 4].copy_from_slice(&a.octets());
    }

    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::DST..field::DST + 4].copy_from_slice(&a.octets());
    }

    pub fn set_checksum(&mut self, c: u16) {
        set_be16(self.buf.as_mut(), field::CHECKSUM, c);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(&self.buf.as_ref()[..self.header_len()]);
        self.set_checksum(c);
    }

    /// Sets the TTL and patches the header checksum incrementally (RFC 1624).
    pub fn set_ttl_patch_checksum(&mut self, ttl: u8) {
        // TTL and protocol share one 16-bit word of the checksum.
        let old = be16(self.buf.as_ref(), field::TTL);
        let new = ((ttl as u16) << 8) | (old & 0xff);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_ttl(ttl);
        self.set_checksum(c);
    }

    /// Decrements the TTL, patching the checksum. The caller checked TTL > 0.
    pub fn decrement_ttl(&mut self) {
        let ttl = self.ttl().saturating_sub(1);
        self.set_ttl_patch_checksum(ttl);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), self.total_len());
        &mut self.buf.as_mut()[h..t]
    }
}

/// An IPv4 header without options, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub dscp_ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    /// Length of the payload in bytes.
    pub payload_len: usize,
}

impl Repr {
    /// Parses a checked packet (the checksum is not verified here).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            ttl: p.ttl(),
            dscp_ecn: p.dscp_ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            payload_len: p.total_len() - p.header_len(),
        }
    }

    /// Writes a 20-byte header (no options) with a correct checksum into `buf`. The checksum is computed
    /// from the field values, so the header is written once and never read back.
    pub fn emit(&self, buf: &mut [u8]) {
        let total = (MIN_HEADER_LEN + self.payload_len) as u16;
        let flags = if self.dont_frag { FLAG_DF } else { 0 };
        let (s, d) = (u32::from(self.src), u32::from(self.dst));
        let words = [
            0x4500 | self.dscp_ecn as u16,
            total,
            self.ident,
            flags,
            (self.ttl as u16) << 8 | self.protocol as u16,
            (s >> 16) as u16,
            s as u16,
            (d >> 16) as u16,
            d as u16,
        ];
        let acc: u64 = words.iter().map(|&w| w as u64).sum();
        let csum = !(crate::checksum::fold(acc) as u16);
        let h = &mut buf[..MIN_HEADER_LEN];
        h[field::VER_IHL] = 0x45;
        h[field::DSCP_ECN] = self.dscp_ecn;
        set_be16(h, field::TOTAL_LEN, total);
        set_be16(h, field::IDENT, self.ident);
        set_be16(h, field::FLAGS_FRAG, flags);
        h[field::TTL] = self.ttl;
        h[field::PROTOCOL] = self.protocol;
        set_be16(h, field::CHECKSUM, csum);
        h[field::SRC..field::SRC + 4].copy_from_slice(&s.to_be_bytes());
        h[field::DST..field::DST + 4].copy_from_slice(&d.to_be_bytes());
    }
}

/// Whether `a` is usable as a source address on the wire (not multicast, broadcast, loopback or
/// "this network").
/// The source and destination addresses of the IPv4 header behind an Ethernet header in `frame`, when
/// the frame is long enough to hold them (nothing else is checked: for packets a stage validated).
#[inline]
pub fn addrs_in_frame(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let h = frame.get(super::ethernet::HEADER_LEN..super::ethernet::HEADER_LEN + field::DST + 4)?;
    let addr = |at: usize| Ipv4Addr::new(h[at], h[at + 1], h[at + 2], h[at + 3]);
    Some((addr(field::SRC), addr(field::DST)))
}

pub fn valid_source(a: Ipv4Addr) -> bool {
    !(a.is_multicast() || a.is_broadcast() || a.is_loopback() || a.octets()[0] == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let r = Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: protocol::UDP,
            ttl: 64,
            dscp_ecn: 0,
            ident: 7,
            dont_frag: true,
            payload_len: 8,
        };
        let mut b = vec![0u8; 28];
        r.emit(&mut b);
        b
    }

    #[test]
    fn checked_errors() {
        let b = sample();
        assert!(Packet::new_checked(&b[..]).unwrap().verify_checksum());
        assert!(matches!(
            Packet::new_checked(&b[..19]),
            Err(Error::Truncated { need: 20, have: 19, .. })
        ));
        let mut v = b.clone();
        v[0] = 0x65;
        assert!(matches!(
            Packet::new_checked(&v[..]),
            Err(Error::Malformed { field: "version", .. })
        ));
        let mut v = b.clone();
        v[0] = 0x44;
        assert!(matches!(
            Packet::new_checked(&v[..]),
            Err(Error::Malformed {
                field: "header length",
                ..
            })
        ));
        let mut v = b.clone();
        v[0] = 0x4f; // 60-byte header in a 28-byte buffer
        assert!(matches!(
            Packet::new_checked(&v[..]),
            Err(Error::Truncated { need: 60, .. })
        ));
        let mut v = b.clone();
        set_be16(&mut v, field::TOTAL_LEN, 19);
        assert!(matches!(
            Packet::new_checked(&v[..]),
            Err(Error::Malformed {
                field: "total length",
                ..
            })
        ));
        let mut v = b.clone();
        set_be16(&mut v, field::TOTAL_LEN, 29);
        assert!(matches!(
            Packet::new_checked(&v[..]),
            Err(Error::Truncated { need: 29, have: 28, .. })
        ));
        let mut v = b;
        v[field::CHECKSUM] ^= 1;
        assert!(!Packet::new_checked(&v[..]).unwrap().verify_checksum());
    }

    #[test]
    fn padding_is_not_payload() {
        let mut b = sample();
        b.extend_from_slice(&[0xee; 18]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn fragments() {
        let mut b = sample();
        assert!(!Packet::new_checked(&b[..]).unwrap().is_fragment());
        set_be16(&mut b, field::FLAGS_FRAG, 0x2000);
        assert!(Packet::new_checked(&b[..]).unwrap().is_fragment());
        set_be16(&mut b, field::FLAGS_FRAG, 0x0003);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 24);
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid_and_matches_etherparse() {
        let mut b = sample();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        let (h, _) = etherparse::Ipv4Header::from_slice(&b).unwrap();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
    }

    proptest! {
        #[test]
        fn round_trip(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), proto in any::<u8>(), ttl in any::<u8>(), tos in any::<u8>(), id in any::<u16>(), df in any::<bool>(), len in 0usize..100) {
            let r = Repr { src: src.into(), dst: dst.into(), protocol: proto, ttl, dscp_ecn: tos, ident: id, dont_frag: df, payload_len: len };
            let mut b = vec![0u8; 20 + len];
            r.emit(&mut b);
            let p = Packet::new_checked(&b[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Repr::parse(&p), r);
            // An independent parser agrees on the checksum.
            let (h, _) = etherparse::Ipv4Header::from_slice(&b).unwrap();
            prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
        }

        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (Repr::parse(&p), p.verify_checksum(), p.payload().len(), p.is_fragment());
            }
        }
    }
}
