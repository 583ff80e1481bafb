//! Static IPv4 routes: longest prefix match over the connected subnets of the ports and configured routes.
//!
//! The table is small (connected subnets plus a handful of configured routes, at most 256), so a scan of
//! routes sorted by prefix length, longest first, is used; it is built once and read-only for workers.
use crate::buf::PacketBuf;
use crate::drop::{DropReason, Stage};
use crate::stage::{Burst, Ctx, Verdict};
use crate::wire::{ethernet, ipv4};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// One route: packets to `net` leave through `port`, to `via` or (connected) to the destination itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub net: Ipv4Net,
    pub port: u16,
    pub via: Option<Ipv4Addr>,
}

/// Where to send a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub port: u16,
    pub addr: Ipv4Addr,
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Builds the table; for equal prefixes the first given wins.
    pub fn new(mut routes: Vec<Route>) -> Self {
        for r in &mut routes {
            r.net = r.net.trunc();
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.net.prefix_len()));
        RouteTable { routes }
    }

    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<NextHop> {
        self.routes.iter().find(|r| r.net.contains(&dst)).map(|r| NextHop {
            port: r.port,
            addr: r.via.unwrap_or(dst),
        })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// One router hop for a valid IPv4 header (RFC 1812 5.3.1): a packet whose TTL would reach 0 is not
    /// forwarded; else its next hop, with the TTL decremented.
    #[inline]
    pub fn hop(&self, ip: &mut ipv4::Packet<&mut [u8]>) -> Result<NextHop, DropReason> {
        if ip.ttl() <= 1 {
            return Err(DropReason::Ipv4TtlExpired);
        }
        let nh = self.lookup(ip.dst()).ok_or(DropReason::NoRoute)?;
        ip.decrement_ttl();
        Ok(nh)
    }

    /// The stage that ends a role's stage list when packets leave by their (translated) destination:
    /// every packet still Next, or Route, is forwarded like a router hop ([`RouteTable::hop`]). Its IPv4
    /// header was validated by an earlier stage (presence, decapsulation, NAT).
    pub fn run<B: PacketBuf>(&self, b: &mut Burst<B>, _cx: &mut Ctx) {
        for (p, m) in b.pkts.iter_mut().zip(b.meta.iter_mut()) {
            if !matches!(m.verdict, Verdict::Next | Verdict::Route) {
                continue;
            }
            let Some(l3) = p.data_mut().and_then(|d| d.get_mut(ethernet::HEADER_LEN..)) else {
                m.drop(Stage::Route, DropReason::NotWritable);
                continue;
            };
            let Ok(mut ip) = ipv4::Packet::new_checked(l3) else {
                m.drop(Stage::Route, DropReason::Internal);
                continue;
            };
            m.verdict = match self.hop(&mut ip) {
                Ok(nh) => Verdict::Forward {
                    port: nh.port,
                    next_hop: nh.addr,
                },
                Err(r) => Verdict::Drop(Stage::Route, r),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_and_connected_has_no_via() {
        let t = RouteTable::new(vec![
            Route {
                net: net("0.0.0.0/0"),
                port: 0,
                via: Some("10.0.0.1".parse().unwrap()),
            },
            Route {
                net: net("10.0.0.2/24"),
                port: 0,
                via: None,
            },
            Route {
                net: net("10.1.0.0/16"),
                port: 1,
                via: Some("10.0.0.9".parse().unwrap()),
            },
            Route {
                net: net("10.1.2.0/24"),
                port: 1,
                via: None,
            },
        ]);
        let l = |s: &str| t.lookup(s.parse().unwrap()).unwrap();
        assert_eq!(
            l("10.0.0.77"),
            NextHop {
                port: 0,
                addr: "10.0.0.77".parse().unwrap()
            }
        );
        assert_eq!(
            l("10.1.9.9"),
            NextHop {
                port: 1,
                addr: "10.0.0.9".parse().unwrap()
            }
        );
        assert_eq!(
            l("10.1.2.3"),
            NextHop {
                port: 1,
                addr: "10.1.2.3".parse().unwrap()
            }
        );
        assert_eq!(
            l("8.8.8.8"),
            NextHop {
                port: 0,
                addr: "10.0.0.1".parse().unwrap()
            }
        );
        assert_eq!(RouteTable::new(vec![]).lookup("1.1.1.1".parse().unwrap()), None);
    }

    #[test]
    fn the_route_stage_forwards_like_a_router_hop() {
        use crate::buf::VecBuf;
        use crate::stage::{Burst, Meta, Scratch};
        let t = RouteTable::new(vec![Route {
            net: net("10.20.0.0/16"),
            port: 1,
            via: Some("10.0.0.1".parse().unwrap()),
        }]);
        let frame = |dst: [u8; 4], ttl: u8| {
            let mut f = vec![0u8; ethernet::HEADER_LEN + 28];
            ipv4::Repr {
                src: Ipv4Addr::new(192, 168, 1, 10),
                dst: Ipv4Addr::from(dst),
                protocol: 17,
                ttl,
                dscp_ecn: 0,
                ident: 0,
                dont_frag: false,
                payload_len: 8,
            }
            .emit(&mut f[ethernet::HEADER_LEN..]);
            VecBuf::new(&f, 0)
        };
        let mut b = Burst::with_capacity(4);
        for (f, v) in [
            (frame([10, 20, 0, 10], 64), Verdict::Next),
            (frame([10, 20, 0, 10], 9), Verdict::Route),
            (frame([10, 20, 0, 10], 1), Verdict::Next),
            (frame([8, 8, 8, 8], 64), Verdict::Next),
        ] {
            b.push(
                f,
                Meta {
                    verdict: v,
                    ..Meta::new(0)
                },
            )
            .unwrap();
        }
        t.run(&mut b, &mut Scratch::default().cx(0));
        let fwd = Verdict::Forward {
            port: 1,
            next_hop: "10.0.0.1".parse().unwrap(),
        };
        let v: Vec<_> = b.meta.iter().map(|m| m.verdict).collect();
        assert_eq!(
            v,
            [
                fwd,
                fwd,
                Verdict::Drop(Stage::Route, DropReason::Ipv4TtlExpired),
                Verdict::Drop(Stage::Route, DropReason::NoRoute),
            ]
        );
        let ttl = |i: usize| b.pkts[i].data()[ethernet::HEADER_LEN + ipv4::field::TTL];
        assert_eq!((ttl(0), ttl(1)), (63, 8));
        assert!(crate::checksum::verify(
            &b.pkts[0].data()[ethernet::HEADER_LEN..ethernet::HEADER_LEN + 20]
        ));
    }
}
