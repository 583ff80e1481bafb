//! ARP for IPv4 over Ethernet (RFC 826).
use super::{be16, set_be16, Error, Layer, MacAddr};
use std::net::Ipv4Addr;

pub mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const LEN: usize = 28;

pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }

    /// Checks the length and that the packet is Ethernet (1) / IPv4 (0x0800) with lengths 6 and 4.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < LEN {
            return Err(Error::Truncated {
                layer: Layer::Arp,
                need: LEN,
                have: b.len(),
            });
        }
        if be16(b, field::HTYPE) != 1 || b[field::HLEN] != 6 {
            return Err(Error::Malformed {
                layer: Layer::Arp,
                field: "hardware type",
            });
        }
        if be16(b, field::PTYPE) != 0x0800 || b[field::PLEN] != 4 {
            return Err(Error::Malformed {
                layer: Layer::Arp,
                field: "protocol type",
            });
        }
        Ok(Packet { buf })
    }

    pub fn operation(&self) -> u16 {
        be16(self.buf.as_ref(), field::OPER)
    }

    fn mac_at(&self, at: usize) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[at..at + 6]);
        MacAddr(m)
    }

    fn ip_at(&self, at: usize) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }

    pub fn sender_mac(&self) -> MacAddr {
        self.mac_at(field::SHA)
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip_at(field::SPA)
    }

    pub fn target_mac(&self) -> MacAddr {
        self.mac_at(field::THA)
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip_at(field::TPA)
    }
}

/// An Ethernet/IPv4 ARP packet, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub operation: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            operation: p.operation(),
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        }
    }

    /// Writes the 28-byte packet into `buf` (at least [`LEN`] bytes).
    pub fn emit(&self, buf: &mut [u8]) {
        set_be16(buf, field::HTYPE, 1);
        set_be16(buf, field::PTYPE, 0x0800);
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
        set_be16(buf, field::OPER, self.operation);
        buf[field::SHA..field::SHA + 6].copy_from_slice(&self.sender_mac.0);
        buf[field::SPA..field::SPA + 4].copy_from_slice(&self.sender_ip.octets());
        buf[field::THA..field::THA + 6].copy_from_slice(&self.target_mac.0);
        buf[field::TPA..field::TPA + 4].copy_from_slice(&self.target_ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_non_ethernet_ipv4() {
        let mut b = [0u8; LEN];
        Repr {
            operation: 1,
            sender_mac: MacAddr([2; 6]),
            sender_ip: Ipv4Addr::new(1, 2, 3, 4),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(1, 2, 3, 5),
        }
        .emit(&mut b);
        assert!(Packet::new_checked(&b[..]).is_ok());
        b[field::PLEN] = 16;
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(Error::Malformed {
                field: "protocol type",
                ..
            })
        ));
        b[field::PLEN] = 4;
        b[field::HTYPE + 1] = 6;
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(Error::Malformed {
                field: "hardware type",
                ..
            })
        ));
        assert!(matches!(
            Packet::new_checked(&b[..27]),
            Err(Error::Truncated { need: 28, have: 27, .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(op in any::<u16>(), sm in any::<[u8; 6]>(), si in any::<[u8; 4]>(), tm in any::<[u8; 6]>(), ti in any::<[u8; 4]>()) {
            let r = Repr { operation: op, sender_mac: MacAddr(sm), sender_ip: si.into(), target_mac: MacAddr(tm), target_ip: ti.into() };
            let mut b = [0u8; LEN];
            r.emit(&mut b);
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()), r);
        }

        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = Repr::parse(&p);
            }
        }
    }
}
