//! Static IPv4 routes: longest prefix match over the connected subnets of the ports and configured routes.
//!
//! The table is small (connected subnets plus a handful of configured routes, at most 256), so a scan of
//! routes sorted by prefix length, longest first, is used; it is built once and read-only for workers.
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
}
