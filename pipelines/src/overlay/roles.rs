//! The stages of a role in the order a worker runs them on a burst, so that the appliance and the
//! benchmark harness run the same thing. A relay is the [`super::relay`] stage alone.
//!
//! | role, direction | stages |
//! |---|---|
//! | edge, from clients | [`EdgeOut`]: classify, MTU guard, encap, replicate |
//! | edge, from the overlay | [`EdgeIn`]: dedupe, decap, source check, MSS clamp |
//! | gateway, from the overlay | [`GatewayIn`]: dedupe, VNI -> application, decap, NAT out |
//! | gateway, from targets | [`GatewayOut`]: MTU guard, NAT in, encap toward the session's edge, replicate |
use super::classify::Classifier;
use super::dedupe::Dedupe;
use super::encap::{AppRoute, Encap};
use super::mtu::{MtuAction, MtuGuard};
use super::replicate::Replicate;
use super::{decap, PeerSet};
use crate::buf::PacketBuf;
use crate::drop::{DropCounts, DropReason, Stage};
use crate::nat::{Nat, Origin};
use crate::stage::{Burst, Verdict};
use crate::wire::ipv4;

/// Edge, client side: which application, MSS clamping or "fragmentation needed", encapsulation, one copy
/// per path. Packets leave with Forward (toward a relay) or Reply (an ICMP error for the client).
pub struct EdgeOut {
    pub classify: Classifier,
    pub mtu: MtuGuard,
    pub encap: Encap,
    pub replicate: Replicate,
}

impl EdgeOut {
    pub fn run<B: PacketBuf>(&mut self, b: &mut Burst<B>, drops: &mut DropCounts, now_ns: u64) {
        self.classify.run(b);
        self.mtu.run(b);
        self.encap.run_toward(b, now_ns, &self.replicate);
        self.replicate.run(b, drops);
    }
}

/// Edge, overlay side: duplicate removal, decapsulation; the inner packet must come from one of this
/// edge's VIPs (the gateway translated it back), and a SYN-ACK gets its MSS clamped so the client's
/// segments fit the overlay too. Packets to send keep Next (routing to the client follows).
pub struct EdgeIn {
    pub node: u16,
    pub peers: PeerSet,
    pub dedupe: Dedupe,
}

impl EdgeIn {
    pub fn run<B: PacketBuf>(&mut self, b: &mut Burst<B>, out: &EdgeOut, now_ns: u64) {
        self.dedupe.run(b, self.node, &self.peers, now_ns);
        decap::run(b);
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
            if !out.classify.is_vip(src) {
                m.drop(Stage::Inner, DropReason::NotFromVip);
                continue;
            }
            // Came through the overlay, so it fits: only the clamp can apply.
            match out.mtu.apply(p) {
                MtuAction::Pass | MtuAction::Clamped { .. } => {}
                MtuAction::FragNeeded => m.drop(Stage::Inner, DropReason::TooBig),
                MtuAction::Drop(r) => m.drop(Stage::Inner, r),
            }
        }
    }
}

/// Gateway, overlay side: duplicate removal, the application from the VNI (ARCHITECTURE.md "Decisions":
/// the VNI is the application id), decapsulation, full NAT toward the target. Packets to send keep Next
/// (routing to the target follows).
pub struct GatewayIn {
    pub node: u16,
    pub peers: PeerSet,
    pub dedupe: Dedupe,
    pub nat: Nat,
}

impl GatewayIn {
    pub fn run<B: PacketBuf>(&mut self, b: &mut Burst<B>, now_ns: u64) {
        self.dedupe.run(b, self.node, &self.peers, now_ns);
        for m in b.meta.iter_mut().filter(|m| m.is_next()) {
            m.app = u16::try_from(m.vni).unwrap_or(u16::MAX);
        }
        decap::run(b);
        self.nat.run_outbound(b, now_ns);
    }
}

/// Gateway, target side: packets to a pool address. Too large for the overlay: "fragmentation needed"
/// back to the target (from the pool address, so its path-MTU discovery works); then reverse NAT (replies
/// owned by another worker get Handoff), encapsulation toward the edge the session came from (VNI = the
/// application; the stream keeps the edge stream's bucket, so a flow keeps one stream both ways) and one
/// copy per path of that edge's path set. Replies to clients that reached the gateway directly (at an
/// application's `vip`, [`Origin::DIRECT`]) get Route: straight back, as standalone full NAT sends them.
/// The pool addresses' path MTU is the overlay's for these clients too (the target sees one pool).
pub struct GatewayOut {
    pub mtu: MtuGuard,
    pub encap: Encap,
    pub replicate: Replicate,
}

impl GatewayOut {
    pub fn run<B: PacketBuf>(&mut self, b: &mut Burst<B>, nat: &mut Nat, drops: &mut DropCounts, now_ns: u64) {
        self.mtu.run(b);
        nat.run_inbound(b, now_ns);
        for (p, m) in b.pkts.iter_mut().zip(b.meta.iter_mut()) {
            if !m.is_next() {
                continue;
            }
            if m.sender == Origin::DIRECT {
                m.verdict = Verdict::Route;
                continue;
            }
            let Some(dest) = self.encap.dest_index(m.sender) else {
                m.drop(Stage::Return, DropReason::NoPath);
                continue;
            };
            let route = AppRoute {
                vni: m.app as u32,
                dest,
            };
            let first = self.replicate.first_hop(dest);
            match self.encap.encap_to(p, route, m.stream as u32, now_ns, first) {
                Ok((stream, _)) => m.mark(self.encap.node(), stream, dest, first),
                Err(r) => m.drop(Stage::Encap, r),
            }
        }
        self.replicate.run(b, drops);
    }
}
