//! Integration tests and tools: the network-namespace harness, real BGP peers, the lab.
//!
//! Everything here creates kernel objects (namespaces, veths, bridges) and processes through
//! guards whose `Drop` removes them, so a failing or panicking test leaves nothing behind.
//! Namespace names carry the process id and a counter because cargo runs tests in parallel.

pub mod agent;
pub mod bench;
pub mod etcd;
pub mod net;
pub mod netns;
pub mod peers;
pub mod probe;
pub mod process;
pub mod routes;
pub mod wait;
pub mod workdir;

pub use net::{veth_pair, Bridge, Underlay};
pub use netns::Netns;
pub use probe::{ping, Capture};
pub use process::Daemon;
pub use routes::Route;
pub use wait::{wait_for, wait_until};
pub use workdir::TestDir;
