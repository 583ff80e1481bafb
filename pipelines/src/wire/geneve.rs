//! Geneve (RFC 8926) and this project's option.
//!
//! Base header, 8 bytes:
//! ```text
//!  0                   1                   2                   3
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! ```
//! Options follow: class (16), type (8, high bit = critical), 3 reserved bits and a 5-bit length in 4-byte
//! words, then the data.
//!
//! The overlay option (ARCHITECTURE.md, "Decisions"): class 0xFFF0 (experimental range), type 0x81
//! (critical, so a receiver that does not know it drops the packet), length 6 words = 24 bytes of data, all
//! fields in network order:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | version (high 4 bits, 1) and flags (low 4 bits: 0x1 probe, 0x2 probe reply) |
//! | 1 | hop count (decremented by each relay; dropped at 0) |
//! | 2 | path id |
//! | 3 | reserved, 0 |
//! | 4-5 | sender node id |
//! | 6-7 | destination node id |
//! | 8-9 | stream id |
//! | 10-11 | key id (0 until the overlay is authenticated) |
//! | 12-15 | sequence number (per sender node and stream, wraps) |
//! | 16-23 | transmit timestamp, ns of the sender's monotonic clock |
//!
//! The base header this project sends: version 0, C bit set, protocol 0x0800 (inner IPv4), VNI = the
//! application id.
use super::{be16, set_be16, Error, Layer};

pub mod field {
    //! Offsets in the Geneve base header, and in the header of the first option behind it.
    /// Version (2 bits) and option length in 4-byte words (6 bits).
    pub const VER_OPT_LEN: usize = 0;
    /// The O (control) and C (critical options) bits.
    pub const FLAGS: usize = 1;
    pub const PROTOCOL: usize = 2;
    /// 3 bytes, then a reserved byte.
    pub const VNI: usize = 4;
    pub const OPT_CLASS: usize = super::HEADER_LEN;
    pub const OPT_TYPE: usize = super::HEADER_LEN + 2;
    /// Reserved bits (3) and the option's data length in 4-byte words (5 bits).
    pub const OPT_DATA_WORDS: usize = super::HEADER_LEN + 3;
}

pub const HEADER_LEN: usize = 8;
pub const PORT: u16 = 6081;
pub const PROTO_IPV4: u16 = 0x0800;
pub const OPT_CLASS: u16 = 0xFFF0;
pub const OPT_TYPE: u8 = 0x81;
/// Data bytes of the overlay option.
pub const OPT_DATA_LEN: usize = 24;
/// The overlay option with its 4-byte option header.
pub const OPT_LEN: usize = 4 + OPT_DATA_LEN;
/// The Geneve header this project sends: base header plus the overlay option.
pub const OVERLAY_GENEVE_LEN: usize = HEADER_LEN + OPT_LEN;
pub const OPT_VERSION: u8 = 1;
pub const FLAG_PROBE: u8 = 0x1;
pub const FLAG_PROBE_REPLY: u8 = 0x2;

const C_BIT: u8 = 0x40;
const O_BIT: u8 = 0x80;

/// A view of a Geneve header with its options (the UDP payload).
#[derive(Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Header { buf }
    }

    /// Checks version 0 and that the options fit in the buffer.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated {
                layer: Layer::Geneve,
                need: HEADER_LEN,
                have: b.len(),
            });
        }
        if b[field::VER_OPT_LEN] >> 6 != 0 {
            return Err(Error::Malformed {
                layer: Layer::Geneve,
                field: "version",
            });
        }
        let need = HEADER_LEN + ((b[field::VER_OPT_LEN] & 0x3f) as usize) * 4;
        if need > b.len() {
            return Err(Error::Truncated {
                layer: Layer::Geneve,
                need,
                have: b.len(),
            });
        }
        Ok(Header { buf })
    }

    /// Base header plus options, in bytes.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + ((self.buf.as_ref()[field::VER_OPT_LEN] & 0x3f) as usize) * 4
    }

    pub fn oam(&self) -> bool {
        self.buf.as_ref()[field::FLAGS] & O_BIT != 0
    }

    pub fn critical(&self) -> bool {
        self.buf.as_ref()[field::FLAGS] & C_BIT != 0
    }

    pub fn protocol(&self) -> u16 {
        be16(self.buf.as_ref(), field::PROTOCOL)
    }

    pub fn vni(&self) -> u32 {
        let b = self.buf.as_ref();
        let v = field::VNI;
        u32::from_be_bytes([0, b[v], b[v + 1], b[v + 2]])
    }

    /// The options as (class, type, data), in order; stops at the first option that does not fit.
    pub fn options(&self) -> Options<'_> {
        Options {
            b: &self.buf.as_ref()[HEADER_LEN..self.header_len()],
        }
    }

    /// The data of the overlay option (class 0xFFF0, type 0x81, 24 bytes), if present. `Err` when an
    /// option list is malformed or a critical option other than ours is present (RFC 8926: drop).
    pub fn overlay_option(&self) -> Result<Option<&[u8]>, Error> {
        let mut found = None;
        let opts = &self.buf.as_ref()[HEADER_LEN..self.header_len()];
        let mut i = 0;
        while i < opts.len() {
            if i + 4 > opts.len() {
                return Err(Error::Malformed {
                    layer: Layer::Geneve,
                    field: "option length",
                });
            }
            let class = be16(opts, i);
            let typ = opts[i + 2];
            let len = ((opts[i + 3] & 0x1f) as usize) * 4;
            if i + 4 + len > opts.len() {
                return Err(Error::Malformed {
                    layer: Layer::Geneve,
                    field: "option length",
                });
            }
            if class == OPT_CLASS && typ == OPT_TYPE {
                if len != OPT_DATA_LEN {
                    return Err(Error::Malformed {
                        layer: Layer::Geneve,
                        field: "overlay option length",
                    });
                }
                if found.is_none() {
                    found = Some(&opts[i + 4..i + 4 + len]);
                }
            } else if typ & 0x80 != 0 {
                return Err(Error::Malformed {
                    layer: Layer::Geneve,
                    field: "unknown critical option",
                });
            }
            i += 4 + len;
        }
        Ok(found)
    }
}

/// Iterator over Geneve options.
pub struct Options<'a> {
    b: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = (u16, u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.b.len() < 4 {
            return None;
        }
        let len = ((self.b[3] & 0x1f) as usize) * 4;
        if 4 + len > self.b.len() {
            return None;
        }
        let item = (be16(self.b, 0), self.b[2], &self.b[4..4 + len]);
        self.b = &self.b[4 + len..];
        Some(item)
    }
}

/// The fields of the overlay option, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptRepr {
    pub flags: u8,
    pub hops: u8,
    pub path: u8,
    pub sender: u16,
    pub dest: u16,
    pub stream: u16,
    pub key: u16,
    pub seq: u32,
    pub tstamp: u64,
}

pub mod opt {
    //! Offsets inside the option data.
    pub const VER_FLAGS: usize = 0;
    pub const HOPS: usize = 1;
    pub const PATH: usize = 2;
    pub const SENDER: usize = 4;
    pub const DEST: usize = 6;
    pub const STREAM: usize = 8;
    pub const KEY: usize = 10;
    pub const SEQ: usize = 12;
    pub const TSTAMP: usize = 16;
}

impl OptRepr {
    /// Parses the 24 data bytes of the option; `None` for another version or a short slice.
    pub fn parse(d: &[u8]) -> Option<OptRepr> {
        if d.len() < OPT_DATA_LEN || d[opt::VER_FLAGS] >> 4 != OPT_VERSION {
            return None;
        }
        Some(OptRepr {
            flags: d[opt::VER_FLAGS] & 0x0f,
            hops: d[opt::HOPS],
            path: d[opt::PATH],
            sender: be16(d, opt::SENDER),
            dest: be16(d, opt::DEST),
            stream: be16(d, opt::STREAM),
            key: be16(d, opt::KEY),
            seq: u32::from_be_bytes([d[12], d[13], d[14], d[15]]),
            tstamp: u64::from_be_bytes([d[16], d[17], d[18], d[19], d[20], d[21], d[22], d[23]]),
        })
    }

    /// Writes the 24 data bytes.
    pub fn emit(&self, d: &mut [u8]) {
        d[opt::VER_FLAGS] = (OPT_VERSION << 4) | (self.flags & 0x0f);
        d[opt::HOPS] = self.hops;
        d[opt::PATH] = self.path;
        d[3] = 0;
        set_be16(d, opt::SENDER, self.sender);
        set_be16(d, opt::DEST, self.dest);
        set_be16(d, opt::STREAM, self.stream);
        set_be16(d, opt::KEY, self.key);
        d[opt::SEQ..opt::SEQ + 4].copy_from_slice(&self.seq.to_be_bytes());
        d[opt::TSTAMP..opt::TSTAMP + 8].copy_from_slice(&self.tstamp.to_be_bytes());
    }
}

/// Writes this project's Geneve header (base + overlay option, [`OVERLAY_GENEVE_LEN`] bytes).
pub fn emit_overlay(buf: &mut [u8], vni: u32, o: &OptRepr) {
    buf[field::VER_OPT_LEN] = (OPT_LEN / 4) as u8; // version 0, option length in words
    buf[field::FLAGS] = C_BIT;
    set_be16(buf, field::PROTOCOL, PROTO_IPV4);
    let v = vni.to_be_bytes();
    buf[field::VNI..field::VNI + 3].copy_from_slice(&v[1..4]);
    buf[field::VNI + 3] = 0;
    set_be16(buf, field::OPT_CLASS, OPT_CLASS);
    buf[field::OPT_TYPE] = OPT_TYPE;
    buf[field::OPT_DATA_WORDS] = (OPT_DATA_LEN / 4) as u8;
    o.emit(&mut buf[HEADER_LEN + 4..HEADER_LEN + OPT_LEN]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> (Vec<u8>, OptRepr) {
        let o = OptRepr {
            flags: 1,
            hops: 8,
            path: 3,
            sender: 10,
            dest: 20,
            stream: 0x0105,
            key: 0,
            seq: 0xdead_beef,
            tstamp: 123_456_789,
        };
        let mut b = vec![0u8; OVERLAY_GENEVE_LEN];
        emit_overlay(&mut b, 0x00ab_cdef, &o);
        (b, o)
    }

    #[test]
    fn layout_matches_the_decision() {
        let (b, _) = sample();
        assert_eq!(OVERLAY_GENEVE_LEN, 36);
        assert_eq!(b[0], 7, "ver 0, 7 words of options");
        assert_eq!(b[1], 0x40, "C bit");
        assert_eq!(&b[2..4], &[0x08, 0x00]);
        assert_eq!(&b[4..8], &[0xab, 0xcd, 0xef, 0]);
        assert_eq!(&b[8..12], &[0xff, 0xf0, 0x81, 6]);
        assert_eq!(b[12], 0x11, "version 1, probe flag");
        assert_eq!(&b[24..28], &[0xde, 0xad, 0xbe, 0xef]);
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(
            (h.header_len(), h.vni(), h.protocol(), h.critical(), h.oam()),
            (36, 0xabcdef, 0x0800, true, false)
        );
        assert_eq!(h.options().count(), 1);
    }

    #[test]
    fn option_errors() {
        let (b, o) = sample();
        assert_eq!(
            OptRepr::parse(Header::new_checked(&b[..]).unwrap().overlay_option().unwrap().unwrap()),
            Some(o)
        );
        assert!(matches!(
            Header::new_checked(&b[..35]),
            Err(Error::Truncated { need: 36, .. })
        ));
        let mut v = b.clone();
        v[0] |= 0x40;
        assert!(matches!(
            Header::new_checked(&v[..]),
            Err(Error::Malformed { field: "version", .. })
        ));
        let mut v = b.clone();
        v[10] = 0x99; // another critical type
        assert!(Header::new_checked(&v[..]).unwrap().overlay_option().is_err());
        v[10] = 0x19; // non-critical unknown: skipped
        assert_eq!(Header::new_checked(&v[..]).unwrap().overlay_option().unwrap(), None);
        let mut v = b.clone();
        v[11] = 5; // our option with the wrong length: the list no longer adds up
        assert!(Header::new_checked(&v[..]).unwrap().overlay_option().is_err());
        let mut v = b;
        v[12] = 0x21; // version 2
        assert_eq!(
            OptRepr::parse(Header::new_checked(&v[..]).unwrap().overlay_option().unwrap().unwrap()),
            None
        );
    }

    proptest! {
        #[test]
        fn round_trip(flags in 0u8..16, hops in any::<u8>(), path in any::<u8>(), sender in any::<u16>(), dest in any::<u16>(), stream in any::<u16>(), key in any::<u16>(), seq in any::<u32>(), tstamp in any::<u64>(), vni in 0u32..(1 << 24)) {
            let o = OptRepr { flags, hops, path, sender, dest, stream, key, seq, tstamp };
            let mut b = vec![0u8; OVERLAY_GENEVE_LEN];
            emit_overlay(&mut b, vni, &o);
            let h = Header::new_checked(&b[..]).unwrap();
            prop_assert_eq!(h.vni(), vni);
            prop_assert_eq!(OptRepr::parse(h.overlay_option().unwrap().unwrap()), Some(o));
        }

        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(h) = Header::new_checked(&b[..]) {
                let _ = (h.vni(), h.options().count(), h.overlay_option().map(|o| o.and_then(OptRepr::parse)));
            }
        }
    }
}
