//! Edge (and gateway on the way back): puts the outer headers in front of the inner IPv4 packet. The
//! stream is `worker << 8 | flow hash & 0xff`, so a flow keeps its stream and a stream belongs to one
//! worker; sequence numbers count per (destination node, stream) and never leave their worker. Each
//! destination has a template of the outer headers, built once by [`OuterRepr::emit`]; a packet's
//! headers are the template copied and its own fields patched in (the IPv4 checksum computed from the
//! template's sum). The per-path fields (path id, outer destination) are the first live path's when encap
//! follows the path sets ([`Encap::follow`]), else zero and left to [`super::replicate`]; the MACs are
//! the worker's.
use super::replicate::Replicate;
use super::{at, OuterRepr, OUTER_LEN};
use crate::buf::PacketBuf;
use crate::checksum;
use crate::drop::DropReason;
use crate::drop::Stage;
use crate::nat::Origin;
use crate::stage::{Burst, Ctx, Verdict};
use crate::wire::geneve::OptRepr;
use crate::wire::{ethernet, geneve, ipv4, udp, MacAddr};
use std::net::Ipv4Addr;

/// Where an application's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppRoute {
    pub vni: u32,
    /// Index of the destination node (gateway or edge) in the encap's destination list and in the
    /// replicate stage's path sets.
    pub dest: u16,
}

/// The fields are set when it is made (the templates are built from them).
pub struct Encap {
    node: u16,
    addr: Ipv4Addr,
    udp_base: u16,
    hops: u8,
    worker: u8,
    /// Node ids of the destinations, by index.
    dests: Vec<u16>,
    apps: Vec<AppRoute>,
    /// Next sequence number per destination and stream bucket.
    seq: Vec<[u32; 256]>,
    /// Per destination index: the first live path of its set (path id, relay), as [`Encap::follow`]
    /// last copied it from the replicate stage.
    first: Vec<Option<(u8, Ipv4Addr)>>,
    /// A gateway's replies: each packet goes to the edge its NAT session came from (`meta.sender`), with
    /// the application as VNI; replies to clients that reached the gateway directly get Route.
    replies: bool,
    /// Per destination index: the outer headers with every field that is the same for all its packets,
    /// written once by [`OuterRepr::emit`]; a packet's own fields are patched in.
    templates: Vec<Template>,
}

/// An outer header to copy and patch: the per-packet fields (lengths, checksum, outer destination, UDP
/// source port, VNI, path, stream, sequence number, timestamp) are zero in `bytes`, and `ip_sum` is the
/// one's-complement sum of the IPv4 header as it stands.
#[derive(Debug, Clone, Copy)]
struct Template {
    bytes: [u8; OUTER_LEN],
    ip_sum: u32,
}

/// A packet's own outer fields.
struct Fields {
    inner_len: usize,
    dst: Ipv4Addr,
    path: u8,
    udp_src: u16,
    vni: u32,
    stream: u16,
    seq: u32,
    tstamp: u64,
}

impl Template {
    fn new(node: u16, addr: Ipv4Addr, hops: u8, dest: u16) -> Template {
        let mut bytes = [0u8; OUTER_LEN];
        OuterRepr {
            eth_src: MacAddr::ZERO,
            eth_dst: MacAddr::ZERO,
            ip_src: addr,
            ip_dst: Ipv4Addr::UNSPECIFIED,
            udp_src: 0,
            vni: 0,
            opt: OptRepr {
                flags: 0,
                hops,
                path: 0,
                sender: node,
                dest,
                stream: 0,
                key: 0,
                seq: 0,
                tstamp: 0,
            },
        }
        .emit(&mut bytes, 0);
        // Lengths and checksum zeroed: they are the packet's.
        for i in [at::IP_TOTAL, at::IP_CSUM, at::UDP_LEN] {
            bytes[i..i + 2].fill(0);
        }
        let ip_sum = checksum::sum(&bytes[at::IP..at::UDP], 0);
        Template { bytes, ip_sum }
    }

    /// Writes a packet's outer headers: the template, then its own fields (the IPv4 checksum from the
    /// template's sum, nothing read back).
    #[inline(always)]
    fn write(&self, f: &mut [u8; OUTER_LEN], p: &Fields) {
        *f = self.bytes;
        let udp_len = (udp::HEADER_LEN + geneve::OVERLAY_GENEVE_LEN + p.inner_len) as u16;
        let ip_total = udp_len + ipv4::MIN_HEADER_LEN as u16;
        let d = u32::from(p.dst);
        let sum = self.ip_sum as u64 + ip_total as u64 + (d >> 16) as u64 + (d & 0xffff) as u64;
        let csum = !(checksum::fold(sum) as u16);
        f[at::IP_TOTAL..at::IP_TOTAL + 2].copy_from_slice(&ip_total.to_be_bytes());
        f[at::IP_CSUM..at::IP_CSUM + 2].copy_from_slice(&csum.to_be_bytes());
        f[at::IP_DST..at::IP_DST + 4].copy_from_slice(&d.to_be_bytes());
        f[at::UDP_SRC..at::UDP_SRC + 2].copy_from_slice(&p.udp_src.to_be_bytes());
        f[at::UDP_LEN..at::UDP_LEN + 2].copy_from_slice(&udp_len.to_be_bytes());
        f[at::VNI..at::VNI + 4].copy_from_slice(&(p.vni << 8).to_be_bytes());
        f[at::PATH] = p.path;
        f[at::STREAM..at::STREAM + 2].copy_from_slice(&p.stream.to_be_bytes());
        f[at::SEQ..at::SEQ + 4].copy_from_slice(&p.seq.to_be_bytes());
        f[at::TSTAMP..at::TSTAMP + 8].copy_from_slice(&p.tstamp.to_be_bytes());
    }
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
        let mut e = Encap {
            node,
            addr,
            udp_base,
            hops,
            worker,
            dests,
            apps,
            seq,
            first: Vec::new(),
            replies: false,
            templates: Vec::new(),
        };
        e.build_templates();
        e
    }

    /// Encapsulates a gateway's replies (see the field `replies`) instead of clients' packets by
    /// application.
    pub fn for_replies(mut self) -> Self {
        self.replies = true;
        self
    }

    /// Takes the first live path of each destination's set from `paths`, so that encap writes it and
    /// replicate only makes the copies. Called whenever the sets change.
    pub fn follow(&mut self, paths: &Replicate) {
        self.first.clear();
        self.first
            .extend((0..self.dests.len()).map(|d| paths.first_hop(d as u16)));
    }

    fn build_templates(&mut self) {
        self.templates = self
            .dests
            .iter()
            .map(|&d| Template::new(self.node, self.addr, self.hops, d))
            .collect();
    }

    /// New destinations and application routes (a reload; [`Encap::follow`] the new sets after it).
    /// Sequence counters of destinations that stay carry on, so receivers see no jump back; new
    /// destinations start at 0.
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
        // Indices may have moved: until the next follow, replicate stamps every packet.
        self.first.clear();
        self.build_templates();
    }

    /// This node's id (the sender of what it encapsulates).
    pub fn node(&self) -> u16 {
        self.node
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
        if route.dest as usize >= self.templates.len() {
            return Err(DropReason::NoPath);
        }
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
        let (path, dst) = first.unwrap_or((0, Ipv4Addr::UNSPECIFIED));
        let fields = Fields {
            inner_len: total,
            dst,
            path,
            udp_src: self.udp_base.wrapping_add(stream),
            vni: route.vni,
            stream,
            seq,
            tstamp: now_ns,
        };
        let frame = pkt.data_mut().ok_or(DropReason::NotWritable)?;
        let f: &mut [u8; OUTER_LEN] = frame
            .get_mut(..OUTER_LEN)
            .and_then(|f| f.try_into().ok())
            .ok_or(DropReason::NoHeadroom)?;
        self.templates[route.dest as usize].write(f, &fields);
        Ok((stream, seq))
    }

    /// The stage: encapsulates every packet still Next toward its application's destination (or, for
    /// replies, its session's edge); the outer destination and path id are the first live path's
    /// ([`Encap::follow`]), else left for replicate (0.0.0.0 and 0).
    pub fn run<B: PacketBuf>(&mut self, burst: &mut Burst<B>, cx: &mut Ctx) {
        for (p, m) in burst.pkts.iter_mut().zip(burst.meta.iter_mut()) {
            if !m.is_next() {
                continue;
            }
            // Replies keep the edge stream's bucket, so a flow keeps one stream both ways.
            let (route, hash) = if self.replies {
                if m.sender == Origin::DIRECT {
                    m.verdict = Verdict::Route;
                    continue;
                }
                let Some(dest) = self.dest_index(m.sender) else {
                    m.drop(Stage::Return, DropReason::NoPath);
                    continue;
                };
                let route = AppRoute {
                    vni: m.app as u32,
                    dest,
                };
                (route, m.stream as u32)
            } else {
                match self.route(m.app) {
                    Ok(r) => (r, m.flow_hash),
                    Err(r) => {
                        m.drop(Stage::Encap, r);
                        continue;
                    }
                }
            };
            let first = self.first.get(route.dest as usize).copied().flatten();
            match self.encap_to(p, route, hash, cx.now_ns, first) {
                Ok((stream, _)) => m.mark(self.node, stream, route.dest, first),
                Err(r) => m.drop(Stage::Encap, r),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The template and its patches give, byte for byte, what `OuterRepr::emit` writes.
        #[test]
        fn template_writes_what_emit_writes(
            node: u16, addr: u32, hops: u8, dest: u16, dst: u32, path: u8, udp_src: u16,
            vni in 0u32..1 << 24, stream: u16, seq: u32, tstamp: u64, inner_len in 20usize..9000,
        ) {
            let tpl = Template::new(node, Ipv4Addr::from(addr), hops, dest);
            let mut got = [0xa5u8; OUTER_LEN];
            tpl.write(&mut got, &Fields {
                inner_len,
                dst: Ipv4Addr::from(dst),
                path,
                udp_src,
                vni,
                stream,
                seq,
                tstamp,
            });
            let mut want = [0u8; OUTER_LEN];
            OuterRepr {
                eth_src: MacAddr::ZERO,
                eth_dst: MacAddr::ZERO,
                ip_src: Ipv4Addr::from(addr),
                ip_dst: Ipv4Addr::from(dst),
                udp_src,
                vni,
                opt: OptRepr { flags: 0, hops, path, sender: node, dest, stream, key: 0, seq, tstamp },
            }
            .emit(&mut want, inner_len);
            prop_assert_eq!(&got[..], &want[..]);
        }
    }
}
