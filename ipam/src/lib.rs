//! `ipam`: Calico-style IP address management (pools, blocks, affinities, handles), the `Store`
//! trait with its backends, and the node registry.
//!
//! Everything here is synchronous: the agent calls it from `spawn_blocking`.
//!
//! Layers, bottom up:
//! - [`store`]: untyped records with opaque revisions; `memory` and `file` backends, chosen by
//!   [`store::open`] from the `--datastore` flag (`memory`, `file:<dir>`).
//! - [`resources`]: Calico's records (IPPool, IPAMBlock, BlockAffinity, IPAMHandle, IPAMConfig)
//!   and our Node record, typed, with Calico's JSON field names.
//! - [`allocator`]: [`Ipam`], Calico's algorithm: blocks claimed in two phases, every write a
//!   compare-and-swap, borrowing when the pool runs dry, `check`/`repair`.
//! - [`registry`]: [`NodeRegistry`], the members of the BGP mesh.
//!
//! ```
//! use ipam::{AllocationAttrs, Ipam, IpamSettings, NodeRecord, NodeRegistry};
//!
//! let store = ipam::open_store("memory")?;
//! NodeRegistry::new(store.clone()).register(&NodeRecord {
//!     name: "node-1".into(),
//!     address: "172.18.0.2".parse()?,
//!     asn: 64512,
//!     last_heartbeat: 0,
//! })?;
//! let ipam = Ipam::open(store, IpamSettings::default())?;
//! let ip = ipam.assign("k8s-pod-network.0123abcd", &AllocationAttrs::node("node-1"))?;
//! let blocks = ipam.node_blocks("node-1")?; // advertise and blackhole these
//! assert!(blocks[0].contains(&ip));
//! assert_eq!(ipam.release("k8s-pod-network.0123abcd")?, vec![ip]);
//! assert!(ipam.check()?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod conformance;
pub mod error;
pub mod leader;
pub mod registry;
pub mod resources;
pub mod store;

pub use error::IpamError;
pub mod allocator;

pub use allocator::{
    Allocation, AllocationAttrs, Assigned, BlockUsage, Ipam, IpamSettings, NodeRelease, PoolUsage,
    Problem, Repair, RepairReport,
};
pub use leader::Leadership;
pub use registry::NodeRegistry;
pub use resources::{IpPool, IpamConfig, NodeRecord};
pub use store::{open as open_store, Kind, Record, Revision, Store, StoreError};
