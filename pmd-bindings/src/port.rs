//! Ethernet ports: configuration, start/stop, statistics, and per-queue handles owned by one thread each.
use crate::eal::{Eal, SocketId};
use crate::error::{check, Error, Result};
use crate::ffi;
use crate::mbuf::{Burst, Mempool, TxBuffer};
use std::cell::Cell;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// A DPDK port id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

/// A queue index on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u16);

/// How to set up a port.
#[derive(Debug, Clone)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// MTU to set (L3 bytes); None keeps the device's.
    pub mtu: Option<u16>,
    /// MAC address to set; None keeps the device's.
    pub mac: Option<[u8; 6]>,
    pub promiscuous: bool,
}

/// What the driver says about a port.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub driver: String,
    pub name: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub rss_offloads: u64,
    pub min_mtu: u16,
    pub max_mtu: u16,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub up: bool,
    pub speed_mbps: u32,
}

/// Basic port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
}

/// Ports claimed by a [`Port`] in this process, one bit per port id (DPDK's RTE_MAX_ETHPORTS is 32).
static CLAIMED: AtomicU64 = AtomicU64::new(0);

/// A port. Control operations take &self; the data path goes through [`RxQueue`] and [`TxQueue`], which
/// [`Port::configure`] hands out once. There is one `Port` per port id in a process (a second
/// [`Port::new`] for the same id fails, and a `Port` is neither Clone nor Copy), so each queue has exactly
/// one handle and one owner.
#[derive(Debug)]
pub struct Port {
    id: PortId,
    /// The queues were handed out.
    configured: bool,
}

impl Port {
    /// The port with id `id`, if the EAL knows it and no other `Port` of this process has it (EBUSY).
    /// The claim lasts for the process: queue handles may outlive the `Port`.
    pub fn new(_eal: &Eal, id: PortId) -> Result<Port> {
        // SAFETY: plain query, valid after EAL init.
        if unsafe { ffi::rte_eth_dev_is_valid_port(id.0) } == 0 || id.0 >= 64 {
            return Err(Error::new("rte_eth_dev_is_valid_port", 19)); // ENODEV
        }
        let bit = 1u64 << id.0;
        if CLAIMED.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            return Err(Error::new("Port::new (the port is claimed already)", 16));
            // EBUSY
        }
        Ok(Port { id, configured: false })
    }

    pub fn id(&self) -> PortId {
        self.id
    }

    pub fn info(&self) -> Result<PortInfo> {
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-parameter; the port id was validated.
        check("rte_eth_dev_info_get", unsafe {
            ffi::rte_eth_dev_info_get(self.id.0, &mut info)
        })?;
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name points to the driver's static NUL-terminated name.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(PortInfo {
            driver,
            name: self.name(),
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rss_offloads: info.flow_type_rss_offloads,
            min_mtu: info.min_mtu,
            max_mtu: info.max_mtu,
        })
    }

    /// The device name (for a vdev, what `--vdev` named it, e.g. `net_af_packet0`).
    pub fn name(&self) -> String {
        let mut buf = [0 as std::ffi::c_char; 64];
        // SAFETY: the buffer is RTE_ETH_NAME_MAX_LEN (64) bytes, as the API requires.
        let ret = unsafe { ffi::rte_eth_dev_get_name_by_port(self.id.0, buf.as_mut_ptr()) };
        if ret != 0 {
            return format!("port{}", self.id.0);
        }
        // SAFETY: DPDK wrote a NUL-terminated string into buf.
        unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
    }

    pub fn socket(&self) -> SocketId {
        // SAFETY: plain query.
        SocketId(unsafe { ffi::rte_eth_dev_socket_id(self.id.0) })
    }

    /// Configures queues (RSS over them when more than one rx queue), MTU and MAC, and sets up every
    /// queue with mbufs from `pool`. Returns one handle per rx and tx queue; a second call fails (EBUSY).
    pub fn configure(&mut self, cfg: &PortConfig, pool: &Mempool) -> Result<(Vec<RxQueue>, Vec<TxQueue>)> {
        if self.configured {
            return Err(Error::new("Port::configure (the queues were handed out already)", 16));
            // EBUSY
        }
        let info = self.info()?;
        let mut conf = ffi::rte_eth_conf::default();
        if cfg.rx_queues > 1 && info.rss_offloads != 0 {
            conf.rxmode.mq_mode = ffi::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = info.rss_offloads;
        }
        if let Some(mtu) = cfg.mtu {
            conf.rxmode.mtu = mtu as u32;
        }
        // SAFETY: conf is a valid, fully initialised configuration; the port is stopped.
        check("rte_eth_dev_configure", unsafe {
            ffi::rte_eth_dev_configure(self.id.0, cfg.rx_queues, cfg.tx_queues, &conf)
        })?;
        let socket = self.socket().0.max(0) as u32;
        let mut rx = Vec::with_capacity(cfg.rx_queues as usize);
        for q in 0..cfg.rx_queues {
            // SAFETY: the port is configured with rx_queues queues; the pool outlives the port; NULL rxconf
            // means the driver's defaults.
            check("rte_eth_rx_queue_setup", unsafe {
                ffi::rte_eth_rx_queue_setup(self.id.0, q, cfg.rx_desc, socket, std::ptr::null(), pool.as_ptr())
            })?;
            rx.push(RxQueue {
                port: self.id,
                queue: QueueId(q),
                one_thread: PhantomData,
            });
        }
        let mut tx = Vec::with_capacity(cfg.tx_queues as usize);
        for q in 0..cfg.tx_queues {
            // SAFETY: as above; NULL txconf means the driver's defaults.
            check("rte_eth_tx_queue_setup", unsafe {
                ffi::rte_eth_tx_queue_setup(self.id.0, q, cfg.tx_desc, socket, std::ptr::null())
            })?;
            tx.push(TxQueue {
                port: self.id,
                queue: QueueId(q),
                one_thread: PhantomData,
            });
        }
        if let Some(mac) = cfg.mac {
            let mut addr = ffi::rte_ether_addr { addr_bytes: mac };
            // SAFETY: addr is a valid MAC address struct.
            let ret = unsafe { ffi::rte_eth_dev_default_mac_addr_set(self.id.0, &mut addr) };
            if ret < 0 && !cfg.promiscuous {
                // The device cannot take our MAC: listen to everything and filter in software.
                self.set_promiscuous()?;
            }
        }
        if cfg.promiscuous {
            self.set_promiscuous()?;
        }
        self.configured = true;
        Ok((rx, tx))
    }

    fn set_promiscuous(&self) -> Result<()> {
        // SAFETY: plain control call on a valid port.
        check("rte_eth_promiscuous_enable", unsafe {
            ffi::rte_eth_promiscuous_enable(self.id.0)
        })?;
        Ok(())
    }

    pub fn start(&self) -> Result<()> {
        // SAFETY: the port has been configured.
        check("rte_eth_dev_start", unsafe { ffi::rte_eth_dev_start(self.id.0) })?;
        Ok(())
    }

    pub fn stop(&self) -> Result<()> {
        // SAFETY: control call; the caller stopped polling the queues first.
        check("rte_eth_dev_stop", unsafe { ffi::rte_eth_dev_stop(self.id.0) })?;
        Ok(())
    }

    pub fn close(&self) -> Result<()> {
        // SAFETY: the port is stopped; queue handles are no longer used.
        check("rte_eth_dev_close", unsafe { ffi::rte_eth_dev_close(self.id.0) })?;
        Ok(())
    }

    pub fn mac(&self) -> Result<[u8; 6]> {
        let mut addr = ffi::rte_ether_addr::default();
        // SAFETY: addr is a valid out-parameter.
        check("rte_eth_macaddr_get", unsafe {
            ffi::rte_eth_macaddr_get(self.id.0, &mut addr)
        })?;
        Ok(addr.addr_bytes)
    }

    pub fn link(&self) -> Result<LinkState> {
        let mut link = ffi::rte_eth_link::default();
        // SAFETY: link is a valid out-parameter; the nowait variant does not block.
        check("rte_eth_link_get_nowait", unsafe {
            ffi::rte_eth_link_get_nowait(self.id.0, &mut link)
        })?;
        Ok(LinkState {
            up: link.link_status() as u32 == ffi::RTE_ETH_LINK_UP,
            speed_mbps: link.link_speed,
        })
    }

    /// Port counters. Safe to call from a control thread while workers poll the queues.
    pub fn stats(&self) -> Result<PortStats> {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: s is a valid out-parameter.
        check("rte_eth_stats_get", unsafe {
            ffi::rte_eth_stats_get(self.id.0, &mut s)
        })?;
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }
}

/// The receive side of one queue. Not Clone and not Sync: exactly one thread polls it. It may move to the
/// thread that owns it (Send).
#[derive(Debug)]
pub struct RxQueue {
    port: PortId,
    queue: QueueId,
    /// `Cell` is Send but not Sync, and so is the handle.
    one_thread: PhantomData<Cell<()>>,
}

/// The transmit side of one queue. Not Clone and not Sync: exactly one thread sends on it. It may move to
/// the thread that owns it (Send).
#[derive(Debug)]
pub struct TxQueue {
    port: PortId,
    queue: QueueId,
    /// As [`RxQueue`]'s.
    one_thread: PhantomData<Cell<()>>,
}

impl RxQueue {
    pub fn port(&self) -> PortId {
        self.port
    }

    pub fn queue(&self) -> QueueId {
        self.queue
    }

    /// Receives up to N packets into an empty burst; returns how many.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        if !burst.is_empty() {
            return 0;
        }
        let ptrs = burst.fill_raw();
        // SAFETY: ptrs has room for N pointers; this handle is the only poller of (port, queue) (it is
        // neither Clone nor Sync); the driver hands over ownership of the n mbufs it writes.
        let n = unsafe { ffi::shim_rx_burst(self.port.0, self.queue.0, ptrs, N as u16) } as usize;
        burst.set_len(n);
        n
    }
}

impl TxQueue {
    pub fn port(&self) -> PortId {
        self.port
    }

    pub fn queue(&self) -> QueueId {
        self.queue
    }

    /// Sends what `buf` holds. Returns (sent, dropped): mbufs the driver did not take are freed.
    #[inline]
    pub fn send<const N: usize>(&mut self, buf: &mut TxBuffer<N>) -> (usize, usize) {
        let (ptrs, n) = buf.raw();
        if n == 0 {
            return (0, 0);
        }
        // SAFETY: the first n slots of buf are mbufs it owns; the driver takes ownership of the first
        // `sent`, which `buf.sent` then forgets and frees the rest; this handle is the only sender on
        // (port, queue) (it is neither Clone nor Sync).
        let sent = unsafe { ffi::shim_tx_burst(self.port.0, self.queue.0, ptrs, n as u16) } as usize;
        let dropped = buf.sent(sent);
        (sent, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::{RxQueue, TxQueue};

    /// Compiles only for types that are Send.
    fn send<T: Send>() {}

    #[test]
    fn queue_handles_move_to_their_thread() {
        send::<RxQueue>();
        send::<TxQueue>();
    }

    /// `<T as AmbiguousIfSync<_>>::check` names one impl when T is not Sync and two (a compile error)
    /// when it is: the handles must not be shared between threads.
    trait AmbiguousIfSync<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}
    const _: fn() = || {
        <RxQueue as AmbiguousIfSync<_>>::check();
        <TxQueue as AmbiguousIfSync<_>>::check();
    };
}
