//! L2/L3 presence: what a host stack would do for the appliance's own addresses, since with bound NICs
//! there is no kernel. Answers ARP for own addresses (and extra addresses a role claims: VIPs, NAT pools),
//! answers ICMP echo to own addresses, validates IPv4 (version, IHL, total length, header checksum, TTL),
//! and routes transit packets when forwarding is on. Replies are written in place.
use crate::buf::PacketBuf;
use crate::drop::{DropReason, Stage};
use crate::route::RouteTable;
pub use crate::stage::Learn;
use crate::stage::{Burst, Ctx, Lane, Verdict};
use crate::wire::{arp, ethernet, icmpv4, ipv4, MacAddr};
use crate::wire::{Error as WireError, Layer};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The addresses of one port.
#[derive(Debug, Clone)]
pub struct PortAddrs {
    pub mac: MacAddr,
    /// Interface addresses with their prefix (e.g. 10.0.0.2/24).
    pub addrs: Vec<Ipv4Net>,
    /// Further addresses this port answers ARP for (VIPs, pool addresses) but does not ping-answer as own.
    pub arp_extra: Vec<Ipv4Addr>,
}

impl PortAddrs {
    fn owns(&self, ip: Ipv4Addr) -> bool {
        self.addrs.iter().any(|n| n.addr() == ip)
    }

    fn answers_arp(&self, ip: Ipv4Addr) -> bool {
        self.owns(ip) || self.arp_extra.contains(&ip)
    }

    /// The address to use as source toward `dst` on this port: the one whose subnet holds `dst`, else the
    /// first.
    pub fn source_for(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.addrs
            .iter()
            .find(|n| n.contains(&dst))
            .or(self.addrs.first())
            .map(|n| n.addr())
    }
}

/// What presence decided for a packet.
///
/// - [`Verdict::Reply`]: rewritten in place into a reply (ARP, ICMP echo), to send back out of the port it
///   came in on.
/// - [`Verdict::Forward`]: a transit packet to route (forwarding on); its TTL was decremented, and the
///   caller writes the L2 header ([`set_l2`]) once the next hop's MAC is known.
/// - [`Verdict::Consumed`]: an ARP reply or gratuitous request, whose content is in `learn`.
/// - [`Verdict::Lane`]: a valid IPv4 packet (checksum, source, TTL checked) for the role's stages of that
///   lane.
/// - [`Verdict::Drop`], by the presence stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub learn: Option<Learn>,
}

impl Outcome {
    const fn act(verdict: Verdict) -> Outcome {
        Outcome { verdict, learn: None }
    }

    const fn lane(lane: Lane) -> Outcome {
        Outcome::act(Verdict::Lane(lane))
    }

    const fn drop(r: DropReason) -> Outcome {
        Outcome::act(Verdict::Drop(Stage::Presence, r))
    }
}

/// The presence stage: read-only once built (workers share it through the published configuration).
#[derive(Debug, Clone)]
pub struct Presence {
    ports: Vec<PortAddrs>,
    routes: RouteTable,
    forwarding: bool,
    reply_ttl: u8,
    /// UDP destination port of overlay packets to own addresses (None: the overlay is off).
    overlay_udp: Option<u16>,
    /// The service addresses that are NAT pool addresses (their packets take [`Lane::Return`]).
    pool: Vec<Ipv4Addr>,
}

impl Presence {
    /// `ports[i]` describes port index i; `routes` should include the connected subnets.
    pub fn new(ports: Vec<PortAddrs>, routes: RouteTable, forwarding: bool) -> Self {
        Presence {
            ports,
            routes,
            forwarding,
            reply_ttl: 64,
            overlay_udp: None,
            pool: Vec::new(),
        }
    }

    /// Hands packets to `pool` addresses (service addresses of some port) on to [`Lane::Return`].
    pub fn with_pool(mut self, pool: Vec<Ipv4Addr>) -> Self {
        self.pool = pool;
        self
    }

    /// Hands UDP packets to `port` of own addresses on to [`Lane::Overlay`].
    pub fn with_overlay(mut self, port: u16) -> Self {
        self.overlay_udp = Some(port);
        self
    }

    pub fn port(&self, i: u16) -> Option<&PortAddrs> {
        self.ports.get(i as usize)
    }

    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    fn owns_any(&self, ip: Ipv4Addr) -> bool {
        self.ports.iter().any(|p| p.owns(ip))
    }

    /// The stage: every packet of a received burst (verdict Next, `meta.in_port` set) gets presence's
    /// verdict; ARP senders to learn go to `cx.events`.
    pub fn run<B: PacketBuf>(&self, b: &mut Burst<B>, cx: &mut Ctx) {
        for (p, m) in b.pkts.iter_mut().zip(b.meta.iter_mut()) {
            if !m.is_next() {
                continue;
            }
            let Some(d) = p.data_mut() else {
                m.drop(Stage::Rx, DropReason::NotWritable);
                continue;
            };
            let out = self.process(m.in_port, d);
            m.verdict = out.verdict;
            if let Some(l) = out.learn {
                cx.events.learn(m.in_port, l);
            }
        }
    }

    /// Handles one frame received on port `port`. Never panics on any bytes.
    #[inline]
    pub fn process(&self, port: u16, frame: &mut [u8]) -> Outcome {
        let Some(me) = self.ports.get(port as usize) else {
            return Outcome::drop(DropReason::OtherHost);
        };
        if frame.len() < ethernet::HEADER_LEN {
            return Outcome::drop(DropReason::EthTruncated);
        }
        let eth = ethernet::Frame::new_unchecked(&*frame);
        let dst = eth.dst();
        if dst != me.mac && !dst.is_broadcast() {
            return Outcome::drop(DropReason::OtherHost);
        }
        match eth.ethertype() {
            ethernet::ethertype::ARP => self.arp(me, frame),
            ethernet::ethertype::IPV4 if dst.is_broadcast() => Outcome::drop(DropReason::OtherHost),
            ethernet::ethertype::IPV4 => self.ipv4(me, frame),
            _ => Outcome::drop(DropReason::EtherTypeUnsupported),
        }
    }

    fn arp(&self, me: &PortAddrs, frame: &mut [u8]) -> Outcome {
        let (eth_hdr, payload) = frame.split_at_mut(ethernet::HEADER_LEN);
        let req = match arp::Packet::new_checked(&*payload) {
            Ok(p) => arp::Repr::parse(&p),
            Err(_) => return Outcome::drop(DropReason::ArpMalformed),
        };
        let for_us = me.answers_arp(req.target_ip);
        let learn = (ipv4::valid_source(req.sender_ip) && req.sender_mac.is_unicast()).then_some(Learn {
            ip: req.sender_ip,
            mac: req.sender_mac,
            for_us,
        });
        match req.operation {
            arp::OP_REQUEST if for_us => {
                arp::Repr {
                    operation: arp::OP_REPLY,
                    sender_mac: me.mac,
                    sender_ip: req.target_ip,
                    target_mac: req.sender_mac,
                    target_ip: req.sender_ip,
                }
                .emit(payload);
                ethernet::Repr {
                    dst: req.sender_mac,
                    src: me.mac,
                    ethertype: ethernet::ethertype::ARP,
                }
                .emit(eth_hdr);
                Outcome {
                    learn,
                    ..Outcome::act(Verdict::Reply)
                }
            }
            // A gratuitous request (sender == target) refreshes an existing entry.
            arp::OP_REQUEST if req.sender_ip == req.target_ip => Outcome {
                learn,
                ..Outcome::act(Verdict::Consumed)
            },
            arp::OP_REQUEST => Outcome::drop(DropReason::ArpNotForUs),
            arp::OP_REPLY => Outcome {
                learn,
                ..Outcome::act(Verdict::Consumed)
            },
            _ => Outcome::drop(DropReason::ArpOpUnsupported),
        }
    }

    fn ipv4(&self, me: &PortAddrs, frame: &mut [u8]) -> Outcome {
        let l3 = &mut frame[ethernet::HEADER_LEN..];
        let ip = match ipv4::Packet::new_checked(&mut *l3) {
            Ok(p) => p,
            Err(e) => return Outcome::drop(ipv4_error_reason(e, l3)),
        };
        if !ip.verify_checksum() {
            return Outcome::drop(DropReason::Ipv4Checksum);
        }
        if !ipv4::valid_source(ip.src()) {
            return Outcome::drop(DropReason::Ipv4BadSource);
        }
        if ip.ttl() == 0 {
            return Outcome::drop(DropReason::Ipv4TtlExpired);
        }
        let dst = ip.dst();
        if self.owns_any(dst) {
            return self.local(me, frame);
        }
        if self.ports.iter().any(|p| p.arp_extra.contains(&dst)) {
            return Outcome::lane(if self.pool.contains(&dst) {
                Lane::Return
            } else {
                Lane::Service
            });
        }
        if !self.forwarding {
            return Outcome::drop(DropReason::NotForUs);
        }
        let mut ip = ip;
        match self.routes.hop(&mut ip) {
            Ok(nh) => Outcome::act(Verdict::Forward {
                port: nh.port,
                next_hop: nh.addr,
            }),
            Err(r) => Outcome::drop(r),
        }
    }

    fn local(&self, me: &PortAddrs, frame: &mut [u8]) -> Outcome {
        let (eth_hdr, l3) = frame.split_at_mut(ethernet::HEADER_LEN);
        let mut ip = ipv4::Packet::new_unchecked(l3);
        if ip.is_fragment() {
            return Outcome::drop(DropReason::Ipv4Fragment);
        }
        if let Some(port) = self.overlay_udp {
            let l4 = ip.payload();
            if ip.protocol() == ipv4::protocol::UDP && l4.len() >= 8 && u16::from_be_bytes([l4[2], l4[3]]) == port {
                return Outcome::lane(Lane::Overlay);
            }
        }
        if ip.protocol() != ipv4::protocol::ICMP {
            return Outcome::drop(DropReason::ProtocolUnhandled);
        }
        {
            let icmp = match icmpv4::Packet::new_checked(ip.payload_mut()) {
                Ok(p) if p.verify_checksum() => p,
                _ => return Outcome::drop(DropReason::IcmpMalformed),
            };
            if icmp.msg_type() != icmpv4::TYPE_ECHO_REQUEST || icmp.code() != 0 {
                return Outcome::drop(DropReason::IcmpUnhandled);
            }
            let mut icmp = icmp;
            icmp.echo_request_to_reply();
        }
        // Swap addresses (the header checksum is a sum, so the swap leaves it valid), set our TTL.
        let (src, dst) = (ip.src(), ip.dst());
        ip.set_src(dst);
        ip.set_dst(src);
        ip.set_ttl_patch_checksum(self.reply_ttl);
        let mut eth = ethernet::Frame::new_unchecked(eth_hdr);
        let peer = eth.src();
        eth.set_dst(peer);
        eth.set_src(me.mac);
        Outcome::act(Verdict::Reply)
    }
}

/// Maps a header error to the drop reason operators see.
pub(crate) fn ipv4_error_reason(e: WireError, l3: &[u8]) -> DropReason {
    match e {
        WireError::Malformed {
            layer: Layer::Ipv4,
            field: "version",
        } => DropReason::Ipv4Version,
        WireError::Malformed {
            layer: Layer::Ipv4,
            field: "header length",
        } => DropReason::Ipv4HeaderLength,
        WireError::Truncated { have, .. } if have < ipv4::MIN_HEADER_LEN => DropReason::Ipv4Truncated,
        WireError::Truncated { need, .. } if need == ((l3[0] & 0x0f) as usize) * 4 => DropReason::Ipv4HeaderLength,
        _ => DropReason::Ipv4TotalLength,
    }
}

/// Writes the Ethernet addresses of a frame to forward.
#[inline]
pub fn set_l2(frame: &mut [u8], src: MacAddr, dst: MacAddr) {
    frame[0..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
}
