//! The stages of a role in the order a worker runs them on a burst, so that the appliance and the
//! benchmark harness run the same thing. A relay is the [`super::relay`] stage alone.
use super::classify::Classifier;
use super::dedupe::Dedupe;
use super::encap::Encap;
use super::mtu::MtuGuard;
use super::replicate::Replicate;
use super::{decap, Burst, PeerSet};
use crate::buf::PacketBuf;
use crate::drop::DropCounts;
use crate::nat::Nat;

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
        self.encap.run(b, now_ns);
        self.replicate.run(b, drops);
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
