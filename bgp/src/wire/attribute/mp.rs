//! MP_REACH_NLRI and MP_UNREACH_NLRI, RFC 4760 §3 and §4, for IPv4 and IPv6 unicast.
//!
//! ```text
//! MP_REACH_NLRI                                    MP_UNREACH_NLRI
//! +---------------------------------------------+  +-------------------------------------+
//! | Address Family Identifier (2 octets)        |  | Address Family Identifier (2 octets)|
//! | Subsequent Address Family Identifier (1)    |  | Subsequent AFI (1 octet)            |
//! | Length of Next Hop Network Address (1)      |  | Withdrawn Routes (variable)         |
//! | Network Address of Next Hop (variable)      |  +-------------------------------------+
//! | Reserved (1 octet)                          |
//! | Network Layer Reachability Information      |
//! +---------------------------------------------+
//! ```
//!
//! RFC 7606 §7.11 and §5.3: a malformed MP_REACH_NLRI or MP_UNREACH_NLRI cannot be handled by
//! treat-as-withdraw (its prefixes are unknown), so it resets the session with the RFC 4760 §7
//! subcode, Optional Attribute Error. An address family we did not negotiate is discarded.

use super::{Attr, AttrFault};
use crate::wire::error::UpdateError;
use crate::wire::nlri;
use crate::wire::types::{Afi, MpReach, MpUnreach, Safi};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn reset(a: &Attr<'_>, reason: &'static str) -> AttrFault {
    AttrFault::Reset(UpdateError::OptionalAttributeError {
        attribute: a.raw_bytes(),
        reason,
    })
}

fn family(v: &[u8]) -> Option<(Afi, Safi)> {
    Some((
        Afi(u16::from_be_bytes([*v.first()?, *v.get(1)?])),
        Safi(*v.get(2)?),
    ))
}

fn prefixes(a: &Attr<'_>, afi: Afi, buf: &[u8]) -> Result<Vec<IpNet>, AttrFault> {
    let r = if afi == Afi::IPV4 {
        nlri::decode_v4(buf).map(|v| v.into_iter().map(IpNet::V4).collect())
    } else {
        nlri::decode_v6(buf)
    };
    r.map_err(|e| reset(a, e.reason))
}

fn supported(afi: Afi, safi: Safi) -> bool {
    safi == Safi::UNICAST && (afi == Afi::IPV4 || afi == Afi::IPV6)
}

pub(super) fn reach(a: &Attr<'_>) -> Result<MpReach, AttrFault> {
    let v = a.value;
    let (afi, safi) = family(v).ok_or_else(|| reset(a, "MP_REACH_NLRI too short"))?;
    if !supported(afi, safi) {
        return Err(AttrFault::Discard(
            "MP_REACH_NLRI for an address family not negotiated",
        ));
    }
    let nh_len = *v
        .get(3)
        .ok_or_else(|| reset(a, "MP_REACH_NLRI too short"))? as usize;
    let nh = v
        .get(4..4 + nh_len)
        .ok_or_else(|| reset(a, "next hop overruns MP_REACH_NLRI"))?;
    // IPv4: 4 octets, or an IPv6 next hop (RFC 8950 §3: 16 or 32). IPv6: a global address,
    // optionally followed by a link-local one (RFC 2545 §3).
    let next_hops: Vec<IpAddr> = match (nh_len, afi == Afi::IPV4) {
        (4, true) => vec![IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3]))],
        (16 | 32, _) => nh
            .chunks_exact(16)
            .map(|c| IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(c).unwrap_or([0; 16]))))
            .collect(),
        _ => {
            return Err(reset(
                a,
                "next hop length does not match the address family",
            ))
        }
    };
    // One reserved octet (RFC 4760 §3), then the NLRI.
    let rest = v
        .get(5 + nh_len..)
        .ok_or_else(|| reset(a, "MP_REACH_NLRI too short"))?;
    let nlri = prefixes(a, afi, rest)?;
    Ok(MpReach {
        afi,
        safi,
        next_hops,
        nlri,
    })
}

pub(super) fn unreach(a: &Attr<'_>) -> Result<MpUnreach, AttrFault> {
    let v = a.value;
    let (afi, safi) = family(v).ok_or_else(|| reset(a, "MP_UNREACH_NLRI too short"))?;
    if !supported(afi, safi) {
        return Err(AttrFault::Discard(
            "MP_UNREACH_NLRI for an address family not negotiated",
        ));
    }
    let withdrawn = prefixes(a, afi, &v[3..])?;
    Ok(MpUnreach {
        afi,
        safi,
        withdrawn,
    })
}
