//! BGP-4 wire codec. One file per message family; [`types`] holds the message model.

mod types;
pub use types::*;
