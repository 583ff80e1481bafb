//! ICMPv4 (RFC 792): enough for echo.
use super::{be16, set_be16, Error, Layer};
use crate::checksum;

pub mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const IDENT: usize = 4;
    pub const SEQ: usize = 6;
    pub const DATA: usize = 8;
}

pub const HEADER_LEN: usize = 8;

pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 8;
pub const TYPE_TIME_EXCEEDED: u8 = 11;

/// A view of an ICMPv4 message (the whole IPv4 payload).
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }

    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let have = buf.as_ref().len();
        if have < HEADER_LEN {
            return Err(Error::Truncated {
                layer: Layer::Icmpv4,
                need: HEADER_LEN,
                have,
            });
        }
        Ok(Packet { buf })
    }

    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buf.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), field::CHECKSUM)
    }

    pub fn echo_ident(&self) -> u16 {
        be16(self.buf.as_ref(), field::IDENT)
    }

    pub fn echo_seq(&self) -> u16 {
        be16(self.buf.as_ref(), field::SEQ)
    }

    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[field::DATA..]
    }

    /// Verifies the checksum over the whole message.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buf.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, t: u8) {
        self.buf.as_mut()[field::TYPE] = t;
    }

    pub fn set_code(&mut self, c: u8) {
        self.buf.as_mut()[field::CODE] = c;
    }

    pub fn set_checksum(&mut self, c: u16) {
        set_be16(self.buf.as_mut(), field::CHECKSUM, c);
    }

    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buf.as_ref());
        self.set_checksum(c);
    }

    /// Turns an echo request into its reply in place: type 8 -> 0, checksum patched incrementally.
    pub fn echo_request_to_reply(&mut self) {
        let old = be16(self.buf.as_ref(), field::TYPE);
        self.set_msg_type(TYPE_ECHO_REPLY);
        let new = be16(self.buf.as_ref(), field::TYPE);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
    }
}

/// An ICMP echo message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoRepr {
    pub request: bool,
    pub ident: u16,
    pub seq: u16,
    pub data: Vec<u8>,
}

impl EchoRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Option<EchoRepr> {
        let request = match p.msg_type() {
            TYPE_ECHO_REQUEST => true,
            TYPE_ECHO_REPLY => false,
            _ => return None,
        };
        Some(EchoRepr {
            request,
            ident: p.echo_ident(),
            seq: p.echo_seq(),
            data: p.data().to_vec(),
        })
    }

    pub fn len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the message with a correct checksum into `buf` (exactly `len()` bytes).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[field::TYPE] = if self.request {
            TYPE_ECHO_REQUEST
        } else {
            TYPE_ECHO_REPLY
        };
        buf[field::CODE] = 0;
        set_be16(buf, field::IDENT, self.ident);
        set_be16(buf, field::SEQ, self.seq);
        buf[field::DATA..field::DATA + self.data.len()].copy_from_slice(&self.data);
        Packet::new_unchecked(&mut buf[..self.len()]).fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn echo_round_trip_and_reply(ident in any::<u16>(), seq in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let r = EchoRepr { request: true, ident, seq, data };
            let mut b = vec![0u8; r.len()];
            r.emit(&mut b);
            let p = Packet::new_checked(&b[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(EchoRepr::parse(&p).unwrap(), r.clone());
            let mut p = Packet::new_checked(&mut b[..]).unwrap();
            p.echo_request_to_reply();
            prop_assert!(p.verify_checksum());
            let reply = EchoRepr::parse(&p).unwrap();
            prop_assert_eq!(reply, EchoRepr { request: false, ..r });
        }

        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (EchoRepr::parse(&p), p.verify_checksum());
            }
        }
    }

    #[test]
    fn truncated() {
        assert!(matches!(
            Packet::new_checked(&[0u8; 7][..]),
            Err(Error::Truncated { need: 8, have: 7, .. })
        ));
    }
}
