//! Header views over bytes, in the style of smoltcp: `new_checked` validates the length once for untrusted
//! input, after which no accessor can panic; `new_unchecked` is for buffers we build ourselves (its
//! accessors may panic on a short buffer). Each view has an owned `Repr` that parses and emits, so round trips
//! compare with `==`.

pub mod arp;
pub mod ethernet;
pub mod geneve;
pub mod icmpv4;
pub mod ipv4;
pub mod tcp;
pub mod udp;

use std::fmt;

/// Where and why a header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the layer needs.
    Truncated { layer: Layer, need: usize, have: usize },
    /// A field holds a value the layer cannot carry (a length below its minimum, a wrong version).
    Malformed { layer: Layer, field: &'static str },
}

/// A protocol layer, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Ethernet,
    Arp,
    Ipv4,
    Icmpv4,
    Udp,
    Tcp,
    Geneve,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { layer, need, have } => {
                write!(f, "{layer:?} truncated: need {need} bytes, have {have}")
            }
            Error::Malformed { layer, field } => write!(f, "{layer:?} malformed: {field}"),
        }
    }
}

impl std::error::Error for Error {}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit set (broadcast included).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for MacAddr {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or("a MAC address has six hex bytes")?;
            if p.len() != 2 {
                return Err("a MAC address has six two-digit hex bytes");
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| "a MAC address has six hex bytes")?;
        }
        if parts.next().is_some() {
            return Err("a MAC address has six hex bytes");
        }
        Ok(MacAddr(out))
    }
}

#[inline(always)]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub(crate) fn set_be16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_print() {
        let m: MacAddr = "02:00:0a:0b:0C:ff".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0x0a, 0x0b, 0x0c, 0xff]);
        assert_eq!(m.to_string(), "02:00:0a:0b:0c:ff");
        assert!(m.is_unicast());
        assert!("02:00:0a:0b:0c".parse::<MacAddr>().is_err());
        assert!("02:00:0a:0b:0c:ff:01".parse::<MacAddr>().is_err());
        assert!("02:00:0a:0b:0c:fg".parse::<MacAddr>().is_err());
        assert!("020:0:0a:0b:0c:ff".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast() && !MacAddr::BROADCAST.is_unicast());
    }
}
