//! Relay: validates the outer headers and the option of packets addressed to it, checks that they come
//! from a configured overlay peer, looks up the next hop by (destination node, path id), rewrites the outer
//! addresses (relay -> next), decrements the hop count (dropped at 0) and forwards. Stateless.
use super::parse_outer;
use crate::buf::PacketBuf;
use crate::checksum;
use crate::drop::DropReason;
use crate::drop::Stage;
use crate::fixed::FixedMap;
use crate::stage::{Burst, Ctx, Verdict};
use crate::wire::geneve::opt;
use crate::wire::{ethernet, ipv4, udp};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Where a relay sends packets of (destination node, path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The next overlay node's address (outer destination).
    pub addr: Ipv4Addr,
    pub port: u16,
    /// Underlay next hop toward `addr`.
    pub next_hop: Ipv4Addr,
}

#[derive(Debug, Clone)]
pub struct Relay {
    pub addr: Ipv4Addr,
    /// The peers' addresses.
    peers: FixedMap<()>,
    /// Keyed by `destination node << 8 | path id`.
    hops: FixedMap<Hop>,
}

#[inline(always)]
fn hop_key(dest: u16, path: u8) -> u32 {
    (dest as u32) << 8 | path as u32
}

impl Relay {
    pub fn new(addr: Ipv4Addr, peers: impl IntoIterator<Item = Ipv4Addr>, hops: HashMap<(u16, u8), Hop>) -> Self {
        Relay {
            addr,
            peers: FixedMap::new(peers.into_iter().map(|a| (u32::from(a), ()))),
            hops: FixedMap::new(hops.into_iter().map(|((dest, path), h)| (hop_key(dest, path), h))),
        }
    }

    /// Relays one frame in place; returns where to send it.
    #[inline]
    pub fn relay<B: PacketBuf>(&self, pkt: &mut B) -> Verdict {
        let o = match parse_outer(pkt.data()) {
            Ok(o) => o,
            Err(r) => return Verdict::Drop(Stage::Relay, r),
        };
        if o.ip_dst != self.addr {
            return Verdict::Drop(Stage::Relay, DropReason::NotForUs);
        }
        if !self.peers.contains(u32::from(o.ip_src)) {
            return Verdict::Drop(Stage::Relay, DropReason::NotAPeer);
        }
        if o.opt.hops <= 1 {
            return Verdict::Drop(Stage::Relay, DropReason::HopLimit);
        }
        let Some(hop) = self.hops.get(hop_key(o.opt.dest, o.opt.path)) else {
            return Verdict::Drop(Stage::Relay, DropReason::NoOverlayRoute);
        };
        let Some(d) = pkt.data_mut() else {
            return Verdict::Drop(Stage::Relay, DropReason::NotWritable);
        };
        // Hop count: one byte of the option, in the 16-bit word it shares with version/flags.
        let word_at = o.opt_off + opt::VER_FLAGS;
        let old_word = u16::from_be_bytes([d[word_at], d[word_at + 1]]);
        d[o.opt_off + opt::HOPS] = o.opt.hops - 1;
        let new_word = u16::from_be_bytes([d[word_at], d[word_at + 1]]);
        // The outer IPv4 header becomes the relay's: new addresses, fresh TTL. The checksum is patched
        // from the values we hold (RFC 1624), so nothing is read back right after it is written.
        let (old_src, old_dst) = (u32::from(o.ip_src), u32::from(o.ip_dst));
        let (new_src, new_dst) = (u32::from(self.addr), u32::from(hop.addr));
        let ttl_at = ethernet::HEADER_LEN + ipv4::field::TTL;
        let old_ttl_word = u16::from_be_bytes([o.ttl, d[ttl_at + 1]]);
        let new_ttl_word = u16::from_be_bytes([64, d[ttl_at + 1]]);
        let csum_at = ethernet::HEADER_LEN + ipv4::field::CHECKSUM;
        let mut ic = u16::from_be_bytes([d[csum_at], d[csum_at + 1]]);
        ic = checksum::update32(ic, old_src, new_src);
        ic = checksum::update32(ic, old_dst, new_dst);
        ic = checksum::update16(ic, old_ttl_word, new_ttl_word);
        d[ttl_at] = 64;
        d[csum_at..csum_at + 2].copy_from_slice(&ic.to_be_bytes());
        let src_at = ethernet::HEADER_LEN + ipv4::field::SRC;
        d[src_at..src_at + 4].copy_from_slice(&new_src.to_be_bytes());
        d[src_at + 4..src_at + 8].copy_from_slice(&new_dst.to_be_bytes());
        // A non-zero UDP checksum covers the pseudo-header and the option: patch it (RFC 1624). Zero stays
        // zero (RFC 768: none).
        if o.udp_csum != 0 {
            let mut c = checksum::update32(o.udp_csum, old_src, new_src);
            c = checksum::update32(c, old_dst, new_dst);
            // Geneve options are 4-byte aligned, so the word is aligned in the UDP checksum too.
            c = checksum::update16(c, old_word, new_word);
            let c = if c == 0 { 0xffff } else { c };
            d[o.udp_off + udp::field::CHECKSUM..o.udp_off + udp::field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
        }
        Verdict::Forward {
            port: hop.port,
            next_hop: hop.next_hop,
        }
    }

    pub fn run<B: PacketBuf>(&mut self, burst: &mut Burst<B>, _cx: &mut Ctx) {
        for (p, m) in burst.pkts.iter_mut().zip(burst.meta.iter_mut()) {
            if m.is_next() {
                m.verdict = self.relay(p);
            }
        }
    }
}
