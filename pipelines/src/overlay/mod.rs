//! The overlay stages (ARCHITECTURE.md, "Overlay header" and "Removing duplicates"): classify, MTU guard
//! (MSS clamping, fragmentation needed), encap, replicate, relay, admit, probes, dedupe, decap, inner
//! check; and the roles, which list them ([`roles`]). Each stage takes a burst and writes a verdict per
//! packet; packets whose verdict is not [`crate::stage::Verdict::Next`] are left alone by later stages.
//! Nothing here allocates per packet: bursts and tables are sized when they are built.
//!
//! Outer headers this project sends (78 bytes with Ethernet; overlay MTU = link MTU - 64):
//! Ethernet / IPv4 (DF, TTL 64, no options) / UDP (source port = base + stream, destination 6081,
//! checksum 0) / Geneve (version 0, C bit, protocol 0x0800, VNI = application) / overlay option
//! (see [`crate::wire::geneve`]).

pub mod admit;
pub mod classify;
pub mod decap;
pub mod dedupe;
pub mod encap;
pub mod inner;
pub mod mtu;
pub mod probe;
pub mod relay;
pub mod replicate;
pub mod roles;
pub mod sample;

use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::wire::geneve::{self, OptRepr};
use crate::wire::{ethernet, ipv4, udp, MacAddr};
use std::net::Ipv4Addr;

/// Overlay peers: the addresses allowed to send overlay packets to this node (randomly seeded ahash).
pub type PeerSet = std::collections::HashSet<Ipv4Addr, ahash::RandomState>;

/// Bytes the encapsulation adds in front of the inner IPv4 packet, Ethernet included.
pub const OUTER_LEN: usize = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + udp::HEADER_LEN + geneve::OVERLAY_GENEVE_LEN;
/// Bytes the encapsulation adds to an IPv4 packet (what the overlay MTU loses).
pub const OVERHEAD: usize = OUTER_LEN - ethernet::HEADER_LEN;
/// Offset of the option data in a frame this project built (outer IPv4 without options).
pub const OPT_OFF: usize = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + udp::HEADER_LEN + geneve::HEADER_LEN + 4;

/// The outer headers of an overlay packet, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    pub ttl: u8,
    pub udp_src: u16,
    /// UDP checksum as received (0 = none).
    pub udp_csum: u16,
    pub udp_off: usize,
    pub vni: u32,
    /// Offset of the option data.
    pub opt_off: usize,
    /// Offset of the inner packet.
    pub inner_off: usize,
    pub opt: OptRepr,
}

/// Validates Ethernet / IPv4 / UDP 6081 / Geneve / overlay option and returns where everything is.
#[inline(always)]
pub fn parse_outer(frame: &[u8]) -> Result<Outer, DropReason> {
    match parse_outer_fast(frame) {
        Some(o) => Ok(o),
        None => parse_outer_general(frame),
    }
}

/// The layout this project sends (outer IPv4 without options, one Geneve option: ours), read at fixed
/// offsets behind one length check. `None` for anything else, valid or not: the general parser then
/// decides, and names the reason for a drop. Accepts exactly what the general parser accepts for this
/// layout, with the same result (a property test compares them).
#[inline(always)]
fn parse_outer_fast(frame: &[u8]) -> Option<Outer> {
    let f: &[u8; OUTER_LEN] = frame.get(..OUTER_LEN)?.try_into().ok()?;
    let be16 = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([f[i], f[i + 1], f[i + 2], f[i + 3]]);
    // Ethernet IPv4, version 4 IHL 5, not a fragment (MF clear, offset 0), TTL > 0, UDP.
    if be16(at::ETHERTYPE) != ethernet::ethertype::IPV4
        || f[at::IP_VER_IHL] != 0x45
        || be16(at::IP_FLAGS_FRAG) & 0x3fff != 0
        || f[at::IP_TTL] == 0
        || f[at::IP_PROTO] != ipv4::protocol::UDP
    {
        return None;
    }
    let total = be16(at::IP_TOTAL) as usize;
    if total < OVERHEAD || total > frame.len() - ethernet::HEADER_LEN || !crate::checksum::verify(&f[at::IP..at::UDP]) {
        return None;
    }
    // UDP to 6081 with a length that holds the Geneve header and fits the IPv4 payload.
    let udp_len = be16(at::UDP_LEN) as usize;
    if be16(at::UDP_DST) != geneve::PORT
        || udp_len < udp::HEADER_LEN + geneve::OVERLAY_GENEVE_LEN
        || udp_len > total - ipv4::MIN_HEADER_LEN
    {
        return None;
    }
    // Geneve version 0 with 7 words of options, IPv4 inside; the option is ours, 6 words, version 1.
    if f[at::GENEVE_VER_OPT_LEN] != (geneve::OPT_LEN / 4) as u8
        || be16(at::GENEVE_PROTOCOL) != geneve::PROTO_IPV4
        || be16(at::OPT_CLASS) != geneve::OPT_CLASS
        || f[at::OPT_TYPE] != geneve::OPT_TYPE
        || f[at::OPT_DATA_WORDS] & 0x1f != (geneve::OPT_DATA_LEN / 4) as u8
        || f[at::VER_FLAGS] >> 4 != geneve::OPT_VERSION
    {
        return None;
    }
    Some(Outer {
        ip_src: Ipv4Addr::from(be32(at::IP_SRC)),
        ip_dst: Ipv4Addr::from(be32(at::IP_DST)),
        ttl: f[at::IP_TTL],
        udp_src: be16(at::UDP_SRC),
        udp_csum: be16(at::UDP_CSUM),
        udp_off: at::UDP,
        vni: be32(at::VNI) >> 8,
        opt_off: OPT_OFF,
        inner_off: OUTER_LEN,
        opt: OptRepr {
            flags: f[at::VER_FLAGS] & 0x0f,
            hops: f[at::HOPS],
            path: f[at::PATH],
            sender: be16(at::SENDER),
            dest: be16(at::DEST),
            stream: be16(at::STREAM),
            key: be16(at::KEY),
            seq: be32(at::SEQ),
            tstamp: u64::from(be32(at::TSTAMP)) << 32 | u64::from(be32(at::TSTAMP + 4)),
        },
    })
}

/// The general parser: any IPv4 header length, any Geneve options around ours.
#[inline(never)]
pub fn parse_outer_general(frame: &[u8]) -> Result<Outer, DropReason> {
    let eth = ethernet::Frame::new_checked(frame).map_err(|_| DropReason::EthTruncated)?;
    if eth.ethertype() != ethernet::ethertype::IPV4 {
        return Err(DropReason::EtherTypeUnsupported);
    }
    let l3 = &frame[ethernet::HEADER_LEN..];
    let ip = ipv4::Packet::new_checked(l3).map_err(|e| crate::presence::ipv4_error_reason(e, l3))?;
    if !ip.verify_checksum() {
        return Err(DropReason::Ipv4Checksum);
    }
    if ip.is_fragment() {
        return Err(DropReason::Ipv4Fragment);
    }
    if ip.ttl() == 0 {
        return Err(DropReason::Ipv4TtlExpired);
    }
    if ip.protocol() != ipv4::protocol::UDP {
        return Err(DropReason::ProtocolUnhandled);
    }
    let udp_off = ethernet::HEADER_LEN + ip.header_len();
    let u = udp::Packet::new_checked(ip.payload()).map_err(|_| DropReason::OverlayMalformed)?;
    if u.dst_port() != geneve::PORT {
        return Err(DropReason::ProtocolUnhandled);
    }
    let g = geneve::Header::new_checked(u.payload()).map_err(|_| DropReason::OverlayMalformed)?;
    if g.protocol() != geneve::PROTO_IPV4 {
        return Err(DropReason::OverlayMalformed);
    }
    let data = match g.overlay_option() {
        Ok(Some(d)) => d,
        _ => return Err(DropReason::OverlayMalformed),
    };
    let opt = OptRepr::parse(data).ok_or(DropReason::OverlayMalformed)?;
    let geneve_off = udp_off + udp::HEADER_LEN;
    // The option data lies inside the frame: its offset is where the slice starts.
    let opt_off = data.as_ptr() as usize - frame.as_ptr() as usize;
    Ok(Outer {
        ip_src: ip.src(),
        ip_dst: ip.dst(),
        ttl: ip.ttl(),
        udp_src: u.src_port(),
        udp_csum: u.checksum(),
        udp_off,
        vni: g.vni(),
        opt_off,
        inner_off: geneve_off + g.header_len(),
        opt,
    })
}

/// What goes into the outer headers of one packet.
#[derive(Debug, Clone, Copy)]
pub struct OuterRepr {
    pub eth_src: MacAddr,
    pub eth_dst: MacAddr,
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    pub udp_src: u16,
    pub vni: u32,
    pub opt: OptRepr,
}

impl OuterRepr {
    /// Writes the 78 outer bytes in front of an inner IPv4 packet of `inner_len` bytes.
    pub fn emit(&self, buf: &mut [u8], inner_len: usize) {
        ethernet::Repr {
            dst: self.eth_dst,
            src: self.eth_src,
            ethertype: ethernet::ethertype::IPV4,
        }
        .emit(buf);
        let udp_len = udp::HEADER_LEN + geneve::OVERLAY_GENEVE_LEN + inner_len;
        ipv4::Repr {
            src: self.ip_src,
            dst: self.ip_dst,
            protocol: ipv4::protocol::UDP,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: true,
            payload_len: udp_len,
        }
        .emit(&mut buf[ethernet::HEADER_LEN..]);
        let u = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN;
        udp::Repr {
            src_port: self.udp_src,
            dst_port: geneve::PORT,
            payload_len: udp_len - udp::HEADER_LEN,
        }
        .emit(&mut buf[u..]);
        geneve::emit_overlay(&mut buf[u + udp::HEADER_LEN..], self.vni, &self.opt);
    }
}

/// Offsets in the outer headers (Ethernet, IPv4 without options, UDP, Geneve, option).
pub(crate) mod at {
    use crate::wire::{ethernet, geneve, ipv4, udp};
    pub const ETHERTYPE: usize = ethernet::field::ETHERTYPE;
    pub const IP: usize = ethernet::HEADER_LEN;
    pub const IP_VER_IHL: usize = IP + ipv4::field::VER_IHL;
    pub const IP_TOTAL: usize = IP + ipv4::field::TOTAL_LEN;
    pub const IP_FLAGS_FRAG: usize = IP + ipv4::field::FLAGS_FRAG;
    pub const IP_TTL: usize = IP + ipv4::field::TTL;
    pub const IP_PROTO: usize = IP + ipv4::field::PROTOCOL;
    pub const IP_CSUM: usize = IP + ipv4::field::CHECKSUM;
    pub const IP_SRC: usize = IP + ipv4::field::SRC;
    pub const IP_DST: usize = IP + ipv4::field::DST;
    pub const UDP: usize = IP + ipv4::MIN_HEADER_LEN;
    pub const UDP_SRC: usize = UDP + udp::field::SRC_PORT;
    pub const UDP_DST: usize = UDP + udp::field::DST_PORT;
    pub const UDP_LEN: usize = UDP + udp::field::LENGTH;
    pub const UDP_CSUM: usize = UDP + udp::field::CHECKSUM;
    pub const GENEVE: usize = UDP + udp::HEADER_LEN;
    pub const GENEVE_VER_OPT_LEN: usize = GENEVE + geneve::field::VER_OPT_LEN;
    pub const GENEVE_PROTOCOL: usize = GENEVE + geneve::field::PROTOCOL;
    /// VNI (3 bytes) and the reserved byte after it.
    pub const VNI: usize = GENEVE + geneve::field::VNI;
    pub const OPT_CLASS: usize = GENEVE + geneve::field::OPT_CLASS;
    pub const OPT_TYPE: usize = GENEVE + geneve::field::OPT_TYPE;
    pub const OPT_DATA_WORDS: usize = GENEVE + geneve::field::OPT_DATA_WORDS;
    pub const OPT: usize = super::OPT_OFF;
    pub const VER_FLAGS: usize = OPT + geneve::opt::VER_FLAGS;
    pub const HOPS: usize = OPT + geneve::opt::HOPS;
    pub const SENDER: usize = OPT + geneve::opt::SENDER;
    pub const DEST: usize = OPT + geneve::opt::DEST;
    pub const KEY: usize = OPT + geneve::opt::KEY;
    pub const PATH: usize = OPT + geneve::opt::PATH;
    pub const STREAM: usize = OPT + geneve::opt::STREAM;
    pub const SEQ: usize = OPT + geneve::opt::SEQ;
    pub const TSTAMP: usize = OPT + geneve::opt::TSTAMP;
}

/// Sets the outer IPv4 destination of a frame this project built, patching the header checksum
/// incrementally (RFC 1624) so the header is not read back right after it is written; returns the new
/// checksum.
#[inline]
pub(crate) fn set_outer_dst(frame: &mut [u8], dst: Ipv4Addr) -> u16 {
    let old = u32::from_be_bytes([
        frame[at::IP_DST],
        frame[at::IP_DST + 1],
        frame[at::IP_DST + 2],
        frame[at::IP_DST + 3],
    ]);
    let csum = crate::checksum::update32(outer_csum(frame), old, u32::from(dst));
    write_outer_dst(frame, dst, csum);
    csum
}

/// The outer IPv4 header checksum of a frame this project built (`frame` holds at least the outer
/// Ethernet and IPv4 headers).
#[inline]
pub(crate) fn outer_csum(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[at::IP_CSUM], frame[at::IP_CSUM + 1]])
}

/// Writes the outer IPv4 destination and the header checksum that goes with it, reading nothing.
#[inline]
pub(crate) fn write_outer_dst(frame: &mut [u8], dst: Ipv4Addr, csum: u16) {
    frame[at::IP_CSUM..at::IP_CSUM + 2].copy_from_slice(&csum.to_be_bytes());
    frame[at::IP_DST..at::IP_DST + 4].copy_from_slice(&dst.octets());
}

/// A 32-bit hash of a flow's 5-tuple (for stream buckets and target choice); not for security.
#[inline]
pub fn flow_hash(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, sport: u16, dport: u16) -> u32 {
    let a = (u32::from(src) as u64) << 32 | u32::from(dst) as u64;
    let b = (proto as u64) << 32 | (sport as u64) << 16 | dport as u64;
    let mut h = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 32;
    h as u32
}

/// The worker (of `workers`) that owns the duplicate-removal state of (sender node, stream) at a
/// receiver: a pure function every worker computes alike (ARCHITECTURE.md "Per-core, run to completion").
#[inline]
pub fn stream_owner(sender: u16, stream: u16, workers: usize) -> usize {
    let h = ((sender as u32) << 16 | stream as u32).wrapping_mul(0x9e37_79b1);
    ((h >> 16) as usize * workers) >> 16
}

/// Writes a frame's Ethernet addresses (the L2 rewrite after a neighbour lookup).
#[inline]
pub fn set_l2<B: PacketBuf>(pkt: &mut B, src: MacAddr, dst: MacAddr) -> bool {
    match pkt.data_mut() {
        Some(d) if d.len() >= ethernet::HEADER_LEN => {
            crate::presence::set_l2(d, src, dst);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::geneve::OptRepr;
    use proptest::prelude::*;

    fn frame(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; OUTER_LEN + 20 + payload];
        let o = OuterRepr {
            eth_src: MacAddr([2, 0, 0, 0, 0, 1]),
            eth_dst: MacAddr([2, 0, 0, 0, 0, 2]),
            ip_src: Ipv4Addr::new(10, 0, 0, 1),
            ip_dst: Ipv4Addr::new(10, 0, 0, 2),
            udp_src: 40123,
            vni: 0x123456,
            opt: OptRepr {
                flags: 0,
                hops: 8,
                path: 3,
                sender: 1,
                dest: 2,
                stream: 0x203,
                key: 0,
                seq: 77,
                tstamp: 5,
            },
        };
        o.emit(&mut f, 20 + payload);
        ipv4::Repr {
            src: Ipv4Addr::new(1, 1, 1, 1),
            dst: Ipv4Addr::new(2, 2, 2, 2),
            protocol: 17,
            ttl: 9,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: false,
            payload_len: payload,
        }
        .emit(&mut f[OUTER_LEN..]);
        f
    }

    #[test]
    fn fast_path_takes_our_layout() {
        let f = frame(10);
        let fast = parse_outer_fast(&f).expect("our own layout takes the fast path");
        assert_eq!(Ok(fast), parse_outer_general(&f));
    }

    proptest! {
        /// Wherever the fast path answers, the general parser gives the same answer; mutations of valid
        /// frames (any byte of the outer headers, truncation) either agree or fall back.
        #[test]
        fn fast_and_general_parsers_agree(pos in 0usize..OUTER_LEN, val in any::<u8>(), cut in 0usize..30, payload in 0usize..40) {
            let mut f = frame(payload);
            f[pos] = val;
            let n = f.len() - cut.min(f.len());
            let f = &f[..n];
            if let Some(fast) = parse_outer_fast(f) {
                prop_assert_eq!(Ok(fast), parse_outer_general(f));
            }
        }
    }
}
