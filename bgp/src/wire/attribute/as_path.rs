//! AS_PATH and AGGREGATOR in their 2- and 4-octet forms, and the RFC 6793 AS4_PATH and
//! AS4_AGGREGATOR attributes that carry 4-octet AS numbers across 2-octet sessions.
//!
//! ```text
//! AS_PATH segment (RFC 4271 §4.3): type (1 = AS_SET, 2 = AS_SEQUENCE), count (1 octet),
//! then count AS numbers of 2 octets (4 octets on a 4-octet session and in AS4_PATH).
//! ```

use super::AttrFault::{self, Discard, Withdraw};
use super::Decoded;
use crate::wire::types::{Aggregator, AsPath, AsPathSegment, AS_TRANS};
use std::net::Ipv4Addr;

const AS_SET: u8 = 1;
const AS_SEQUENCE: u8 = 2;

/// Why a path did not parse (RFC 7606 §7.2 lists these malformations).
fn segments(v: &[u8], four: bool) -> Result<AsPath, &'static str> {
    let width = if four { 4 } else { 2 };
    let mut segs: Vec<AsPathSegment> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let (Some(&kind), Some(&n)) = (v.get(i), v.get(i + 1)) else {
            return Err("AS_PATH segment header underrun");
        };
        if n == 0 {
            return Err("AS_PATH segment length is zero");
        }
        let body = v
            .get(i + 2..i + 2 + n as usize * width)
            .ok_or("AS_PATH segment overrun")?;
        let asns: Vec<u32> = if four {
            body.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            body.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
                .collect()
        };
        // RFC 7607 §2: AS 0 in a path makes it malformed.
        if asns.contains(&0) {
            return Err("AS_PATH contains AS 0");
        }
        match kind {
            // Adjacent sequences are one sequence split at 255 ASes (RFC 4271 §4.3): join them
            // so the model does not depend on how the sender split it.
            AS_SEQUENCE => match segs.last_mut() {
                Some(AsPathSegment::Sequence(prev)) => prev.extend(asns),
                _ => segs.push(AsPathSegment::Sequence(asns)),
            },
            AS_SET => segs.push(AsPathSegment::Set(asns)),
            // Confederation segments (RFC 5065) are not supported: malformed here.
            _ => return Err("unsupported AS_PATH segment type"),
        }
        i += 2 + n as usize * width;
    }
    Ok(AsPath { segments: segs })
}

/// AS_PATH. RFC 7606 §7.2: a malformed AS_PATH is treat-as-withdraw.
pub(super) fn decode_as_path(v: &[u8], four: bool) -> Result<AsPath, AttrFault> {
    segments(v, four).map_err(Withdraw)
}

/// AS4_PATH. RFC 6793 §4.1: received on a 4-octet session it is discarded; §6: a malformed
/// AS4_PATH is discarded too.
pub(super) fn decode_as4_path(v: &[u8], four: bool) -> Result<AsPath, AttrFault> {
    if four {
        return Err(Discard("AS4_PATH on a 4-octet AS session"));
    }
    segments(v, true).map_err(Discard)
}

fn aggregator_value(v: &[u8], four: bool) -> Option<Aggregator> {
    let (asn, addr) = if four {
        let a: [u8; 8] = v.try_into().ok()?;
        (
            u32::from_be_bytes([a[0], a[1], a[2], a[3]]),
            [a[4], a[5], a[6], a[7]],
        )
    } else {
        let a: [u8; 6] = v.try_into().ok()?;
        (
            u16::from_be_bytes([a[0], a[1]]) as u32,
            [a[2], a[3], a[4], a[5]],
        )
    };
    Some(Aggregator {
        asn,
        address: Ipv4Addr::from(addr),
    })
}

/// AGGREGATOR. RFC 7606 §7.7: a length other than 6 (8 on 4-octet sessions) is attribute
/// discard; RFC 7607 §2: so is AS 0.
pub(super) fn aggregator(v: &[u8], four: bool) -> Result<Aggregator, AttrFault> {
    let a = aggregator_value(v, four).ok_or(Discard("AGGREGATOR length"))?;
    if a.asn == 0 {
        return Err(Discard("AGGREGATOR AS is 0"));
    }
    Ok(a)
}

/// AS4_AGGREGATOR: as AS4_PATH, discarded on 4-octet sessions (RFC 6793 §4.1) and when
/// malformed (RFC 6793 §6, RFC 7606 §7.7).
pub(super) fn as4_aggregator(v: &[u8], four: bool) -> Result<Aggregator, AttrFault> {
    if four {
        return Err(Discard("AS4_AGGREGATOR on a 4-octet AS session"));
    }
    let a = aggregator_value(v, true).ok_or(Discard("AS4_AGGREGATOR length is not 8"))?;
    if a.asn == 0 {
        return Err(Discard("AS4_AGGREGATOR AS is 0"));
    }
    Ok(a)
}

/// RFC 6793 §4.2.3: rebuilds the 4-octet path on a 2-octet session.
pub(super) fn merge_as4(d: &mut Decoded) {
    let as4_path = d.as4_path.take();
    let as4_agg = d.as4_aggregator.take();
    // "If the AGGREGATOR attribute ... [carries] an AS number other than AS_TRANS, then the
    // AS4_AGGREGATOR attribute and the AS4_PATH attribute SHALL be ignored"; with AS_TRANS the
    // AS4_AGGREGATOR value is the aggregator.
    if let Some(agg) = &mut d.attrs.aggregator {
        if agg.asn != AS_TRANS as u32 {
            return;
        }
        if let Some(a4) = as4_agg {
            *agg = a4;
        }
    }
    let (Some(as4), Some(as_path)) = (as4_path, &mut d.attrs.as_path) else {
        return;
    };
    let n = as_path.path_len();
    let n4 = as4.path_len();
    // "If the number of AS numbers in the AS_PATH attribute is less than the number of AS
    // numbers in the AS4_PATH attribute, then the AS4_PATH attribute SHALL be ignored."
    if n < n4 {
        return;
    }
    // Otherwise take the leading n - n4 AS numbers (an AS_SET counting as one) of AS_PATH and
    // prepend them to AS4_PATH.
    let mut need = n - n4;
    let mut merged: Vec<AsPathSegment> =
        Vec::with_capacity(as_path.segments.len() + as4.segments.len());
    for seg in &as_path.segments {
        if need == 0 {
            break;
        }
        match seg {
            AsPathSegment::Set(_) => {
                merged.push(seg.clone());
                need -= 1;
            }
            AsPathSegment::Sequence(v) => {
                let k = need.min(v.len());
                merged.push(AsPathSegment::Sequence(v[..k].to_vec()));
                need -= k;
            }
        }
    }
    for seg in as4.segments {
        match (merged.last_mut(), seg) {
            (Some(AsPathSegment::Sequence(prev)), AsPathSegment::Sequence(v)) => prev.extend(v),
            (_, seg) => merged.push(seg),
        }
    }
    as_path.segments = merged;
}

/// The 2-octet form of an AS number: AS_TRANS when it does not fit (RFC 6793 §4.2.2).
pub(super) fn as2(asn: u32) -> u16 {
    u16::try_from(asn).unwrap_or(AS_TRANS)
}
