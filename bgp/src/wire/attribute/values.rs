//! Decoders of the fixed-form attributes. Each quotes the RFC 7606 section that decides what a
//! malformed value costs.

use super::AttrFault::{self, Discard, Withdraw};
use crate::wire::types::Origin;
use std::net::Ipv4Addr;

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.try_into().ok()?))
}

/// ORIGIN, RFC 4271 §5.1.1. RFC 7606 §7.1: a length other than 1 or an undefined value is
/// treat-as-withdraw.
pub(super) fn origin(v: &[u8]) -> Result<Origin, AttrFault> {
    match v {
        [0] => Ok(Origin::Igp),
        [1] => Ok(Origin::Egp),
        [2] => Ok(Origin::Incomplete),
        [_] => Err(Withdraw("undefined ORIGIN value")),
        _ => Err(Withdraw("ORIGIN length is not 1")),
    }
}

/// NEXT_HOP, RFC 4271 §5.1.3. RFC 7606 §7.3: a length other than 4 is treat-as-withdraw.
/// RFC 4271 §6.3: a next hop that is not a valid host address makes the route ignored
/// ("the NOTIFICATION message SHOULD NOT be sent"), which is treat-as-withdraw as well.
pub(super) fn next_hop(v: &[u8]) -> Result<Ipv4Addr, AttrFault> {
    let nh = Ipv4Addr::from(be32(v).ok_or(Withdraw("NEXT_HOP length is not 4"))?);
    if nh.is_unspecified() || nh.is_broadcast() || nh.is_multicast() {
        return Err(Withdraw("NEXT_HOP is not a valid host address"));
    }
    Ok(nh)
}

/// MULTI_EXIT_DISC, RFC 4271 §5.1.4. RFC 7606 §7.4: a length other than 4 is
/// treat-as-withdraw.
pub(super) fn med(v: &[u8]) -> Result<u32, AttrFault> {
    be32(v).ok_or(Withdraw("MULTI_EXIT_DISC length is not 4"))
}

/// LOCAL_PREF, RFC 4271 §5.1.5. RFC 7606 §7.5: from an external peer it is discarded; from an
/// internal peer a length other than 4 is treat-as-withdraw.
pub(super) fn local_pref(v: &[u8], ibgp: bool) -> Result<u32, AttrFault> {
    if !ibgp {
        return Err(Discard("LOCAL_PREF from an external peer"));
    }
    be32(v).ok_or(Withdraw("LOCAL_PREF length is not 4"))
}

/// ATOMIC_AGGREGATE, RFC 4271 §5.1.6. RFC 7606 §7.6: a length other than 0 is attribute
/// discard.
pub(super) fn atomic_aggregate(v: &[u8]) -> Result<bool, AttrFault> {
    if v.is_empty() {
        Ok(true)
    } else {
        Err(Discard("ATOMIC_AGGREGATE length is not 0"))
    }
}

/// Splits a value into 4-octet words, or None when its length is not a non-zero multiple of 4.
fn words(v: &[u8]) -> Option<impl Iterator<Item = u32> + '_> {
    if v.is_empty() || !v.len().is_multiple_of(4) {
        return None;
    }
    Some(
        v.chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
    )
}

/// COMMUNITIES, RFC 1997. RFC 7606 §7.8: a length that is not a non-zero multiple of 4 is
/// treat-as-withdraw.
pub(super) fn communities(v: &[u8]) -> Result<Vec<u32>, AttrFault> {
    Ok(words(v)
        .ok_or(Withdraw(
            "COMMUNITIES length is not a non-zero multiple of 4",
        ))?
        .collect())
}

/// ORIGINATOR_ID, RFC 4456 §8. RFC 7606 §7.9: from an external peer it is discarded; a length
/// other than 4 is treat-as-withdraw.
pub(super) fn originator_id(v: &[u8], ibgp: bool) -> Result<Ipv4Addr, AttrFault> {
    if !ibgp {
        return Err(Discard("ORIGINATOR_ID from an external peer"));
    }
    Ok(Ipv4Addr::from(
        be32(v).ok_or(Withdraw("ORIGINATOR_ID length is not 4"))?,
    ))
}

/// CLUSTER_LIST, RFC 4456 §8. RFC 7606 §7.10: from an external peer it is discarded; a length
/// that is not a non-zero multiple of 4 is treat-as-withdraw.
pub(super) fn cluster_list(v: &[u8], ibgp: bool) -> Result<Vec<Ipv4Addr>, AttrFault> {
    if !ibgp {
        return Err(Discard("CLUSTER_LIST from an external peer"));
    }
    let w = words(v).ok_or(Withdraw(
        "CLUSTER_LIST length is not a non-zero multiple of 4",
    ))?;
    Ok(w.map(Ipv4Addr::from).collect())
}
