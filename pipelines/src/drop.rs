//! Why a packet was dropped: one enum, one name table, counted per core.

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $help:literal;)*) => {
        /// Every reason the dataplane drops a packet for.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($variant,)*
        }

        impl DropReason {
            /// All reasons, in index order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons (size of a counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// The metric label for this reason.
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }

            /// A one-line explanation for operators.
            pub const fn help(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $help,)*
                }
            }

            #[inline(always)]
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    EthTruncated => "eth_truncated", "frame shorter than an Ethernet header";
    OtherHost => "other_host", "frame for another MAC address (unicast to another host, or multicast)";
    EtherTypeUnsupported => "ethertype_unsupported", "neither IPv4 nor ARP";
    MultiSegment => "multi_segment", "packet spans several buffers";
    ArpMalformed => "arp_malformed", "ARP not Ethernet/IPv4 or truncated";
    ArpNotForUs => "arp_not_for_us", "ARP request for an address we do not own";
    ArpOpUnsupported => "arp_op_unsupported", "ARP operation other than request or reply";
    Ipv4Truncated => "ipv4_truncated", "shorter than an IPv4 header";
    Ipv4Version => "ipv4_version", "IP version field is not 4";
    Ipv4HeaderLength => "ipv4_header_length", "IHL below 5 or beyond the packet";
    Ipv4TotalLength => "ipv4_total_length", "total length below the header or beyond the frame";
    Ipv4Checksum => "ipv4_checksum", "IPv4 header checksum wrong";
    Ipv4BadSource => "ipv4_bad_source", "source address is multicast, broadcast or loopback";
    Ipv4TtlExpired => "ipv4_ttl_expired", "TTL 0, or 1 on a packet to forward";
    Ipv4Fragment => "ipv4_fragment", "fragment addressed to us (no reassembly)";
    NotForUs => "not_for_us", "IPv4 packet for another host and forwarding is off";
    IcmpMalformed => "icmp_malformed", "ICMP truncated or checksum wrong";
    IcmpUnhandled => "icmp_unhandled", "ICMP type to us other than echo request";
    ProtocolUnhandled => "protocol_unhandled", "transport protocol to us with no service";
    NoRoute => "no_route", "no route to the destination";
    NeighbourUnresolved => "neighbour_unresolved", "next hop did not answer ARP in time";
    HoldQueueFull => "hold_queue_full", "no room to hold a packet while its next hop is resolved";
    TxFull => "tx_full", "the driver did not take the packet (tx ring full)";
    NoApplication => "no_application", "no application serves this VIP, protocol and port";
    TooBig => "too_big", "larger than the overlay MTU and DF clear (not fragmented)";
    NoHeadroom => "no_headroom", "no room in front of the packet for the outer headers";
    ReplicaNoBuffer => "replica_no_buffer", "no buffer for another path's copy";
    BurstFull => "burst_full", "no room in the burst for another path's copy";
    NoPath => "no_path", "the application's path set has no usable path";
    OverlayMalformed => "overlay_malformed", "outer UDP/Geneve/option malformed or unknown critical option";
    NotAPeer => "not_a_peer", "overlay packet from an address that is not a configured peer";
    NotFromVip => "not_from_vip", "decapsulated reply at an edge whose source is not one of its VIPs";
    HopLimit => "hop_limit", "overlay hop count exhausted";
    NoOverlayRoute => "no_overlay_route", "no next hop for this destination node and path";
    WrongNode => "wrong_node", "overlay packet for another destination node";
    Duplicate => "duplicate", "copy of a sequence number already delivered (another path's twin)";
    Rogue => "rogue", "sequence number older than the history window";
    DedupeTableFull => "dedupe_table_full", "no room for another (sender, stream) in the dedupe table";
    InnerMalformed => "inner_malformed", "decapsulated packet is not a valid IPv4 packet";
    NatNoSession => "nat_no_session", "no NAT session for this packet and it may not open one (not a TCP SYN, a reply, or unknown)";
    NatIcmpNoSession => "nat_icmp_no_session", "ICMP error about a flow with no NAT session";
    NatNoTarget => "nat_no_target", "every target of the application is marked down";
    NatTableFull => "nat_table_full", "the core's NAT session table is full (new flow refused)";
    NatPortsExhausted => "nat_ports_exhausted", "the core's slice of the SNAT pool has no free port or ICMP id";
    NatMalformed => "nat_malformed", "transport header too short to translate";
    HandoffFull => "handoff_full", "the ring to the worker owning this packet's state is full";
}

/// Per-reason drop counts, owned by one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropCounts(pub [u64; DropReason::COUNT]);

impl Default for DropCounts {
    fn default() -> Self {
        DropCounts([0; DropReason::COUNT])
    }
}

impl DropCounts {
    #[inline(always)]
    pub fn add(&mut self, r: DropReason, n: u64) {
        self.0[r.index()] += n;
    }

    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_indexed_in_order() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(seen.insert(r.name()), "duplicate {}", r.name());
            assert!(r
                .name()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert!(!r.help().is_empty());
        }
    }
}
