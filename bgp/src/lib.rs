//! `bgp`: Gingham's BGP-4 implementation. It knows nothing of Linux, Kubernetes or IPAM.
//!
//! - [`wire`]: the message codec (RFC 4271, 4760, 6793, 4724, 8654, 2918, 1997, 4456, 7606).

#![forbid(unsafe_code)]

pub mod fsm;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod wire;

pub use speaker::{
    GracefulRestartConfig, MessageCounts, Password, PeerConfig, PeerKind, PeerProblem, PeerStatus,
    RouteBatch, RouteEvent, RouteSource, RouteView, Speaker, SpeakerConfig, SpeakerError,
    SpeakerHandle, SpeakerStatus, Subscription,
};
