//! Edge: which application a client packet belongs to, by VIP, protocol and port (ICMP echo by VIP when the
//! application allows it). Everything else is dropped and counted. Validates the IPv4 header, since this is
//! the first stage that reads the client's packet.
use super::flow_hash;
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::drop::Stage;
use crate::stage::{Burst, Ctx, Verdict};
use crate::wire::{ethernet, icmpv4, ipv4};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// One service: packets to `vip`:`port` over `proto` belong to application index `app`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub vip: Ipv4Addr,
    pub proto: u8,
    pub port: u16,
    pub app: u16,
}

/// Tables hashed with a randomly seeded ahash: fast, and crafted keys cannot predict collisions.
type Map<K, V> = HashMap<K, V, ahash::RandomState>;

#[derive(Debug, Clone, Default)]
pub struct Classifier {
    services: Map<(u32, u8, u16), u16>,
    icmp: Map<u32, u16>,
    vips: std::collections::HashSet<u32, ahash::RandomState>,
}

impl Classifier {
    /// `icmp` lists (VIP, application) pairs whose application takes ICMP echo through the overlay.
    pub fn new(services: &[Service], icmp: &[(Ipv4Addr, u16)]) -> Self {
        Classifier {
            services: services
                .iter()
                .map(|s| ((u32::from(s.vip), s.proto, s.port), s.app))
                .collect(),
            icmp: icmp.iter().map(|(v, a)| (u32::from(*v), *a)).collect(),
            vips: services
                .iter()
                .map(|s| u32::from(s.vip))
                .chain(icmp.iter().map(|(v, _)| u32::from(*v)))
                .collect(),
        }
    }

    /// Whether `ip` is one of the VIPs (the only sources an edge hands replies to clients from).
    #[inline]
    pub fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vips.contains(&u32::from(ip))
    }

    /// Classifies one frame (Ethernet + IPv4); returns (application, flow hash) or why not.
    #[inline]
    pub fn classify(&self, frame: &[u8]) -> Result<(u16, u32), DropReason> {
        let l3 = frame.get(ethernet::HEADER_LEN..).ok_or(DropReason::EthTruncated)?;
        let ip = ipv4::Packet::new_checked(l3).map_err(|e| crate::presence::ipv4_error_reason(e, l3))?;
        if !ip.verify_checksum() {
            return Err(DropReason::Ipv4Checksum);
        }
        if ip.ttl() == 0 {
            return Err(DropReason::Ipv4TtlExpired);
        }
        let (src, dst, proto) = (ip.src(), ip.dst(), ip.protocol());
        let l4 = ip.payload();
        match proto {
            ipv4::protocol::TCP | ipv4::protocol::UDP => {
                if ip.frag_offset() != 0 {
                    return Err(DropReason::Ipv4Fragment); // no ports in later fragments
                }
                if l4.len() < 4 {
                    return Err(DropReason::Ipv4TotalLength);
                }
                let sport = u16::from_be_bytes([l4[0], l4[1]]);
                let dport = u16::from_be_bytes([l4[2], l4[3]]);
                let app = *self
                    .services
                    .get(&(u32::from(dst), proto, dport))
                    .ok_or(DropReason::NoApplication)?;
                Ok((app, flow_hash(src, dst, proto, sport, dport)))
            }
            ipv4::protocol::ICMP => {
                let icmp = icmpv4::Packet::new_checked(l4).map_err(|_| DropReason::IcmpMalformed)?;
                if icmp.msg_type() != icmpv4::TYPE_ECHO_REQUEST {
                    return Err(DropReason::IcmpUnhandled);
                }
                let app = *self.icmp.get(&u32::from(dst)).ok_or(DropReason::NoApplication)?;
                Ok((app, flow_hash(src, dst, proto, icmp.echo_ident(), 0)))
            }
            _ => Err(DropReason::NoApplication),
        }
    }

    /// The stage: each packet's application and flow hash, or a drop.
    pub fn run<B: PacketBuf>(&mut self, burst: &mut Burst<B>, _cx: &mut Ctx) {
        for (p, m) in burst.pkts.iter().zip(burst.meta.iter_mut()) {
            if !m.is_next() {
                continue;
            }
            match self.classify(p.data()) {
                Ok((app, hash)) => {
                    m.app = app;
                    m.flow_hash = hash;
                }
                Err(r) => m.verdict = Verdict::Drop(Stage::Classify, r),
            }
        }
    }
}
