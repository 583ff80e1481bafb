//! Edge, before encapsulation: the overlay MTU budget. TCP SYN and SYN-ACK get their MSS clamped to
//! overlay MTU - 40 so that no encapsulated segment exceeds the link MTU; other packets larger than the
//! overlay MTU with DF set are turned, in place, into an ICMP "fragmentation needed" (type 3 code 4)
//! carrying the overlay MTU, back to the sender (RFC 1191); without DF they are dropped (`too_big`; the
//! overlay does not fragment).
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::drop::Stage;
use crate::stage::{Burst, Ctx, Verdict};
use crate::wire::{ethernet, icmpv4, ipv4, tcp};

#[derive(Debug, Clone, Copy)]
pub struct MtuGuard {
    /// Largest inner IPv4 packet the overlay carries (link MTU - 64).
    pub overlay_mtu: u16,
}

/// What the guard did to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtuAction {
    Pass,
    Clamped { from: u16 },
    FragNeeded,
    Drop(DropReason),
}

impl MtuGuard {
    pub fn new(link_mtu: u16) -> MtuGuard {
        MtuGuard {
            overlay_mtu: link_mtu.saturating_sub(super::OVERHEAD as u16),
        }
    }

    pub fn mss(&self) -> u16 {
        self.overlay_mtu.saturating_sub(40)
    }

    /// Handles one frame (Ethernet + a valid IPv4 packet, as classify leaves it).
    pub fn apply<B: PacketBuf>(&self, pkt: &mut B) -> MtuAction {
        let Some(frame) = pkt.data_mut() else {
            return MtuAction::Drop(DropReason::NotWritable);
        };
        let Some(l3) = frame.get_mut(ethernet::HEADER_LEN..) else {
            return MtuAction::Drop(DropReason::EthTruncated);
        };
        let Ok(mut ip) = ipv4::Packet::new_checked(&mut *l3) else {
            return MtuAction::Drop(DropReason::Ipv4TotalLength);
        };
        let total = ip.total_len();
        if total > self.overlay_mtu as usize {
            if !ip.dont_frag() {
                return MtuAction::Drop(DropReason::TooBig);
            }
            return self.frag_needed(pkt);
        }
        if ip.protocol() == ipv4::protocol::TCP && ip.frag_offset() == 0 {
            if let Ok(mut t) = tcp::Packet::new_checked(ip.payload_mut()) {
                if t.syn() {
                    if let Some(from) = t.clamp_mss(self.mss()) {
                        return MtuAction::Clamped { from };
                    }
                }
            }
        }
        MtuAction::Pass
    }

    /// Rewrites the packet into an ICMP fragmentation-needed message to its sender: the source is the
    /// address the packet was sent to (the VIP), the payload the original IP header and 8 bytes.
    fn frag_needed<B: PacketBuf>(&self, pkt: &mut B) -> MtuAction {
        let Some(frame) = pkt.data_mut() else {
            return MtuAction::Drop(DropReason::NotWritable);
        };
        let l3 = &frame[ethernet::HEADER_LEN..];
        let ip = ipv4::Packet::new_unchecked(l3);
        // Quote the header and 8 bytes, as far as the frame has room for them behind the new headers (a
        // frame larger than the overlay MTU normally has plenty; a tiny MTU may not).
        let room = frame
            .len()
            .saturating_sub(ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + icmpv4::HEADER_LEN);
        let quote = (ip.header_len() + 8).min(ip.total_len()).min(room);
        if quote < ipv4::MIN_HEADER_LEN {
            return MtuAction::Drop(DropReason::TooBig);
        }
        let mut orig = [0u8; 68];
        orig[..quote].copy_from_slice(&l3[..quote]);
        let (src, dst) = (ip.src(), ip.dst());
        let icmp_len = icmpv4::HEADER_LEN + quote;
        let new_len = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + icmp_len;
        // Ethernet: back to where it came from.
        let mut eth = ethernet::Frame::new_unchecked(&mut frame[..]);
        let (esrc, edst) = (eth.src(), eth.dst());
        eth.set_dst(esrc);
        eth.set_src(edst);
        ipv4::Repr {
            src: dst,
            dst: src,
            protocol: ipv4::protocol::ICMP,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: false,
            payload_len: icmp_len,
        }
        .emit(&mut frame[ethernet::HEADER_LEN..]);
        let icmp = &mut frame[ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN..new_len];
        icmp[0] = icmpv4::TYPE_DEST_UNREACHABLE;
        icmp[1] = 4; // fragmentation needed and DF set
        icmp[4..6].copy_from_slice(&[0, 0]);
        icmp[6..8].copy_from_slice(&self.overlay_mtu.to_be_bytes());
        icmp[8..].copy_from_slice(&orig[..quote]);
        icmpv4::Packet::new_unchecked(icmp).fill_checksum();
        let extra = pkt.len() - new_len;
        if !pkt.trim(extra) {
            return MtuAction::Drop(DropReason::MultiSegment);
        }
        MtuAction::FragNeeded
    }

    /// The stage: packets too large for the overlay get "fragmentation needed" back (Reply), SYNs get
    /// their MSS clamped.
    pub fn run<B: PacketBuf>(&mut self, burst: &mut Burst<B>, _cx: &mut Ctx) {
        for (p, m) in burst.pkts.iter_mut().zip(burst.meta.iter_mut()) {
            if !m.is_next() {
                continue;
            }
            match self.apply(p) {
                MtuAction::Pass => {}
                MtuAction::Clamped { .. } => {}
                MtuAction::FragNeeded => m.verdict = Verdict::Reply,
                MtuAction::Drop(r) => m.verdict = Verdict::Drop(Stage::Mtu, r),
            }
        }
    }
}
