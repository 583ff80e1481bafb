//! The safe layer against the real EAL (one process per test under nextest, --no-pci, --no-huge, a file
//! prefix of its own): Mbuf as a PacketBuf, replicas (one by one and in bulk) that never share bytes, a net_ring port round trip
//! through TxBuffer and Burst, buffers all back in the pool afterwards, a second EAL start refused, and a
//! port's queues handed out once.
use pipelines::buf::PacketBuf;
use pmd_bindings::{Burst, DropList, Eal, Mbuf, Mempool, Port, PortConfig, PortId, SocketId, TxBuffer};

struct RuntimeDir(String);

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.0));
    }
}

#[test]
fn mbufs_ports_and_the_eal_on_a_real_dpdk() {
    let prefix = format!("pmdt{}", std::process::id());
    let _cleanup = RuntimeDir(prefix.clone());
    let args = [
        "pmdtest",
        "-l",
        "0",
        "--no-pci",
        "--no-huge",
        "-m",
        "128",
        "--file-prefix",
        &prefix,
        "--vdev",
        "net_ring0",
        "--log-level",
        "lib.eal:error",
    ];
    let eal = Eal::init(&args).expect("EAL starts");
    assert_eq!(
        Eal::init(&args).err().map(|e| e.errno),
        Some(114),
        "a second start is refused with EALREADY"
    );
    let pool = Mempool::new(&eal, "t", 1023, 0, 2048 + 128, SocketId(-1)).unwrap();
    let idle = pool.in_use();

    // PacketBuf on an mbuf.
    let mut m = pool.alloc().unwrap();
    assert!(m.append(100));
    m.data_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    let head = PacketBuf::headroom(&m);
    assert_eq!(head, 128);
    assert!(PacketBuf::prepend(&mut m, 78));
    assert_eq!((PacketBuf::len(&m), PacketBuf::headroom(&m)), (178, 50));
    assert!(!PacketBuf::prepend(&mut m, 51), "no more headroom");
    assert!(PacketBuf::adj(&mut m, 78));
    assert!(PacketBuf::trim(&mut m, 10));
    assert_eq!(PacketBuf::data(&m), &(0..90).map(|i| i as u8).collect::<Vec<_>>()[..]);
    assert!(!PacketBuf::adj(&mut m, 91) && !PacketBuf::trim(&mut m, 91));
    let mut r = m.replica().unwrap();
    r.data_mut().unwrap()[0] = 0xee;
    assert_eq!(
        PacketBuf::data(&m)[0],
        0,
        "a replica never shares bytes with the original"
    );
    assert_eq!(&PacketBuf::data(&r)[1..], &PacketBuf::data(&m)[1..]);

    // Replicas in bulk: each copy equals its source (bytes, headroom), shares nothing with it, and a
    // pool that runs short gives as many as it has.
    let small = Mempool::new(&eal, "s", 15, 0, 2048 + 128, SocketId(-1)).unwrap();
    let mut pkts: Vec<Mbuf> = Vec::with_capacity(32);
    for i in 0..4u8 {
        let mut p = small.alloc().unwrap();
        assert!(p.append(60 + u16::from(i)));
        p.data_mut().unwrap().fill(i + 1);
        assert!(PacketBuf::adj(&mut p, i as usize));
        pkts.push(p);
    }
    let from = [0u16, 1, 3, 1, 2];
    // Each copy is handed to the patch as it is made: here its first byte becomes 0x80 + its position.
    let made = <Mbuf as PacketBuf>::replicate_into(&mut pkts, &from, |k, d| d[0] = 0x80 + k as u8);
    assert_eq!(made, 5);
    for (k, &s) in from.iter().enumerate() {
        let (c, o) = (&pkts[4 + k], &pkts[s as usize]);
        assert_eq!(PacketBuf::data(c)[0], 0x80 + k as u8, "copy {k} patched");
        assert_eq!(PacketBuf::data(o)[0], s as u8 + 1, "its source untouched");
        assert_eq!(
            PacketBuf::data(c)[1..],
            PacketBuf::data(o)[1..],
            "copy {k} of packet {s}"
        );
        assert_eq!(PacketBuf::headroom(c), PacketBuf::headroom(o));
        assert!(c.is_writable());
    }
    pkts[4].data_mut().unwrap()[5] = 0xee;
    assert_eq!(PacketBuf::data(&pkts[0])[5], 1, "a bulk replica never shares bytes");
    assert_eq!(small.available(), 6);
    assert_eq!(
        <Mbuf as PacketBuf>::replicate_into(&mut pkts, &[0; 8], |_, _| {}),
        6,
        "eight asked of a pool with six left: six made, one by one"
    );
    assert_eq!(pkts.len(), 15);
    drop(pkts);
    assert_eq!(small.in_use(), 0, "every copy is back in its pool");

    // A net_ring port sends into the ring it receives from.
    let mut port = Port::new(&eal, PortId(0)).unwrap();
    let info = port.info().unwrap();
    assert_eq!(info.driver, "net_ring");
    let cfg = PortConfig {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 256,
        tx_desc: 256,
        mtu: None,
        mac: None,
        promiscuous: false,
    };
    let (mut rxq, mut txq) = port.configure(&cfg, &pool).unwrap();
    assert_eq!(
        port.configure(&cfg, &pool).err().map(|e| e.errno),
        Some(16),
        "the queues are handed out once (EBUSY)"
    );
    assert_eq!(
        Port::new(&eal, PortId(0)).err().map(|e| e.errno),
        Some(16),
        "one Port per port id (EBUSY)"
    );
    port.start().unwrap();
    let mut tx: TxBuffer<32> = TxBuffer::new();
    for i in 0..20u8 {
        let mut f = pool.alloc().unwrap();
        assert!(f.append(64));
        f.data_mut().unwrap().fill(i);
        tx.push(f).unwrap();
    }
    assert_eq!(txq[0].send(&mut tx), (20, 0));
    let mut burst: Burst<32> = Burst::new();
    assert_eq!(rxq[0].rx_burst(&mut burst), 20);
    let mut drops: DropList<8> = DropList::new();
    let mut n = 0u8;
    while let Some(f) = burst.pop() {
        assert_eq!(f.data(), &[n; 64][..], "frames come back in order, intact");
        n += 1;
        drops.push(f); // more than 8: the list frees in bulk as it fills
    }
    drops.free_all();
    drop((m, r));
    assert_eq!(pool.in_use(), idle, "every buffer is back in the pool");
    let s = port.stats().unwrap();
    assert_eq!((s.tx_packets, s.rx_packets), (20, 20));
    port.stop().unwrap();
    port.close().unwrap();
    drop(rxq);
    drop(txq);
}
