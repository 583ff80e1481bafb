//! Edge, last check of a decapsulated packet before it goes to the client: it must come from one of this
//! edge's VIPs (the gateway translated it back), and a SYN-ACK gets its MSS clamped so the client's
//! segments fit the overlay too.
use super::classify::Classifier;
use super::mtu::{MtuAction, MtuGuard};
use crate::buf::PacketBuf;
use crate::drop::{DropReason, Stage};
use crate::stage::{Burst, Ctx};
use crate::wire::ipv4;

#[derive(Debug, Clone)]
pub struct InnerCheck {
    /// The edge's applications (their VIPs are the allowed sources).
    pub vips: Classifier,
    pub mtu: MtuGuard,
}

impl InnerCheck {
    pub fn run<B: PacketBuf>(&mut self, b: &mut Burst<B>, _cx: &mut Ctx) {
        for (p, m) in b.pkts.iter_mut().zip(b.meta.iter_mut()) {
            if !m.is_next() {
                continue;
            }
            let src = match ipv4::addrs_in_frame(p.data()) {
                Some((src, _)) => src,
                None => {
                    m.drop(Stage::Inner, DropReason::InnerMalformed);
                    continue;
                }
            };
            if !self.vips.is_vip(src) {
                m.drop(Stage::Inner, DropReason::NotFromVip);
                continue;
            }
            // Came through the overlay, so it fits: only the clamp can apply.
            match self.mtu.apply(p) {
                MtuAction::Pass | MtuAction::Clamped { .. } => {}
                MtuAction::FragNeeded => m.drop(Stage::Inner, DropReason::TooBig),
                MtuAction::Drop(r) => m.drop(Stage::Inner, r),
            }
        }
    }
}
