//! `ipam`: Calico-style IP address management (pools, blocks, affinities, handles), the `Store`
//! trait with its backends, and the node registry.
//!
//! Everything here is synchronous: the agent calls it from `spawn_blocking`.

pub mod error;
pub mod registry;
pub mod resources;
pub mod store;

pub use error::{IpamError, StoreError};
pub mod allocator;

pub use allocator::{
    Allocation, AllocationAttrs, BlockUsage, Ipam, IpamSettings, NodeRelease, PoolUsage, Problem,
    Repair, RepairReport,
};
pub use registry::NodeRegistry;
pub use resources::{IpPool, IpamConfig, NodeRecord};
pub use store::{open as open_store, Kind, Record, Revision, Store};
