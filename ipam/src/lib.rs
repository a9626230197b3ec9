//! `ipam`: Calico-style IP address management (pools, blocks, affinities, handles), the `Store`
//! trait with its backends, and the node registry.
