//! `agent`: the node daemon (`gingham-agent`), the operator CLI (`routectl`) and the CNI plugin
//! (`gingham-cni`).

pub mod autodetect;
pub mod cni;
pub mod control;
pub mod daemon;
pub mod metrics;
pub mod render;

pub mod config;
pub mod kernel;
pub mod netns;
pub mod output;
pub mod sysctl;
