//! Why a packet was dropped and where: one enum of reasons and one of stages, each with a name table;
//! drops are counted per core by (stage, reason).

/// An enum of labels with a metric name and a one-line help each, indexed from 0 in declaration order.
macro_rules! labelled {
    ($(#[$doc:meta])* $ty:ident { $($variant:ident => $name:literal, $help:literal;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $ty {
            $($variant,)*
        }

        impl $ty {
            /// Every value, in index order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];
            /// Number of values (size of a counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// The metric label.
            pub const fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }

            /// A one-line explanation for operators.
            pub const fn help(self) -> &'static str {
                match self {
                    $($ty::$variant => $help,)*
                }
            }

            #[inline(always)]
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

labelled! {
    /// Every reason the dataplane drops a packet for.
    DropReason {
    EthTruncated => "eth_truncated", "frame shorter than an Ethernet header";
    OtherHost => "other_host", "frame for another MAC address (unicast to another host, or multicast)";
    EtherTypeUnsupported => "ethertype_unsupported", "neither IPv4 nor ARP";
    MultiSegment => "multi_segment", "packet spans several buffers";
    NotWritable => "not_writable", "packet's buffer is shared with another copy and cannot be rewritten";
    Internal => "internal", "a state the configuration rules out (a bug: please report it)";
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
}

labelled! {
    /// Where in the dataplane a packet was dropped: the stages of every role, and the worker's own steps
    /// around them (receive, routing, neighbours, transmit, hand-off).
    Stage {
        Rx => "rx", "the frame as the driver delivered it";
        Presence => "presence", "ARP, ICMP echo, IPv4 validation and forwarding of transit packets";
        Admit => "admit", "an overlay packet's outer headers, its sender (a configured peer) and destination node";
        Probe => "probe", "path probes and their replies";
        Classify => "classify", "the application of a packet to a VIP";
        Mtu => "mtu", "MSS clamping and \"fragmentation needed\" for the overlay MTU";
        Encap => "encap", "the outer headers";
        Replicate => "replicate", "one copy per path of the path set";
        Relay => "relay", "a relay's forwarding toward the next node of a path";
        Dedupe => "dedupe", "duplicate removal";
        Decap => "decap", "removing the outer headers";
        Inner => "inner", "checks of a decapsulated packet at an edge (its source, its MSS)";
        Nat => "nat", "full NAT, both ways";
        Return => "return", "a gateway's replies toward the edge of their session";
        Route => "route", "routing a packet the stages are done with by its destination";
        Neighbour => "neighbour", "the next hop's MAC address";
        Handoff => "handoff", "the ring to the worker that owns a packet's state";
        Tx => "tx", "the driver's transmit ring";
        Worker => "worker", "the worker itself";
    }
}

impl Stage {
    /// The reasons this stage drops for (the series `/metrics` always shows, zero or not).
    pub const fn reasons(self) -> &'static [DropReason] {
        use DropReason::*;
        match self {
            Stage::Rx => &[MultiSegment, NotWritable],
            Stage::Presence => &[
                EthTruncated,
                OtherHost,
                EtherTypeUnsupported,
                ArpMalformed,
                ArpNotForUs,
                ArpOpUnsupported,
                Ipv4Truncated,
                Ipv4Version,
                Ipv4HeaderLength,
                Ipv4TotalLength,
                Ipv4Checksum,
                Ipv4BadSource,
                Ipv4TtlExpired,
                Ipv4Fragment,
                NotForUs,
                IcmpMalformed,
                IcmpUnhandled,
                ProtocolUnhandled,
                NoRoute,
            ],
            Stage::Admit => &[OverlayMalformed, ProtocolUnhandled, NotAPeer, WrongNode],
            Stage::Probe => &[OverlayMalformed, NoPath, MultiSegment, NotWritable],
            Stage::Classify => &[NoApplication],
            Stage::Mtu => &[TooBig, EthTruncated, Ipv4TotalLength, MultiSegment, NotWritable],
            Stage::Encap => &[NoHeadroom, NoPath, Ipv4TotalLength, MultiSegment, NotWritable],
            Stage::Replicate => &[NoPath, ReplicaNoBuffer, BurstFull, NotWritable],
            Stage::Relay => &[
                OverlayMalformed,
                ProtocolUnhandled,
                NotForUs,
                NotAPeer,
                HopLimit,
                NoOverlayRoute,
                NotWritable,
            ],
            Stage::Dedupe => &[Duplicate, Rogue, DedupeTableFull],
            Stage::Decap => &[InnerMalformed, OverlayMalformed, MultiSegment, NotWritable],
            Stage::Inner => &[InnerMalformed, NotFromVip, TooBig, MultiSegment, NotWritable],
            Stage::Nat => &[
                NatNoSession,
                NatIcmpNoSession,
                NatNoTarget,
                NatTableFull,
                NatPortsExhausted,
                NatMalformed,
                NoApplication,
                ProtocolUnhandled,
                Ipv4Fragment,
                NotWritable,
            ],
            Stage::Return => &[NoPath],
            Stage::Route => &[Ipv4TtlExpired, NoRoute, NotWritable, Internal],
            Stage::Neighbour => &[NeighbourUnresolved, HoldQueueFull],
            Stage::Handoff => &[HandoffFull],
            Stage::Tx => &[TxFull],
            Stage::Worker => &[BurstFull, Internal],
        }
    }
}

/// Drop counts by (stage, reason), owned by one core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropCounts {
    counts: [[u64; DropReason::COUNT]; Stage::COUNT],
    /// Bit `s` set: stage `s` has dropped something (its row is not all zero).
    rows: u32,
}

const _: () = assert!(Stage::COUNT <= 32, "DropCounts::rows has a bit per stage");

impl Default for DropCounts {
    fn default() -> Self {
        DropCounts {
            counts: [[0; DropReason::COUNT]; Stage::COUNT],
            rows: 0,
        }
    }
}

impl DropCounts {
    /// Counts made by `f` for each (stage, reason) (a snapshot of published counters).
    pub fn from_fn(f: impl Fn(Stage, DropReason) -> u64) -> DropCounts {
        let mut d = DropCounts::default();
        for s in Stage::ALL {
            for r in DropReason::ALL {
                let n = f(*s, *r);
                if n > 0 {
                    d.add(*s, *r, n);
                }
            }
        }
        d
    }

    #[inline(always)]
    pub fn add(&mut self, s: Stage, r: DropReason, n: u64) {
        self.counts[s.index()][r.index()] += n;
        self.rows |= 1 << s.index();
    }

    pub fn get(&self, s: Stage, r: DropReason) -> u64 {
        self.counts[s.index()][r.index()]
    }

    /// Drops for `r` in every stage.
    pub fn reason(&self, r: DropReason) -> u64 {
        self.counts.iter().map(|row| row[r.index()]).sum()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// The stages that have dropped something, with their counts by reason index.
    pub fn rows(&self) -> impl Iterator<Item = (Stage, &[u64; DropReason::COUNT])> + '_ {
        Stage::ALL
            .iter()
            .filter(|s| self.rows & (1 << s.index()) != 0)
            .map(|s| (*s, &self.counts[s.index()]))
    }

    /// Every (stage, reason, count) that is not zero, stage by stage.
    pub fn nonzero(&self) -> impl Iterator<Item = (Stage, DropReason, u64)> + '_ {
        self.rows().flat_map(|(s, row)| {
            DropReason::ALL
                .iter()
                .filter_map(move |r| (row[r.index()] > 0).then_some((s, *r, row[r.index()])))
        })
    }

    /// Every (stage, reason, count) worth showing: each stage's own reasons, and any other pair that is
    /// not zero.
    pub fn series(&self) -> impl Iterator<Item = (Stage, DropReason, u64)> + '_ {
        Stage::ALL.iter().flat_map(move |s| {
            DropReason::ALL.iter().filter_map(move |r| {
                let n = self.get(*s, *r);
                (n > 0 || s.reasons().contains(r)).then_some((*s, *r, n))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Indices in declaration order, names unique and snake_case, a help line each.
    fn well_formed(labels: impl Iterator<Item = (usize, &'static str, &'static str)>) {
        let mut seen = std::collections::HashSet::new();
        for (i, (index, name, help)) in labels.enumerate() {
            assert_eq!(index, i);
            assert!(seen.insert(name), "duplicate {name}");
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert!(!help.is_empty());
        }
    }

    #[test]
    fn names_are_unique_snake_case_and_indexed_in_order() {
        well_formed(DropReason::ALL.iter().map(|r| (r.index(), r.name(), r.help())));
        well_formed(Stage::ALL.iter().map(|s| (s.index(), s.name(), s.help())));
    }

    #[test]
    fn each_stage_counts_its_own_row() {
        assert!(Stage::ALL.iter().all(|s| !s.reasons().is_empty()));
        let mut d = DropCounts::default();
        d.add(Stage::Dedupe, DropReason::Duplicate, 3);
        d.add(Stage::Relay, DropReason::NotAPeer, 1);
        d.add(Stage::Dedupe, DropReason::NotAPeer, 2);
        assert_eq!(d.get(Stage::Dedupe, DropReason::NotAPeer), 2);
        assert_eq!(d.reason(DropReason::NotAPeer), 3);
        assert_eq!(d.total(), 6);
        let rows: Vec<Stage> = d.rows().map(|(s, _)| s).collect();
        assert_eq!(rows, [Stage::Relay, Stage::Dedupe]);
        // A pair outside a stage's declared reasons still shows once it counts.
        d.add(Stage::Tx, DropReason::Rogue, 1);
        assert!(d
            .series()
            .any(|(s, r, n)| (s, r, n) == (Stage::Tx, DropReason::Rogue, 1)));
        assert!(d
            .series()
            .any(|(s, r, n)| (s, r, n) == (Stage::Tx, DropReason::TxFull, 0)));
        assert!(!d.series().any(|(s, r, _)| (s, r) == (Stage::Tx, DropReason::Duplicate)));
        let nonzero: Vec<_> = d.nonzero().collect();
        assert_eq!(
            nonzero,
            [
                (Stage::Relay, DropReason::NotAPeer, 1),
                (Stage::Dedupe, DropReason::NotAPeer, 2),
                (Stage::Dedupe, DropReason::Duplicate, 3),
                (Stage::Tx, DropReason::Rogue, 1),
            ]
        );
    }
}
