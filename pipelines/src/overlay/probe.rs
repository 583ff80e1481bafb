//! Path probes (ARCHITECTURE.md "Control plane"): an edge or gateway sends a probe over every candidate
//! path at a configured rate: the outer headers alone (no inner packet), with the option's probe flag,
//! the path id, a probe sequence number and the sender's timestamp; relays forward it like any packet.
//! The far end turns it into a reply in place (probe-reply flag, sent back through the relay it came
//! from, on its own path through that relay) and echoes the stream (which carries the probed path's id),
//! sequence number and timestamp, so the prober can match the reply to its path and measure the round trip.
use super::replicate::Path;
use super::{parse_outer, Outer, OuterRepr, OUTER_LEN};
use crate::buf::PacketBuf;
use crate::drop::{DropReason, Stage};
use crate::stage::{Burst, Ctx, ProbeReply, Verdict};
use crate::wire::geneve::{OptRepr, FLAG_PROBE, FLAG_PROBE_REPLY};
use crate::wire::MacAddr;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// The stage after [`super::admit`] at an edge or gateway: a probe from a peer becomes its reply, sent
/// back through the relay it came from on this node's path through that relay; a probe reply is measured
/// (an event for the control thread) and consumed. Other packets pass.
#[derive(Debug, Clone)]
pub struct Responder {
    node: u16,
    addr: Ipv4Addr,
    hops: u8,
    /// (prober's node id, relay address) -> this node's path back: (path id, port, next hop).
    back: HashMap<(u16, Ipv4Addr), (u8, u16, Ipv4Addr), ahash::RandomState>,
}

impl Responder {
    /// `dests[i]` is a node id and `paths[i]` every path toward it (the candidates, not only the set in
    /// use: a probe comes over any of them).
    pub fn new(node: u16, addr: Ipv4Addr, hops: u8, dests: &[u16], paths: &[Vec<Path>]) -> Responder {
        let mut back = HashMap::default();
        for (d, ps) in dests.iter().zip(paths) {
            for p in ps {
                back.entry((*d, p.relay)).or_insert((p.id, p.port, p.next_hop));
            }
        }
        Responder { node, addr, hops, back }
    }

    pub fn run<B: PacketBuf>(&mut self, b: &mut Burst<B>, cx: &mut Ctx) {
        for (p, m) in b.pkts.iter_mut().zip(b.meta.iter_mut()) {
            if !m.is_next() || !is_probe(m.flags) {
                continue;
            }
            if m.flags & FLAG_PROBE_REPLY != 0 {
                cx.events.probe_reply(ProbeReply {
                    // A probe's stream carries the probed path's id.
                    path: m.stream as u8,
                    seq: m.seq,
                    at_ns: cx.now_ns,
                });
                m.verdict = Verdict::Consumed;
                continue;
            }
            m.verdict = match self.answer(p) {
                Ok((port, next_hop)) => {
                    cx.events.probes_answered += 1;
                    Verdict::Forward { port, next_hop }
                }
                Err(r) => Verdict::Drop(Stage::Probe, r),
            };
        }
    }

    /// Turns a probe into its reply in place; returns where to send it.
    fn answer<B: PacketBuf>(&self, pkt: &mut B) -> Result<(u16, Ipv4Addr), DropReason> {
        let o = parse_outer(pkt.data())?;
        let &(id, port, next_hop) = self.back.get(&(o.opt.sender, o.ip_src)).ok_or(DropReason::NoPath)?;
        let d = pkt.data_mut().ok_or(DropReason::NotWritable)?;
        let n = reply_in_place(d, &o, self.addr, self.node, id, self.hops)?;
        let extra = pkt.len() - n;
        if !pkt.trim(extra) {
            return Err(DropReason::MultiSegment);
        }
        Ok((port, next_hop))
    }
}

/// What to put in a probe.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub eth_src: MacAddr,
    pub eth_dst: MacAddr,
    /// This node's overlay address and id.
    pub src: Ipv4Addr,
    pub node: u16,
    /// The path's relay (outer destination), the destination node and the path id.
    pub relay: Ipv4Addr,
    pub dest: u16,
    pub path: u8,
    pub udp_src: u16,
    pub hops: u8,
    pub seq: u32,
    pub now_ns: u64,
}

/// Writes a probe frame into `buf` (at least [`OUTER_LEN`] bytes); returns its length.
pub fn build(buf: &mut [u8], p: &Probe) -> Option<usize> {
    let buf = buf.get_mut(..OUTER_LEN)?;
    OuterRepr {
        eth_src: p.eth_src,
        eth_dst: p.eth_dst,
        ip_src: p.src,
        ip_dst: p.relay,
        udp_src: p.udp_src,
        vni: 0,
        opt: OptRepr {
            flags: FLAG_PROBE,
            hops: p.hops,
            path: p.path,
            sender: p.node,
            dest: p.dest,
            stream: p.path as u16,
            key: 0,
            seq: p.seq,
            tstamp: p.now_ns,
        },
    }
    .emit(buf, 0);
    Some(OUTER_LEN)
}

/// Whether flags mark a probe or a probe reply.
#[inline]
pub fn is_probe(flags: u8) -> bool {
    flags & (FLAG_PROBE | FLAG_PROBE_REPLY) != 0
}

/// Rewrites a received probe (parsed as `o`) in place into its reply: the first [`OUTER_LEN`] bytes
/// become the reply's headers (Ethernet addresses left for the sender to fill); the caller trims the
/// frame to that length. `path` is this node's path back through the relay the probe came from.
pub fn reply_in_place(
    frame: &mut [u8],
    o: &Outer,
    me: Ipv4Addr,
    node: u16,
    path: u8,
    hops: u8,
) -> Result<usize, DropReason> {
    if o.opt.flags & FLAG_PROBE == 0 {
        return Err(DropReason::OverlayMalformed);
    }
    let buf = frame.get_mut(..OUTER_LEN).ok_or(DropReason::OverlayMalformed)?;
    OuterRepr {
        eth_src: MacAddr::ZERO,
        eth_dst: MacAddr::ZERO,
        ip_src: me,
        ip_dst: o.ip_src,
        udp_src: o.udp_src,
        vni: 0,
        opt: OptRepr {
            flags: FLAG_PROBE_REPLY,
            hops,
            path,
            sender: node,
            dest: o.opt.sender,
            stream: o.opt.stream,
            key: 0,
            seq: o.opt.seq,
            tstamp: o.opt.tstamp,
        },
    }
    .emit(buf, 0);
    Ok(OUTER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_and_reply_round_trip() {
        let mut f = vec![0u8; OUTER_LEN];
        let p = Probe {
            eth_src: MacAddr([2, 0, 0, 0, 0, 1]),
            eth_dst: MacAddr([2, 0, 0, 0, 0, 2]),
            src: Ipv4Addr::new(10, 1, 0, 1),
            node: 1,
            relay: Ipv4Addr::new(10, 2, 0, 1),
            dest: 4,
            path: 5,
            udp_src: 40000,
            hops: 8,
            seq: 77,
            now_ns: 123_456,
        };
        assert_eq!(build(&mut f, &p), Some(OUTER_LEN));
        let o = parse_outer(&f).expect("a probe parses");
        assert_eq!(o.opt.flags, FLAG_PROBE);
        assert_eq!((o.opt.path, o.opt.stream, o.opt.dest, o.opt.seq), (5, 5, 4, 77));
        // At the far end (node 4, 10.4.0.1), after the relay rewrote the outer source.
        let mut o = o;
        o.ip_src = Ipv4Addr::new(10, 2, 0, 1);
        let n = reply_in_place(&mut f, &o, Ipv4Addr::new(10, 4, 0, 1), 4, 7, 8).unwrap();
        let r = parse_outer(&f[..n]).expect("a reply parses");
        assert_eq!(r.opt.flags, FLAG_PROBE_REPLY);
        assert_eq!(
            (r.ip_src, r.ip_dst),
            (Ipv4Addr::new(10, 4, 0, 1), Ipv4Addr::new(10, 2, 0, 1))
        );
        assert_eq!((r.opt.path, r.opt.stream, r.opt.sender, r.opt.dest), (7, 5, 4, 1));
        assert_eq!((r.opt.seq, r.opt.tstamp), (77, 123_456));
        assert!(crate::checksum::verify(&f[14..34]));
        // A reply is not answered again.
        assert!(reply_in_place(&mut f, &r, Ipv4Addr::new(10, 1, 0, 1), 1, 1, 8).is_err());
    }
}
