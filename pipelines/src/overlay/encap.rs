//! Edge (and gateway on the way back): puts the outer headers in front of the inner IPv4 packet. The
//! stream is `worker << 8 | flow hash & 0xff`, so a flow keeps its stream and a stream belongs to one
//! worker; sequence numbers count per (destination node, stream) and never leave their worker. The
//! per-path fields (path id, outer destination, MACs) are written by [`super::replicate`].
use super::replicate::Replicate;
use super::{Burst, OuterRepr, Verdict, OUTER_LEN};
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::wire::geneve::OptRepr;
use crate::wire::{ethernet, ipv4, MacAddr};
use std::net::Ipv4Addr;

/// Where an application's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppRoute {
    pub vni: u32,
    /// Index of the destination node (gateway or edge) in the encap's destination list and in the
    /// replicate stage's path sets.
    pub dest: u16,
}

pub struct Encap {
    pub node: u16,
    pub addr: Ipv4Addr,
    pub udp_base: u16,
    pub hops: u8,
    pub worker: u8,
    /// Node ids of the destinations, by index.
    dests: Vec<u16>,
    apps: Vec<AppRoute>,
    /// Next sequence number per destination and stream bucket.
    seq: Vec<[u32; 256]>,
}

impl Encap {
    pub fn new(
        node: u16,
        addr: Ipv4Addr,
        udp_base: u16,
        hops: u8,
        worker: u8,
        dests: Vec<u16>,
        apps: Vec<AppRoute>,
    ) -> Self {
        let seq = vec![[0u32; 256]; dests.len()];
        Encap {
            node,
            addr,
            udp_base,
            hops,
            worker,
            dests,
            apps,
            seq,
        }
    }

    /// New destinations and application routes (a reload). Sequence counters of destinations that stay
    /// carry on, so receivers see no jump back; new destinations start at 0.
    pub fn set_routes(&mut self, dests: Vec<u16>, apps: Vec<AppRoute>) {
        let seq = dests
            .iter()
            .map(|d| match self.dests.iter().position(|o| o == d) {
                Some(i) => self.seq[i],
                None => [0u32; 256],
            })
            .collect();
        self.dests = dests;
        self.apps = apps;
        self.seq = seq;
    }

    pub fn stream_of(&self, flow_hash: u32) -> u16 {
        (self.worker as u16) << 8 | (flow_hash & 0xff) as u16
    }

    /// The route of application `app` (edge: every packet of an application goes to its gateway).
    #[inline]
    pub fn route(&self, app: u16) -> Result<AppRoute, DropReason> {
        self.apps.get(app as usize).copied().ok_or(DropReason::NoApplication)
    }

    /// Index of node `node` in the destination list.
    pub fn dest_index(&self, node: u16) -> Option<u16> {
        self.dests.iter().position(|d| *d == node).map(|i| i as u16)
    }

    /// Encapsulates one frame (Ethernet + IPv4) of application `app`; returns (stream, sequence number).
    #[inline]
    pub fn encap<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        app: u16,
        flow_hash: u32,
        now_ns: u64,
    ) -> Result<(u16, u32), DropReason> {
        let route = self.route(app)?;
        self.encap_to(pkt, route, flow_hash, now_ns, None)
    }

    /// Encapsulates one frame toward `route` (the gateway's replies: the VNI and the edge come from the
    /// NAT session); returns (stream, sequence number).
    #[inline]
    pub fn encap_to<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        route: AppRoute,
        flow_hash: u32,
        now_ns: u64,
        first: Option<(u8, Ipv4Addr)>,
    ) -> Result<(u16, u32), DropReason> {
        let dest = *self.dests.get(route.dest as usize).ok_or(DropReason::NoPath)?;
        // Drop Ethernet padding: the inner packet is exactly its IPv4 total length.
        let total = {
            let l3 = pkt.data().get(ethernet::HEADER_LEN..).ok_or(DropReason::EthTruncated)?;
            ipv4::Packet::new_checked(l3)
                .map_err(|_| DropReason::Ipv4TotalLength)?
                .total_len()
        };
        let pad = pkt.len() - ethernet::HEADER_LEN - total;
        if pad > 0 && !pkt.trim(pad) {
            return Err(DropReason::MultiSegment);
        }
        // The inner Ethernet header goes; the outer headers take its place and more.
        if pkt.headroom() + ethernet::HEADER_LEN < OUTER_LEN {
            return Err(DropReason::NoHeadroom);
        }
        if !pkt.adj(ethernet::HEADER_LEN) || !pkt.prepend(OUTER_LEN) {
            return Err(DropReason::NoHeadroom);
        }
        let bucket = (flow_hash & 0xff) as usize;
        let stream = self.stream_of(flow_hash);
        let slot = &mut self.seq[route.dest as usize][bucket];
        let seq = *slot;
        *slot = seq.wrapping_add(1);
        let outer = OuterRepr {
            eth_src: MacAddr::ZERO,
            eth_dst: MacAddr::ZERO,
            ip_src: self.addr,
            ip_dst: first.map_or(Ipv4Addr::UNSPECIFIED, |f| f.1),
            udp_src: self.udp_base.wrapping_add(stream),
            vni: route.vni,
            opt: OptRepr {
                flags: 0,
                hops: self.hops,
                path: first.map_or(0, |f| f.0),
                sender: self.node,
                dest,
                stream,
                key: 0,
                seq,
                tstamp: now_ns,
            },
        };
        let frame = pkt.data_mut().ok_or(DropReason::MultiSegment)?;
        outer.emit(frame, total);
        Ok((stream, seq))
    }

    /// Encapsulates every packet of the burst still to be handled; the outer destination and path id
    /// are left for replicate (0.0.0.0 and 0).
    pub fn run<B: PacketBuf>(&mut self, burst: &mut Burst<B>, now_ns: u64) {
        self.run_with(burst, now_ns, None)
    }

    /// As [`Encap::run`], with the outer destination and path id of the first path of `paths` already
    /// written (meta `stamped`): replicate, run next with the same `paths`, then leaves the packet's
    /// bytes alone and only makes the copies.
    pub fn run_toward<B: PacketBuf>(&mut self, burst: &mut Burst<B>, now_ns: u64, paths: &Replicate) {
        self.run_with(burst, now_ns, Some(paths))
    }

    #[inline]
    fn run_with<B: PacketBuf>(&mut self, burst: &mut Burst<B>, now_ns: u64, paths: Option<&Replicate>) {
        for (p, m) in burst.pkts.iter_mut().zip(burst.meta.iter_mut()) {
            if !m.is_next() {
                continue;
            }
            let r = self.route(m.app).and_then(|route| {
                let first = paths.and_then(|s| s.first_hop(route.dest));
                self.encap_to(p, route, m.flow_hash, now_ns, first)
                    .map(|(stream, _)| (route, stream, first))
            });
            match r {
                Ok((route, stream, first)) => m.mark(self.node, stream, route.dest, first),
                Err(r) => m.verdict = Verdict::Drop(r),
            }
        }
    }
}
