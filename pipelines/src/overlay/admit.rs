//! Edge and gateway, first stage for overlay packets: the outer headers are parsed once, here, and what
//! later stages need (sender, stream, path, sequence number, flags, VNI, where the inner packet starts)
//! goes into the packet's metadata. Only configured peers may send to this node, and only packets for
//! this node id are taken. A data packet whose stream another worker owns (its duplicate-removal state,
//! ARCHITECTURE.md "Per-core, run to completion") is handed to that worker; probes are answered where
//! they arrive.
use super::{parse_outer, probe, stream_owner, PeerSet};
use crate::buf::PacketBuf;
use crate::drop::{DropReason, Stage};
use crate::stage::{Burst, Ctx, Verdict};

#[derive(Debug, Clone)]
pub struct Admit {
    /// This node's id.
    pub node: u16,
    /// The addresses allowed to send overlay packets to this node.
    pub peers: PeerSet,
    /// This worker and the number of workers (stream ownership).
    worker: u16,
    workers: u16,
}

impl Admit {
    pub fn new(node: u16, peers: PeerSet, worker: u16, workers: u16) -> Admit {
        Admit {
            node,
            peers,
            worker,
            workers: workers.max(1),
        }
    }

    pub fn run<B: PacketBuf>(&mut self, b: &mut Burst<B>, _cx: &mut Ctx) {
        for (p, m) in b.pkts.iter().zip(b.meta.iter_mut()) {
            if !m.is_next() {
                continue;
            }
            let o = match parse_outer(p.data()) {
                Ok(o) => o,
                Err(r) => {
                    m.drop(Stage::Admit, r);
                    continue;
                }
            };
            if !self.peers.contains(&o.ip_src) {
                m.drop(Stage::Admit, DropReason::NotAPeer);
                continue;
            }
            if o.opt.dest != self.node {
                m.drop(Stage::Admit, DropReason::WrongNode);
                continue;
            }
            m.sender = o.opt.sender;
            m.stream = o.opt.stream;
            m.path = o.opt.path;
            m.seq = o.opt.seq;
            m.flags = o.opt.flags;
            m.vni = o.vni;
            m.inner_off = o.inner_off as u16;
            if self.workers > 1 && !probe::is_probe(o.opt.flags) {
                let w = stream_owner(o.opt.sender, o.opt.stream, self.workers as usize);
                if w != self.worker as usize {
                    m.verdict = Verdict::Handoff { worker: w as u16 };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::VecBuf;
    use crate::overlay::{OuterRepr, OUTER_LEN};
    use crate::stage::{Meta, Scratch};
    use crate::wire::geneve::{OptRepr, FLAG_PROBE};
    use crate::wire::MacAddr;
    use std::net::Ipv4Addr;

    const PEER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);

    fn frame(src: Ipv4Addr, dest: u16, stream: u16, flags: u8) -> VecBuf {
        let mut f = vec![0u8; OUTER_LEN];
        OuterRepr {
            eth_src: MacAddr([2, 0, 0, 0, 0, 1]),
            eth_dst: MacAddr([2, 0, 0, 0, 0, 2]),
            ip_src: src,
            ip_dst: Ipv4Addr::new(10, 4, 0, 1),
            udp_src: 40000,
            vni: 7,
            opt: OptRepr {
                flags,
                hops: 8,
                path: 3,
                sender: 1,
                dest,
                stream,
                key: 0,
                seq: 99,
                tstamp: 5,
            },
        }
        .emit(&mut f, 0);
        VecBuf::new(&f, 128)
    }

    fn admit(workers: u16, frames: Vec<VecBuf>) -> Vec<Meta> {
        let mut a = Admit::new(4, [PEER].into_iter().collect(), 0, workers);
        let mut b = Burst::with_capacity(frames.len());
        for f in frames {
            b.push(f, Meta::new(0)).unwrap();
        }
        a.run(&mut b, &mut Scratch::default().cx(1));
        b.meta
    }

    #[test]
    fn the_outer_headers_are_read_once_into_the_metadata() {
        let m = admit(1, vec![frame(PEER, 4, 0x0102, 0)]);
        assert_eq!(m[0].verdict, Verdict::Next);
        assert_eq!((m[0].sender, m[0].stream, m[0].path, m[0].seq), (1, 0x0102, 3, 99));
        assert_eq!((m[0].vni, m[0].inner_off as usize), (7, OUTER_LEN));
    }

    #[test]
    fn strangers_other_nodes_and_garbage_are_dropped_by_reason() {
        let mut junk = frame(PEER, 4, 0, 0);
        junk.data_mut().unwrap()[crate::overlay::at::UDP_DST] = 0;
        let m = admit(
            1,
            vec![frame(Ipv4Addr::new(10, 9, 9, 9), 4, 0, 0), frame(PEER, 5, 0, 0), junk],
        );
        assert_eq!(m[0].verdict, Verdict::Drop(Stage::Admit, DropReason::NotAPeer));
        assert_eq!(m[1].verdict, Verdict::Drop(Stage::Admit, DropReason::WrongNode));
        assert_eq!(m[2].verdict, Verdict::Drop(Stage::Admit, DropReason::ProtocolUnhandled));
    }

    #[test]
    fn a_stream_another_worker_owns_is_handed_to_it_but_probes_are_not() {
        let stream = (0..u16::MAX).find(|&s| stream_owner(1, s, 2) == 1).unwrap();
        let m = admit(2, vec![frame(PEER, 4, stream, 0), frame(PEER, 4, stream, FLAG_PROBE)]);
        assert_eq!(m[0].verdict, Verdict::Handoff { worker: 1 });
        assert_eq!(m[1].verdict, Verdict::Next);
        let mine = (0..u16::MAX).find(|&s| stream_owner(1, s, 2) == 0).unwrap();
        assert_eq!(admit(2, vec![frame(PEER, 4, mine, 0)])[0].verdict, Verdict::Next);
    }
}
