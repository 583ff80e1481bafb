//! Strips the outer headers of an overlay frame and hands on the inner IPv4 packet, behind a 14-byte
//! Ethernet slot (the outer Ethernet header's place, ethertype IPv4) for the next stage to address.
use super::parse_outer;
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::drop::Stage;
use crate::stage::{Burst, Ctx, Verdict};
use crate::wire::{ethernet, ipv4};

/// Decapsulates one frame whose inner packet starts at `inner_off` (0: parse the outer headers here).
#[inline]
pub fn decap<B: PacketBuf>(pkt: &mut B, inner_off: usize) -> Result<(), DropReason> {
    let inner_off = if inner_off == 0 {
        parse_outer(pkt.data())?.inner_off
    } else {
        inner_off
    };
    if inner_off < ethernet::HEADER_LEN || inner_off > pkt.len() {
        return Err(DropReason::OverlayMalformed);
    }
    let total = {
        let inner = &pkt.data()[inner_off..];
        let ip = ipv4::Packet::new_checked(inner).map_err(|_| DropReason::InnerMalformed)?;
        if !ip.verify_checksum() {
            return Err(DropReason::InnerMalformed);
        }
        ip.total_len()
    };
    if !pkt.adj(inner_off - ethernet::HEADER_LEN) {
        return Err(DropReason::OverlayMalformed);
    }
    let extra = pkt.len() - ethernet::HEADER_LEN - total;
    if extra > 0 && !pkt.trim(extra) {
        return Err(DropReason::MultiSegment);
    }
    let d = pkt.data_mut().ok_or(DropReason::NotWritable)?;
    d[ethernet::field::ETHERTYPE..ethernet::field::ETHERTYPE + 2]
        .copy_from_slice(&ethernet::ethertype::IPV4.to_be_bytes());
    Ok(())
}

/// The stage: strips the outer headers of every packet still Next ([`decap`]); at a gateway the VNI is
/// also the packet's application (ARCHITECTURE.md "Decisions": the VNI is the application id).
#[derive(Debug, Clone, Copy)]
pub struct Decap {
    pub vni_is_app: bool,
}

impl Decap {
    pub fn run<B: PacketBuf>(&mut self, burst: &mut Burst<B>, _cx: &mut Ctx) {
        for (p, m) in burst.pkts.iter_mut().zip(burst.meta.iter_mut()) {
            if !m.is_next() {
                continue;
            }
            if self.vni_is_app {
                m.app = u16::try_from(m.vni).unwrap_or(u16::MAX);
            }
            if let Err(r) = decap(p, m.inner_off as usize) {
                m.verdict = Verdict::Drop(Stage::Decap, r);
            }
            m.inner_off = 0;
        }
    }
}
