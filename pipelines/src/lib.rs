//! Header views and packet stages: plain Rust, no DPDK. The appliance runs these stages on mbufs; the tests
//! here run them on byte buffers.

pub mod buf;
pub mod checksum;
pub mod drop;
pub mod fixed;
pub mod handoff;
pub mod hold;
pub mod huge;
pub mod index;
pub mod nat;
pub mod neigh;
pub mod overlay;
pub mod paths;
pub mod prefetch;
pub mod presence;
pub mod route;
pub mod wire;

pub use drop::DropReason;
pub use wire::MacAddr;
