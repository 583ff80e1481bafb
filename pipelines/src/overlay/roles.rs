//! Every role a worker runs: presence, then a list of stages for each [`Lane`] presence passes packets
//! on to. The worker hands a role each received burst once ([`Role::run`]) and gets every packet back
//! with its final verdict; the appliance, the benchmark harness and the tests run the same lists.
//!
//! | role | lane | stages after presence |
//! |---|---|---|
//! | router | | (presence forwards transit packets) |
//! | full NAT | service: clients to a VIP | classify, NAT out, route |
//! | | return: targets to a pool address | NAT in, route |
//! | relay | overlay | relay |
//! | edge | service: clients to a VIP | classify, MTU guard, encap, replicate |
//! | | overlay | admit, probes, dedupe, decap, inner check, route |
//! | gateway | service: its own VIPs' clients | classify, NAT out, route |
//! | | return: targets to a pool address | MTU guard, NAT in, encap toward the session's edge, replicate, route |
//! | | overlay | admit, probes, dedupe, decap (VNI = application), NAT out, route |
//!
//! Every stage has the shape `run(&mut self, burst, cx)` and decides only for packets whose verdict is
//! still Next ([`crate::stage`]); a lane's list runs only when the burst has packets for it. Adding a
//! stage (decryption, FEC recovery) is a field of the role and a line in its list.
use super::admit::Admit;
use super::classify::Classifier;
use super::decap::Decap;
use super::dedupe::Dedupe;
use super::encap::Encap;
use super::inner::InnerCheck;
use super::mtu::MtuGuard;
use super::probe::Responder;
use super::relay::Relay;
use super::replicate::{PathSet, Replicate};
use crate::buf::PacketBuf;
use crate::nat::Nat;
use crate::presence::Presence;
use crate::stage::{Burst, Ctx, Lane};
use crate::wire::ipv4;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A worker's role with all the state it owns.
pub enum Role {
    Router(Router),
    Nat(Box<FullNat>),
    Relay(Box<RelayNode>),
    Edge(Box<Edge>),
    Gateway(Box<Gateway>),
}

impl Role {
    /// A received burst (every verdict Next, `meta.in_port` set): presence, then the lanes' stages.
    #[inline]
    pub fn run<B: PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        self.presence().run(b, cx);
        match self {
            Role::Router(_) => {}
            Role::Nat(r) => r.lanes(b, cx),
            Role::Relay(r) => r.lanes(b, cx),
            Role::Edge(r) => r.lanes(b, cx),
            Role::Gateway(r) => r.lanes(b, cx),
        }
    }

    /// Packets other workers handed to this one because it owns their state (a NAT session, a dedupe
    /// stream): presence saw them where they arrived; they go to their lane's stages.
    pub fn run_handed<B: PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        match self {
            Role::Router(_) | Role::Relay(_) => b.assign(|_| None),
            Role::Nat(r) => {
                b.assign(|_| Some(Lane::Return));
                r.lanes(b, cx);
            }
            Role::Edge(r) => {
                b.assign(|_| Some(Lane::Overlay));
                r.lanes(b, cx);
            }
            Role::Gateway(r) => {
                let addr = r.addr;
                b.assign(|p| match ipv4::addrs_in_frame(p.data()) {
                    Some((_, dst)) if dst == addr => Some(Lane::Overlay),
                    _ => Some(Lane::Return),
                });
                r.lanes(b, cx);
            }
        }
    }

    /// The presence stage every role starts with (its addresses and routes come with the configuration).
    pub fn presence(&self) -> &Arc<Presence> {
        match self {
            Role::Router(r) => &r.presence,
            Role::Nat(r) => &r.presence,
            Role::Relay(r) => &r.presence,
            Role::Edge(r) => &r.presence,
            Role::Gateway(r) => &r.presence,
        }
    }

    /// New addresses and routes (a reload).
    pub fn set_presence(&mut self, p: Arc<Presence>) {
        match self {
            Role::Router(r) => r.presence = p,
            Role::Nat(r) => r.presence = p,
            Role::Relay(r) => r.presence = p,
            Role::Edge(r) => r.presence = p,
            Role::Gateway(r) => r.presence = p,
        }
    }

    /// The NAT sessions this role owns (full NAT, gateway).
    pub fn nat(&mut self) -> Option<&mut Nat> {
        match self {
            Role::Nat(r) => Some(&mut r.nat),
            Role::Gateway(r) => Some(&mut r.nat),
            _ => None,
        }
    }

    /// The duplicate removal this role owns (edge, gateway).
    pub fn dedupe(&mut self) -> Option<&mut Dedupe> {
        match self {
            Role::Edge(r) => Some(&mut r.end.dedupe),
            Role::Gateway(r) => Some(&mut r.end.dedupe),
            _ => None,
        }
    }

    /// Between bursts: expires a slice of the NAT sessions and up to `budget` dedupe streams.
    pub fn expire(&mut self, now_ns: u64, budget: usize) {
        if let Some(n) = self.nat() {
            n.expire_slice(now_ns);
        }
        if let Some(d) = self.dedupe() {
            d.expire(now_ns, budget);
        }
    }
}

/// A router: presence alone (ARP, ICMP echo, transit forwarding).
pub struct Router {
    pub presence: Arc<Presence>,
}

/// Standalone full NAT (`[nat]` without `[overlay]`): clients reach its VIPs directly.
pub struct FullNat {
    pub presence: Arc<Presence>,
    /// VIP, protocol and port -> application.
    pub classify: Classifier,
    pub nat: Nat,
}

impl FullNat {
    /// The lanes' stage lists, after presence.
    pub fn lanes<B: PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        if b.open(Lane::Service) {
            self.classify.run(b, cx);
            self.nat.run_outbound(b, cx);
            self.presence.routes().run(b, cx);
        }
        if b.open(Lane::Return) {
            self.nat.run_inbound(b, cx);
            self.presence.routes().run(b, cx);
        }
    }
}

/// A relay: overlay packets from its peers go on toward the next node of their path.
pub struct RelayNode {
    pub presence: Arc<Presence>,
    pub relay: Relay,
}

impl RelayNode {
    /// The relay's one lane.
    #[inline]
    pub fn lanes<B: PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        if b.open(Lane::Overlay) {
            self.relay.run(b, cx);
        }
    }
}

/// What edges and gateways both have: the overlay toward their destinations (MTU guard, encap, one copy
/// per path) and from their peers (admission, probes, duplicate removal).
pub struct Endpoint {
    pub mtu: MtuGuard,
    pub encap: Encap,
    pub replicate: Replicate,
    pub admit: Admit,
    pub probes: Responder,
    pub dedupe: Dedupe,
}

impl Endpoint {
    /// New path sets, by destination index (a reload, a path found dead, a new selection).
    pub fn set_path_sets(&mut self, sets: Vec<PathSet>) {
        self.replicate.set_sets(sets);
        self.encap.follow(&self.replicate);
    }
}

/// An edge: clients' packets to its VIPs go over the overlay to the application's gateway; the replies
/// come back to the clients from the VIPs.
pub struct Edge {
    pub presence: Arc<Presence>,
    pub classify: Classifier,
    pub end: Endpoint,
    pub decap: Decap,
    pub inner: InnerCheck,
}

impl Edge {
    pub fn new(presence: Arc<Presence>, classify: Classifier, mut end: Endpoint) -> Edge {
        end.encap.follow(&end.replicate);
        Edge {
            inner: InnerCheck {
                vips: classify.clone(),
                mtu: end.mtu,
            },
            presence,
            classify,
            end,
            decap: Decap { vni_is_app: false },
        }
    }

    /// New applications (a reload): the classifier and the sources replies may come from.
    pub fn set_classifier(&mut self, c: Classifier) {
        self.inner.vips = c.clone();
        self.classify = c;
    }

    /// The lanes' stage lists, after presence.
    pub fn lanes<B: PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        if b.open(Lane::Service) {
            self.from_clients(b, cx);
        }
        if b.open(Lane::Overlay) {
            self.from_overlay(b, cx);
        }
    }

    /// Which application, MSS clamping or "fragmentation needed", encapsulation, one copy per path.
    /// Packets leave with Forward (toward a relay) or Reply (an ICMP error for the client).
    #[inline]
    pub fn from_clients<B: PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        self.classify.run(b, cx);
        self.end.mtu.run(b, cx);
        self.end.encap.run(b, cx);
        self.end.replicate.run(b, cx);
    }

    /// Admission, probes, duplicate removal, decapsulation, the VIP source check and MSS clamp, then
    /// routing to the client.
    #[inline]
    pub fn from_overlay<B: PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        self.end.admit.run(b, cx);
        self.end.probes.run(b, cx);
        self.end.dedupe.run(b, cx);
        self.decap.run(b, cx);
        self.inner.run(b, cx);
        self.presence.routes().run(b, cx);
    }
}

/// A gateway: the first copy of each overlay packet is translated (full NAT) toward the target; the
/// target's replies go back over the overlay to the edge each session came from. Clients that reach
/// an application's `vip` directly are served like full NAT's, and their replies routed straight back.
pub struct Gateway {
    pub presence: Arc<Presence>,
    /// This node's overlay address (packets handed over by other workers to it are overlay packets).
    pub addr: Ipv4Addr,
    /// VIP, protocol and port -> application, for clients that reach the gateway directly.
    pub classify: Classifier,
    pub nat: Nat,
    pub end: Endpoint,
    pub decap: Decap,
}

impl Gateway {
    /// `end.encap` is made for replies here ([`Encap::for_replies`]).
    pub fn new(presence: Arc<Presence>, addr: Ipv4Addr, classify: Classifier, nat: Nat, mut end: Endpoint) -> Gateway {
        end.encap = end.encap.for_replies();
        end.encap.follow(&end.replicate);
        Gateway {
            presence,
            addr,
            classify,
            nat,
            end,
            decap: Decap { vni_is_app: true },
        }
    }

    /// The lanes' stage lists, after presence.
    pub fn lanes<B: PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        if b.open(Lane::Overlay) {
            self.from_overlay(b, cx);
        }
        if b.open(Lane::Return) {
            self.from_targets(b, cx);
        }
        if b.open(Lane::Service) {
            self.classify.run(b, cx);
            self.nat.run_outbound(b, cx);
            self.presence.routes().run(b, cx);
        }
    }

    /// Admission, probes, duplicate removal, decapsulation (the VNI names the application), full NAT
    /// toward the target, routing.
    #[inline]
    pub fn from_overlay<B: PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        self.end.admit.run(b, cx);
        self.end.probes.run(b, cx);
        self.end.dedupe.run(b, cx);
        self.decap.run(b, cx);
        self.nat.run_outbound(b, cx);
        self.presence.routes().run(b, cx);
    }

    /// Replies from targets: too large for the overlay, "fragmentation needed" back to the target (from
    /// the pool address, so its path-MTU discovery works; direct clients' flows share the pool, so
    /// theirs too); reverse NAT (sessions another worker owns are handed to it); encapsulation toward
    /// the session's edge and one copy per path of its set, or routing straight back to a direct client.
    #[inline]
    pub fn from_targets<B: PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        self.end.mtu.run(b, cx);
        self.nat.run_inbound(b, cx);
        self.end.encap.run(b, cx);
        self.end.replicate.run(b, cx);
        self.presence.routes().run(b, cx);
    }
}
