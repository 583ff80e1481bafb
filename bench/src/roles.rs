//! What each role does to a burst (the stages of `pipelines/` in role order) and the synthetic traffic it
//! is fed: client frames for the edge and the chain, overlay frames from the edge for a relay, and both
//! copies of every packet (as two relays deliver them) for the gateway.
use etherparse::PacketBuilder;
use pipelines::buf::VecBuf;
use pipelines::overlay::admit::Admit;
use pipelines::overlay::classify::Classifier;
use pipelines::overlay::dedupe::{Dedupe, DedupeConfig};
use pipelines::overlay::encap::{AppRoute, Encap};
use pipelines::overlay::mtu::MtuGuard;
use pipelines::overlay::probe::Responder;
use pipelines::overlay::relay::{Hop, Relay};
use pipelines::overlay::replicate::Replicate;
use pipelines::overlay::roles::{Edge, Endpoint, Gateway};
use pipelines::overlay::sample::{self, EDGE, EDGE_NODE, GW, GW_NODE, R1, R2, ROUTER, VIP, VNI};
use pipelines::overlay::{PeerSet, OPT_OFF, OUTER_LEN};
use pipelines::presence::{PortAddrs, Presence};
use pipelines::route::{Route, RouteTable};
use pipelines::stage::{Burst, Ctx, Meta, Scratch, Verdict};
use pipelines::MacAddr;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Relay,
    Edge,
    Gateway,
    Chain,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Relay, Role::Edge, Role::Gateway, Role::Chain];

    pub fn name(self) -> &'static str {
        match self {
            Role::Relay => "relay",
            Role::Edge => "edge",
            Role::Gateway => "gateway",
            Role::Chain => "chain",
        }
    }
}

/// Edge nodes the gateway's traffic comes from: with 256 stream buckets each, 40 senders make 10 240
/// (sender, stream) pairs for duplicate removal.
pub const SENDERS: u16 = 40;
const ROUTER_R: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 254);
/// The gateway's router toward the targets.
const ROUTER_T: Ipv4Addr = Ipv4Addr::new(10, 4, 0, 254);
/// Offset of the generator's timestamp in a client frame (Ethernet + IPv4 + UDP) and in an overlay frame.
pub const TS_CLIENT: usize = 42;
pub const TS_OVERLAY: usize = OUTER_LEN + 28;

/// A client's UDP datagram to the VIP (port 53) of `size` bytes on the wire with the FCS (at least 64),
/// UDP checksum 0 so the generator may write its timestamp into the payload.
pub fn client_frame(flow: u32, size: usize) -> Vec<u8> {
    let src = (0x0a00_0000 + (flow >> 6) + 1).to_be_bytes();
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, VIP.octets(), 64)
        .udp(1024 + (flow & 63) as u16, 53)
        .write(&mut out, &vec![0u8; size.max(64) - 46])
        .expect("frame");
    out[40] = 0; // UDP checksum: none
    out[41] = 0;
    out
}

fn edge_encap(node: u16) -> Encap {
    Encap::new(
        node,
        EDGE,
        40000,
        8,
        0,
        vec![GW_NODE],
        vec![AppRoute { vni: VNI, dest: 0 }],
    )
}

fn relay(addr: Ipv4Addr, path: u8) -> Relay {
    let mut hops = HashMap::new();
    hops.insert(
        (GW_NODE, path),
        Hop {
            addr: GW,
            port: 0,
            next_hop: ROUTER_R,
        },
    );
    Relay::new(addr, [EDGE], hops)
}

/// A node's presence: one port at `addr`/16, a default route through `router` (the role's stages that
/// end in routing use it; the bench sends whatever is forwarded back to the sink).
fn presence(addr: Ipv4Addr, router: Ipv4Addr) -> Arc<Presence> {
    let port = PortAddrs {
        mac: MacAddr([2, 0, 0, 0, 0, 0x10]),
        addrs: vec![format!("{addr}/16").parse().expect("prefix")],
        arp_extra: vec![],
    };
    let routes = RouteTable::new(vec![Route {
        net: "0.0.0.0/0".parse().expect("net"),
        port: 0,
        via: Some(router),
    }]);
    Arc::new(Presence::new(vec![port], routes, false).with_overlay(pipelines::wire::geneve::PORT))
}

/// What an edge or gateway has for the overlay; only the stages of the lane measured see packets.
fn endpoint(node: u16, addr: Ipv4Addr, encap: Encap, replicate: Replicate, dedupe: DedupeConfig) -> Endpoint {
    let peers: PeerSet = [R1, R2].into_iter().collect();
    Endpoint {
        mtu: MtuGuard::new(1500),
        encap,
        replicate,
        admit: Admit::new(node, peers, 0, 1),
        probes: Responder::new(node, addr, 8, &[], &[]),
        dedupe: Dedupe::new(dedupe),
    }
}

/// The stages of one role, in order, for one worker: the lane lists of `pipelines::overlay::roles` that
/// the appliance runs (edge: from clients; gateway: from the overlay; relay: the relay stage).
pub struct Pipeline {
    role: Role,
    edge: Edge,
    relays: [Relay; 2],
    gateway: Gateway,
}

impl Pipeline {
    /// `sessions`: NAT sessions (and flows) the gateway side must hold, new flows included.
    pub fn new(role: Role, sessions: usize) -> Pipeline {
        let edge = Edge::new(
            presence(EDGE, ROUTER),
            sample::classifier(),
            endpoint(
                EDGE_NODE,
                EDGE,
                sample::encap(0),
                sample::replicate(),
                DedupeConfig::default(),
            ),
        );
        let nat = sample::nat(
            VNI as u16,
            if matches!(role, Role::Gateway | Role::Chain) {
                sessions
            } else {
                1
            },
        );
        let gateway = Gateway::new(
            presence(GW, ROUTER_T),
            GW,
            Classifier::new(&[], &[]),
            nat,
            endpoint(
                GW_NODE,
                GW,
                Encap::new(GW_NODE, GW, 40000, 8, 0, vec![], vec![]),
                Replicate::new(vec![]),
                DedupeConfig {
                    window: 1024,
                    reset_ns: 10_000_000_000,
                    max_streams: 16384,
                },
            ),
        );
        Pipeline {
            role,
            edge,
            relays: [relay(R1, 1), relay(R2, 2)],
            gateway,
        }
    }

    pub fn nat_live(&self) -> u64 {
        self.gateway.nat.live().iter().sum()
    }

    pub fn dedupe_counters(&self) -> (u64, u64, u64) {
        let c = self.gateway.end.dedupe.totals();
        (c.passed, c.discarded, c.lost)
    }

    /// Runs the role's stages; packets to send leave with Forward (edge and relay: toward a relay;
    /// gateway: toward the target, routed).
    pub fn run<B: pipelines::buf::PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        match self.role {
            Role::Relay => self.relays[0].run(b, cx),
            Role::Edge => self.edge.from_clients(b, cx),
            Role::Gateway => self.gateway.from_overlay(b, cx),
            Role::Chain => {
                self.edge.from_clients(b, cx);
                for (p, m) in b.pkts.iter_mut().zip(b.meta.iter_mut()) {
                    if matches!(m.verdict, Verdict::Forward { .. }) {
                        let r = &self.relays[(m.path as usize).saturating_sub(1).min(1)];
                        // Relayed: arrives at the gateway for its overlay lane.
                        m.verdict = match r.relay(p) {
                            Verdict::Forward { .. } => Verdict::Next,
                            v => v,
                        };
                    }
                }
                self.gateway.from_overlay(b, cx);
            }
        }
    }
}

/// The frames a role is fed, cycled through by the generator.
pub struct Traffic {
    pub frames: Vec<Vec<u8>>,
    /// Gateway: frames come in pairs (the copies of one packet over the two paths) that share a sequence
    /// number; `counter[i]` is the (sender, stream) counter of pair i.
    pub pairs: bool,
    pub counter: Vec<u32>,
    pub counters: usize,
    /// Where the generator writes its TSC in an input frame, and where the sink reads it in an output one.
    pub ts_in: usize,
    /// Offset of the client's IPv4 header in an input frame (where a new flow's source address goes).
    pub inner: usize,
    pub ts_out: usize,
}

/// Input for `role` over `flows` flows.
pub fn traffic(role: Role, flows: u32, size: usize) -> Traffic {
    match role {
        Role::Edge | Role::Chain => Traffic {
            frames: (0..flows).map(|f| client_frame(f, size)).collect(),
            pairs: false,
            counter: vec![],
            counters: 0,
            ts_in: TS_CLIENT,
            ts_out: if role == Role::Edge { TS_OVERLAY } else { TS_CLIENT },
            inner: 14,
        },
        Role::Relay => {
            let mut e = sample::encap(0);
            let (mut c, mut r) = (sample::classifier(), sample::replicate());
            let mut fx = Scratch::default();
            let mut frames = Vec::with_capacity(flows as usize);
            for f in 0..flows {
                let mut b = Burst::with_capacity(2);
                b.push(VecBuf::new(&client_frame(f, size), 128), Meta::new(0)).ok();
                let cx = &mut fx.cx(0);
                c.run(&mut b, cx);
                e.run(&mut b, cx);
                r.run(&mut b, cx);
                frames.extend(b.drain().filter(|(_, m)| m.path == 1).map(|(p, _)| p.to_vec()));
            }
            Traffic {
                frames,
                pairs: false,
                counter: vec![],
                counters: 0,
                ts_in: TS_OVERLAY,
                ts_out: TS_OVERLAY,
                inner: OUTER_LEN,
            }
        }
        Role::Gateway => {
            // Every flow through the real edge stages (one of SENDERS edge nodes), then through both relays.
            let mut c = sample::classifier();
            let mut r = sample::replicate();
            let mut encaps: Vec<Encap> = (1..=SENDERS).map(edge_encap).collect();
            let relays = [relay(R1, 1), relay(R2, 2)];
            let mut fx = Scratch::default();
            let mut frames = Vec::with_capacity(2 * flows as usize);
            let mut counter = Vec::with_capacity(flows as usize);
            for f in 0..flows {
                let sender = (f % SENDERS as u32) as usize;
                let mut b = Burst::with_capacity(2);
                b.push(VecBuf::new(&client_frame(f, size), 128), Meta::new(0)).ok();
                let cx = &mut fx.cx(0);
                c.run(&mut b, cx);
                encaps[sender].run(&mut b, cx);
                r.run(&mut b, cx);
                let mut pair: Vec<(u8, Vec<u8>)> = b
                    .drain()
                    .map(|(mut p, m)| {
                        let _ = relays[(m.path - 1) as usize].relay(&mut p);
                        (m.path, p.to_vec())
                    })
                    .collect();
                pair.sort_by_key(|(path, _)| *path);
                let stream = u16::from_be_bytes([pair[0].1[OPT_OFF + 8], pair[0].1[OPT_OFF + 9]]);
                counter.push(sender as u32 * 256 + (stream & 0xff) as u32);
                frames.extend(pair.into_iter().map(|(_, p)| p));
            }
            Traffic {
                frames,
                pairs: true,
                counter,
                counters: SENDERS as usize * 256,
                ts_in: TS_OVERLAY,
                ts_out: TS_CLIENT,
                inner: OUTER_LEN,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipelines::{DropReason, Stage};

    /// Each role's stages on its own traffic, on test buffers: what the worker sends (Forward) is every
    /// packet the role should pass on, toward the right next hop, and nothing else is lost.
    #[test]
    fn every_role_forwards_its_traffic() {
        const FLOWS: u32 = 64;
        for role in Role::ALL {
            let t = traffic(role, FLOWS, 64);
            let mut pipe = Pipeline::new(role, 1024);
            let mut fx = Scratch::default();
            let mut b = Burst::with_capacity(4 * t.frames.len());
            for f in &t.frames {
                b.push(VecBuf::new(f, 128), Meta::new(0)).expect("room");
            }
            pipe.run(&mut b, &mut fx.cx(1));
            let (mut sent, mut dups) = (0, 0);
            for m in &b.meta {
                match m.verdict {
                    Verdict::Forward { port: 0, next_hop } => {
                        let want = match role {
                            Role::Edge => ROUTER,
                            Role::Relay => ROUTER_R,
                            Role::Gateway | Role::Chain => ROUTER_T,
                        };
                        assert_eq!(next_hop, want, "{role:?}");
                        sent += 1;
                    }
                    Verdict::Drop(Stage::Dedupe, DropReason::Duplicate) => dups += 1,
                    v => panic!("{role:?}: {v:?}"),
                }
            }
            let n = FLOWS as usize;
            let want = match role {
                Role::Edge => (2 * n, 0),
                Role::Relay => (n, 0),
                Role::Gateway | Role::Chain => (n, n),
            };
            assert_eq!((sent, dups), want, "{role:?}: sent, duplicates");
            assert_eq!(fx.drops.total(), 0, "{role:?}");
            if matches!(role, Role::Gateway | Role::Chain) {
                assert_eq!(pipe.nat_live(), n as u64, "{role:?}: one session per flow");
            }
        }
    }
}
