//! OPEN validation (RFC 4271 §6.2) and capability negotiation (RFC 5492): what a received OPEN
//! means for this session once it is acceptable.

use crate::wire::{
    error_code, Afi, Capability, GracefulRestart, Notification, Open, PeerType, Safi,
    SessionContext,
};
use std::net::Ipv4Addr;

/// What we require of a peer and what we offer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmConfig {
    pub local_as: u32,
    pub remote_as: u32,
    pub router_id: Ipv4Addr,
    /// Our proposed hold time in seconds (0 = no keepalives, RFC 4271 §4.2).
    pub hold_time: u16,
    /// Capabilities we send in our OPEN.
    pub capabilities: Vec<Capability>,
}

impl FsmConfig {
    /// The capabilities Gingham advertises: IPv4 unicast (RFC 4760), route refresh (RFC 2918),
    /// 4-octet AS (RFC 6793) and extended messages (RFC 8654). Graceful restart (RFC 4724) is
    /// added by the speaker when it is configured, since only it knows the restart state.
    pub fn default_capabilities(local_as: u32) -> Vec<Capability> {
        vec![
            Capability::Multiprotocol {
                afi: Afi::IPV4,
                safi: Safi::UNICAST,
            },
            Capability::RouteRefresh,
            Capability::FourOctetAs(local_as),
            Capability::ExtendedMessage,
        ]
    }

    pub fn new(local_as: u32, remote_as: u32, router_id: Ipv4Addr, hold_time: u16) -> Self {
        FsmConfig {
            local_as,
            remote_as,
            router_id,
            hold_time,
            capabilities: Self::default_capabilities(local_as),
        }
    }

    pub fn peer_type(&self) -> PeerType {
        if self.local_as == self.remote_as {
            PeerType::Internal
        } else {
            PeerType::External
        }
    }

    /// The OPEN we send (AS_TRANS in My AS when our AS needs 4 octets, RFC 6793 §4.1).
    pub fn open(&self) -> Open {
        Open::new(
            self.local_as,
            self.hold_time,
            self.router_id,
            self.capabilities.clone(),
        )
    }

    fn offers(&self, code: u8) -> bool {
        self.capabilities.iter().any(|c| c.code() == code)
    }
}

/// The session parameters both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub context: SessionContext,
    /// min(ours, theirs); 0 means neither keepalives nor a hold timer (RFC 4271 §4.2).
    pub hold_time: u16,
    /// hold_time / 3 (RFC 4271 §10 suggests one third of the hold time).
    pub keepalive: u16,
    pub remote_as: u32,
    pub remote_id: Ipv4Addr,
    pub route_refresh: bool,
    /// The peer's graceful restart capability, when both sides sent one.
    pub graceful_restart: Option<GracefulRestart>,
    /// IPv4 unicast is exchanged: both offered it, or neither sent any Multiprotocol capability
    /// (RFC 4760 §8 keeps IPv4 unicast implied then).
    pub ipv4_unicast: bool,
    /// Names of the capabilities in use, for status output.
    pub capabilities: Vec<String>,
}

fn open_error(subcode: u8, data: Vec<u8>) -> Notification {
    Notification::new(error_code::OPEN_MESSAGE, subcode, data)
}

/// Checks a received OPEN against our configuration (RFC 4271 §6.2) and negotiates capabilities.
/// The error is the NOTIFICATION to send.
pub fn negotiate(cfg: &FsmConfig, open: &Open) -> Result<Negotiated, Notification> {
    use error_code::open::*;
    if open.version != 4 {
        // §6.2: data is the largest locally supported version number, 2 octets.
        return Err(open_error(UNSUPPORTED_VERSION_NUMBER, vec![0, 4]));
    }
    if open.asn() != cfg.remote_as {
        // §6.2 Bad Peer AS; the data is the My AS field as received, so the peer can see it.
        return Err(open_error(BAD_PEER_AS, open.my_as.to_be_bytes().to_vec()));
    }
    // §6.2: hold time 1 or 2 seconds MUST be rejected.
    if open.hold_time == 1 || open.hold_time == 2 {
        return Err(open_error(UNACCEPTABLE_HOLD_TIME, Vec::new()));
    }
    let id = open.bgp_id;
    let syntactically_bad = id.is_unspecified() || id.is_multicast() || id.is_broadcast();
    // §6.2 (and RFC 6286 §2.2): an iBGP peer must not share our identifier.
    let same_as_ours_ibgp = cfg.peer_type() == PeerType::Internal && id == cfg.router_id;
    if syntactically_bad || same_as_ours_ibgp {
        return Err(open_error(BAD_BGP_IDENTIFIER, Vec::new()));
    }

    // RFC 5492: a capability is in use only when both sides advertised it.
    let both = |code: u8| cfg.offers(code) && open.has_capability(code);
    let four_octet_as = both(Capability::FOUR_OCTET_AS);
    let extended_message = both(Capability::EXTENDED_MESSAGE);
    let route_refresh = both(Capability::ROUTE_REFRESH);
    let graceful_restart = if cfg.offers(Capability::GRACEFUL_RESTART) {
        open.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr.clone()),
            _ => None,
        })
    } else {
        None
    };
    let ipv4 = Capability::Multiprotocol {
        afi: Afi::IPV4,
        safi: Safi::UNICAST,
    };
    let ours_mp = cfg.offers(Capability::MULTIPROTOCOL);
    let theirs_mp = open.has_capability(Capability::MULTIPROTOCOL);
    let ipv4_unicast = match (ours_mp, theirs_mp) {
        (true, true) => cfg.capabilities.contains(&ipv4) && open.capabilities.contains(&ipv4),
        (false, false) => true,
        // RFC 4760 §8: one side without MP capabilities still speaks IPv4 unicast only.
        (true, false) => cfg.capabilities.contains(&ipv4),
        (false, true) => open.capabilities.contains(&ipv4),
    };

    let mut names = Vec::new();
    if ipv4_unicast {
        names.push("ipv4-unicast".to_string());
    }
    for (used, name) in [
        (route_refresh, "route-refresh"),
        (four_octet_as, "4-octet-as"),
        (extended_message, "extended-message"),
        (graceful_restart.is_some(), "graceful-restart"),
    ] {
        if used {
            names.push(name.to_string());
        }
    }

    let hold_time = cfg.hold_time.min(open.hold_time);
    Ok(Negotiated {
        context: SessionContext {
            four_octet_as,
            extended_message,
            peer_type: cfg.peer_type(),
        },
        hold_time,
        keepalive: hold_time / 3,
        remote_as: open.asn(),
        remote_id: id,
        route_refresh,
        graceful_restart,
        ipv4_unicast,
        capabilities: names,
    })
}
