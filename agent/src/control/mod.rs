//! The agent's local API on a Unix socket, and the client `routectl` and `gingham-cni` use.

pub mod api;
mod client;
mod server;

pub use client::{call, ClientError};
pub use server::{serve, Handler, HandlerFuture, Server, ServerError};
