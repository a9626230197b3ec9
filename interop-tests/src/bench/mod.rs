//! `gingham-bench`: Gingham measured side by side with BIRD and GoBGP in the same run.

pub mod feed;
pub mod latency;
pub mod mesh;
pub mod proc_stats;
pub mod table;
