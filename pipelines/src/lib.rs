//! Header views and packet stages: plain Rust, no DPDK. The appliance runs these stages on mbufs; the tests
//! here run them on byte buffers.
//!
//! Safe Rust everywhere but in three modules, each of which says why it needs `unsafe`: [`huge`] (memory
//! from the allocator with huge-page advice), [`prefetch`] (the CPU's prefetch hint) and [`nat::table`]
//! (reading a session's key as two words).
#![deny(unsafe_code)]

pub mod buf;
pub mod checksum;
pub mod drop;
pub mod fixed;
pub mod handoff;
pub mod hold;
#[allow(unsafe_code)] // allocates and frees the raw memory of huge-page tables
pub mod huge;
pub mod index;
pub mod nat;
pub mod neigh;
pub mod overlay;
pub mod paths;
#[allow(unsafe_code)] // the prefetch intrinsic is an unsafe function
pub mod prefetch;
pub mod presence;
pub mod route;
pub mod stage;
pub mod wire;

pub use drop::{DropReason, Stage};
pub use wire::MacAddr;
