//! Integration tests and tools: the network-namespace harness, real BGP peers, the lab.
