//! What NAT reads from a packet (its 5-tuple, TCP flags, or the embedded packet of an ICMP error) and how it
//! rewrites one: addresses, ports or ICMP query id, with every checksum updated incrementally (RFC 1624).
//! For an ICMP error (RFC 5508) the embedded IP header and the embedded transport header are rewritten too,
//! and the ICMP checksum follows both. A UDP checksum of 0 (none) stays 0; a UDP checksum that becomes 0
//! is sent as 0xffff (RFC 768).
//!
//! Ports of an ICMP echo: a request carries its query id as the source "port" and 0 as the destination,
//! a reply the other way round, so that a reply's tuple is the reverse of its request's, as for TCP and
//! UDP.
use crate::checksum::{self, adjust, adjust64, delta16, delta32, delta32w, update16};
use crate::drop::DropReason;
use crate::wire::{ethernet, icmpv4, ipv4};

/// Protocol index for per-protocol tables and counters.
pub const TCP: usize = 0;
pub const UDP: usize = 1;
pub const ICMP: usize = 2;
pub const PROTOS: [&str; 3] = ["tcp", "udp", "icmp"];

/// [`Tuple::proto_index`] by IP protocol number: one load, where a match took several instructions
/// at each of the calls a packet makes.
const PROTO_INDEX: [u8; 256] = {
    let mut t = [ICMP as u8; 256];
    t[ipv4::protocol::TCP as usize] = TCP as u8;
    t[ipv4::protocol::UDP as usize] = UDP as u8;
    t
};

/// A flow's addresses and ports (ICMP: query id), host order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Tuple {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl Tuple {
    #[inline]
    pub fn reversed(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }

    /// Index into per-protocol tables ([`TCP`], [`UDP`], [`ICMP`]).
    #[inline]
    pub fn proto_index(&self) -> usize {
        PROTO_INDEX[self.proto as usize] as usize
    }
}

/// What kind of packet, for the session logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    Tcp {
        flags: u8,
    },
    #[default]
    Udp,
    EchoRequest,
    EchoReply,
    /// An ICMP error; `tuple` (of the [`Parsed`]) is the embedded packet's, reversed, so that it names the
    /// flow the error travels with.
    IcmpError,
}

/// A packet NAT can translate: Ethernet + IPv4 (no fragment) + TCP, UDP or ICMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Parsed {
    pub tuple: Tuple,
    pub kind: Kind,
    /// Offset of the transport header (of the outer packet).
    l4: u16,
    /// Offset of the embedded IPv4 header and its transport header (ICMP errors), and the bytes of the
    /// embedded transport header present.
    emb_l3: u16,
    emb_l4: u16,
    emb_l4_len: u16,
}

#[inline(always)]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

#[inline(always)]
fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

#[inline(always)]
fn put16(d: &mut [u8], at: usize, v: u16) {
    d[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
fn put32(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Checks an IPv4 header at `l3` whose bytes end at `end`; returns (header length, total length, protocol).
/// `embedded`: the total length may exceed what is present (an ICMP error quotes the start only).
#[inline(always)]
fn ip_header(d: &[u8], l3: usize, end: usize, embedded: bool) -> Result<(usize, usize, u8), DropReason> {
    if end < l3 + ipv4::MIN_HEADER_LEN {
        return Err(DropReason::Ipv4Truncated);
    }
    let vi = d[l3];
    if vi >> 4 != 4 {
        return Err(DropReason::Ipv4Version);
    }
    let ihl = (vi & 0x0f) as usize * 4;
    let total = be16(d, l3 + ipv4::field::TOTAL_LEN) as usize;
    if ihl < ipv4::MIN_HEADER_LEN || l3 + ihl > end {
        return Err(DropReason::Ipv4HeaderLength);
    }
    if total < ihl || (!embedded && l3 + total > end) {
        return Err(DropReason::Ipv4TotalLength);
    }
    if be16(d, l3 + ipv4::field::FLAGS_FRAG) & 0x3fff != 0 {
        return Err(DropReason::Ipv4Fragment); // a later fragment has no ports; a first one cannot be matched
    }
    Ok((ihl, total, d[l3 + ipv4::field::PROTOCOL]))
}

/// Reads the ports of a transport header at `l4` with `len` bytes into `t` (ICMP: the echo id as in
/// [`Tuple`]); returns the ICMP type, or 0xff for TCP and UDP.
#[inline(always)]
fn ports(d: &[u8], l4: usize, len: usize, t: &mut Tuple) -> Result<u8, DropReason> {
    match t.proto {
        ipv4::protocol::TCP | ipv4::protocol::UDP => {
            if len < 8 {
                return Err(DropReason::NatMalformed);
            }
            t.sport = be16(d, l4);
            t.dport = be16(d, l4 + 2);
            Ok(0xff)
        }
        ipv4::protocol::ICMP => {
            if len < icmpv4::HEADER_LEN {
                return Err(DropReason::IcmpMalformed);
            }
            let ty = d[l4];
            let id = be16(d, l4 + icmpv4::field::IDENT);
            (t.sport, t.dport) = match ty {
                icmpv4::TYPE_ECHO_REQUEST => (id, 0),
                icmpv4::TYPE_ECHO_REPLY => (0, id),
                _ => (0, 0),
            };
            Ok(ty)
        }
        _ => Err(DropReason::ProtocolUnhandled),
    }
}

/// ICMP types whose body quotes the packet that caused them.
fn is_error(t: u8) -> bool {
    matches!(t, icmpv4::TYPE_DEST_UNREACHABLE | icmpv4::TYPE_TIME_EXCEEDED | 12)
}

/// Parses a frame (Ethernet + IPv4) for NAT. Checks every length it reads; does not verify the IPv4
/// header checksum (the stage before does: decap, or presence).
#[inline(always)]
pub fn parse(d: &[u8]) -> Result<Parsed, DropReason> {
    let mut p = Parsed::default();
    parse_into(d, &mut p)?;
    Ok(p)
}

/// [`parse`] into a caller's record (keeps the hot path free of large return values).
#[inline(always)]
pub fn parse_into(d: &[u8], p: &mut Parsed) -> Result<(), DropReason> {
    if parse_plain(d, p) {
        return Ok(());
    }
    parse_any(d, p)
}

/// The common case of [`parse_into`] with one bounds check: a 20-byte IPv4 header (no options), not a
/// fragment, TCP or UDP with its whole header present. False (and `p` untouched) for anything else, which
/// [`parse_any`] then parses; where this one says true, that one gives the same result.
#[inline(always)]
fn parse_plain(d: &[u8], p: &mut Parsed) -> bool {
    const L3: usize = ethernet::HEADER_LEN;
    const L4: usize = L3 + ipv4::MIN_HEADER_LEN;
    let Some(h) = d.get(L3..L4 + 14) else {
        return false;
    };
    let h: &[u8; 34] = h.try_into().expect("34 bytes");
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    let proto = h[9];
    let room = match proto {
        ipv4::protocol::TCP => 20,
        ipv4::protocol::UDP => 8,
        _ => return false,
    };
    if h[0] != 0x45 || u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 || total < 20 + room || L3 + total > d.len() {
        return false;
    }
    p.tuple = Tuple {
        src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
        dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
        sport: u16::from_be_bytes([h[20], h[21]]),
        dport: u16::from_be_bytes([h[22], h[23]]),
        proto,
    };
    p.kind = if proto == ipv4::protocol::TCP {
        Kind::Tcp { flags: h[33] }
    } else {
        Kind::Udp
    };
    p.l4 = L4 as u16;
    true
}

/// [`parse_into`] for every packet (the reference [`parse_plain`] is tested against).
#[inline(always)]
pub fn parse_any(d: &[u8], p: &mut Parsed) -> Result<(), DropReason> {
    let l3 = ethernet::HEADER_LEN;
    let (ihl, total, proto) = ip_header(d, l3, d.len(), false)?;
    let l4 = l3 + ihl;
    let end = l3 + total;
    p.tuple.proto = proto;
    p.tuple.src = be32(d, l3 + ipv4::field::SRC);
    p.tuple.dst = be32(d, l3 + ipv4::field::DST);
    let ty = ports(d, l4, end - l4, &mut p.tuple)?;
    p.l4 = l4 as u16;
    p.kind = match (proto, ty) {
        (ipv4::protocol::TCP, _) => {
            if end - l4 < 20 {
                return Err(DropReason::NatMalformed);
            }
            Kind::Tcp { flags: d[l4 + 13] }
        }
        (ipv4::protocol::UDP, _) => Kind::Udp,
        (_, icmpv4::TYPE_ECHO_REQUEST) => Kind::EchoRequest,
        (_, icmpv4::TYPE_ECHO_REPLY) => Kind::EchoReply,
        (_, t) if is_error(t) => {
            // By value: `p` never escapes into the out-of-line call, so callers can keep it in registers.
            *p = parse_error(d, l4, end)?;
            return Ok(());
        }
        _ => return Err(DropReason::IcmpUnhandled),
    };
    Ok(())
}

/// The quoted packet of an ICMP error (rare: kept out of the inlined fast path).
#[cold]
#[inline(never)]
fn parse_error(d: &[u8], l4: usize, end: usize) -> Result<Parsed, DropReason> {
    let e3 = l4 + icmpv4::HEADER_LEN;
    let (eihl, _, eproto) = ip_header(d, e3, end, true).map_err(|_| DropReason::IcmpMalformed)?;
    let e4 = e3 + eihl;
    let elen = end - e4;
    let mut quoted = Tuple {
        src: be32(d, e3 + ipv4::field::SRC),
        dst: be32(d, e3 + ipv4::field::DST),
        proto: eproto,
        ..Tuple::default()
    };
    let ty = ports(d, e4, elen, &mut quoted).map_err(|_| DropReason::IcmpMalformed)?;
    if eproto == ipv4::protocol::ICMP && ty != icmpv4::TYPE_ECHO_REQUEST && ty != icmpv4::TYPE_ECHO_REPLY {
        return Err(DropReason::IcmpUnhandled); // no error about an error
    }
    Ok(Parsed {
        tuple: quoted.reversed(),
        kind: Kind::IcmpError,
        l4: l4 as u16,
        emb_l3: e3 as u16,
        emb_l4: e4 as u16,
        emb_l4_len: elen.min(u16::MAX as usize) as u16,
    })
}

/// Rewrites the IPv4 addresses at `l3` and the ports (or echo id) of the transport header at `l4` (`len`
/// bytes present) from `old` to `new` (same protocol), updating the IPv4 and transport checksums (the
/// latter only when its bytes are present, as in a quoted packet).
#[inline(always)]
fn rewrite_headers(d: &mut [u8], l3: usize, l4: usize, len: usize, old: &Tuple, new: &Tuple) {
    let request = old.proto == ipv4::protocol::ICMP && d.get(l4) == Some(&icmpv4::TYPE_ECHO_REQUEST);
    let (ip, l4_delta) = deltas(old, new, request);
    put16(
        d,
        l3 + ipv4::field::CHECKSUM,
        adjust64(be16(d, l3 + ipv4::field::CHECKSUM), ip),
    );
    put32(d, l3 + ipv4::field::SRC, new.src);
    put32(d, l3 + ipv4::field::DST, new.dst);
    match old.proto {
        ipv4::protocol::TCP | ipv4::protocol::UDP => {
            let tcp = old.proto == ipv4::protocol::TCP;
            let at = l4 + if tcp { 16 } else { 6 };
            if at + 2 <= l4 + len {
                let c = be16(d, at);
                if tcp || c != 0 {
                    let mut n = adjust64(c, l4_delta);
                    if !tcp && n == 0 {
                        n = 0xffff;
                    }
                    put16(d, at, n);
                }
            }
            put16(d, l4, new.sport);
            put16(d, l4 + 2, new.dport);
        }
        _ => {
            // ICMP echo: the id is the non-zero "port"; no pseudo header.
            let new_id = if d[l4] == icmpv4::TYPE_ECHO_REQUEST {
                new.sport
            } else {
                new.dport
            };
            let at = l4 + icmpv4::field::CHECKSUM;
            let c = adjust64(be16(d, at), l4_delta);
            put16(d, at, c);
            put16(d, l4 + icmpv4::field::IDENT, new_id);
        }
    }
}

/// The changes of sum when a packet's tuple goes from `old` to `new` (RFC 1624): of the IPv4 header (the
/// addresses), and of the transport checksum (TCP and UDP: addresses, for the pseudo header, and ports;
/// ICMP echo: the query id, the source "port" of a request, else the destination one).
#[inline(always)]
pub fn deltas(old: &Tuple, new: &Tuple, request: bool) -> (u64, u64) {
    let ip = delta32w(old.src, new.src) + delta32w(old.dst, new.dst);
    let ports = |t: &Tuple| (t.sport as u32) << 16 | t.dport as u32;
    let l4 = match old.proto {
        ipv4::protocol::TCP | ipv4::protocol::UDP => ip + delta32w(ports(old), ports(new)),
        _ if request => delta16(old.sport, new.sport) as u64,
        _ => delta16(old.dport, new.dport) as u64,
    };
    (ip, l4)
}

/// The fast form of [`rewrite`] for a TCP or UDP packet that is not an ICMP error (most of the traffic):
/// every byte it touches is checked in three slices up front, so the rewrite itself has no further bounds
/// checks. Gives exactly what [`rewrite_general`] gives; false (nothing written) when the transport
/// header is short, which [`parse`] does not let through.
#[inline(always)]
fn rewrite_transport(d: &mut [u8], l4: usize, old: &Tuple, new: &Tuple) -> bool {
    let tcp = old.proto == ipv4::protocol::TCP;
    let at = if tcp { 16 } else { 6 };
    if l4 < ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN || d.len() < l4 + at + 2 {
        return false;
    }
    let (head, tail) = d.split_at_mut(l4);
    let ip = &mut head[ethernet::HEADER_LEN..ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN];
    let t = &mut tail[..at + 2];
    let (ipd, l4d) = deltas(old, new, false);
    let c = u16::from_be_bytes([ip[10], ip[11]]);
    ip[10..12].copy_from_slice(&adjust64(c, ipd).to_be_bytes());
    ip[12..16].copy_from_slice(&new.src.to_be_bytes());
    ip[16..20].copy_from_slice(&new.dst.to_be_bytes());
    let c = u16::from_be_bytes([t[at], t[at + 1]]);
    if tcp || c != 0 {
        let mut n = adjust64(c, l4d);
        if !tcp && n == 0 {
            n = 0xffff;
        }
        t[at..at + 2].copy_from_slice(&n.to_be_bytes());
    }
    t[0..2].copy_from_slice(&new.sport.to_be_bytes());
    t[2..4].copy_from_slice(&new.dport.to_be_bytes());
    true
}

/// Rewrites a parsed frame. Plain packets: its tuple becomes `new`. ICMP errors: the embedded packet's
/// tuple becomes `new.reversed()` (the error's flow is `new`) and the outer addresses become
/// `outer_src` -> `outer_dst`.
#[inline(always)]
pub fn rewrite(d: &mut [u8], p: &Parsed, new: &Tuple, outer_src: u32, outer_dst: u32) {
    if matches!(p.kind, Kind::Tcp { .. } | Kind::Udp) && rewrite_transport(d, p.l4 as usize, &p.tuple, new) {
        return;
    }
    rewrite_general(d, p, new, outer_src, outer_dst);
}

/// [`rewrite`] for every kind of packet, without its fast path for TCP and UDP (the reference that path
/// is tested against).
#[inline(always)]
pub fn rewrite_general(d: &mut [u8], p: &Parsed, new: &Tuple, outer_src: u32, outer_dst: u32) {
    let l3 = ethernet::HEADER_LEN;
    let l4 = p.l4 as usize;
    if p.kind != Kind::IcmpError {
        let len = d.len() - l4;
        rewrite_headers(d, l3, l4, len, &p.tuple, new);
        return;
    }
    let (e3, e4, elen) = (p.emb_l3 as usize, p.emb_l4 as usize, p.emb_l4_len as usize);
    // The ICMP checksum covers the quoted bytes: follow their sum from before to after the rewrite.
    let region = e3..(e4 + elen.min(20));
    let before = checksum::sum(&d[region.clone()], 0) as u16;
    rewrite_headers(d, e3, e4, elen, &p.tuple.reversed(), &new.reversed());
    let after = checksum::sum(&d[region], 0) as u16;
    let at = l4 + icmpv4::field::CHECKSUM;
    let c = update16(be16(d, at), before, after);
    put16(d, at, c);
    let addrs = delta32(be32(d, l3 + ipv4::field::SRC), outer_src) + delta32(be32(d, l3 + ipv4::field::DST), outer_dst);
    put16(
        d,
        l3 + ipv4::field::CHECKSUM,
        adjust(be16(d, l3 + ipv4::field::CHECKSUM), addrs),
    );
    put32(d, l3 + ipv4::field::SRC, outer_src);
    put32(d, l3 + ipv4::field::DST, outer_dst);
}
