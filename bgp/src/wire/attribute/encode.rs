//! Encoding of [`PathAttributes`]. Order: MP_REACH_NLRI and MP_UNREACH_NLRI first (RFC 7606
//! §5.1 "SHALL be encoded as the very first path attribute"), then ascending type code (RFC 4271
//! §5 "SHOULD order path attributes ... in ascending order"), then unknown attributes as kept.

use super::as_path::as2;
use crate::wire::error::EncodeError;
use crate::wire::nlri;
use crate::wire::types::{
    attr_flags::{EXTENDED_LENGTH, OPTIONAL, TRANSITIVE},
    attr_type, Afi, Aggregator, AsPath, AsPathSegment, MpReach, MpUnreach, PathAttributes,
    PeerType, SessionContext,
};
use bytes::{BufMut, BytesMut};
use ipnet::IpNet;
use std::net::IpAddr;

/// Writes an attribute header for a value of `len` octets, using the Extended Length form only
/// when the value does not fit one octet (RFC 4271 §4.3).
fn header(out: &mut BytesMut, flags: u8, code: u8, len: usize) -> Result<(), EncodeError> {
    if len > u16::MAX as usize {
        return Err(EncodeError::FieldTooLong {
            what: "attribute value",
            len,
        });
    }
    if len > 255 {
        out.put_u8((flags | EXTENDED_LENGTH) & 0xf0);
        out.put_u8(code);
        out.put_u16(len as u16);
    } else {
        out.put_u8(flags & !EXTENDED_LENGTH & 0xf0);
        out.put_u8(code);
        out.put_u8(len as u8);
    }
    Ok(())
}

fn u32_attr(out: &mut BytesMut, flags: u8, code: u8, v: u32) {
    out.put_slice(&[flags, code, 4]);
    out.put_u32(v);
}

/// Appends the attributes of `a` as this session's wire form wants them.
pub(crate) fn encode(
    a: &PathAttributes,
    ctx: &SessionContext,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let ibgp = ctx.peer_type == PeerType::Internal;
    if let Some(r) = &a.mp_reach {
        mp_reach(r, out)?;
    }
    if let Some(u) = &a.mp_unreach {
        mp_unreach(u, out)?;
    }
    if let Some(o) = a.origin {
        out.put_slice(&[TRANSITIVE, attr_type::ORIGIN, 1, o as u8]);
    }
    let mut needs_as4_path = false;
    if let Some(p) = &a.as_path {
        needs_as4_path = !ctx.four_octet_as && p.segments.iter().any(has_as4);
        as_path(out, TRANSITIVE, attr_type::AS_PATH, p, ctx.four_octet_as)?;
    }
    if let Some(nh) = a.next_hop {
        out.put_slice(&[TRANSITIVE, attr_type::NEXT_HOP, 4]);
        out.put_slice(&nh.octets());
    }
    if let Some(med) = a.med {
        u32_attr(out, OPTIONAL, attr_type::MULTI_EXIT_DISC, med);
    }
    // RFC 4271 §5.1.5: LOCAL_PREF "MUST NOT" be sent to external peers; RFC 4456 §8 keeps the
    // route-reflection attributes inside the AS too.
    if let (Some(lp), true) = (a.local_pref, ibgp) {
        u32_attr(out, TRANSITIVE, attr_type::LOCAL_PREF, lp);
    }
    if a.atomic_aggregate {
        out.put_slice(&[TRANSITIVE, attr_type::ATOMIC_AGGREGATE, 0]);
    }
    if let Some(agg) = &a.aggregator {
        aggregator(out, attr_type::AGGREGATOR, agg, ctx.four_octet_as);
    }
    if !a.communities.is_empty() {
        header(
            out,
            OPTIONAL | TRANSITIVE,
            attr_type::COMMUNITIES,
            4 * a.communities.len(),
        )?;
        a.communities.iter().for_each(|c| out.put_u32(*c));
    }
    if let (Some(id), true) = (a.originator_id, ibgp) {
        u32_attr(out, OPTIONAL, attr_type::ORIGINATOR_ID, u32::from(id));
    }
    if !a.cluster_list.is_empty() && ibgp {
        header(
            out,
            OPTIONAL,
            attr_type::CLUSTER_LIST,
            4 * a.cluster_list.len(),
        )?;
        a.cluster_list
            .iter()
            .for_each(|c| out.put_u32(u32::from(*c)));
    }
    // RFC 6793 §4.2.2: towards a 2-octet speaker, AS numbers that need 4 octets go as AS_TRANS
    // in AS_PATH / AGGREGATOR, and the real values in AS4_PATH / AS4_AGGREGATOR.
    if let (Some(p), true) = (&a.as_path, needs_as4_path) {
        as_path(out, OPTIONAL | TRANSITIVE, attr_type::AS4_PATH, p, true)?;
    }
    if let Some(agg) = a
        .aggregator
        .filter(|g| !ctx.four_octet_as && g.asn > u16::MAX as u32)
    {
        aggregator(out, attr_type::AS4_AGGREGATOR, &agg, true);
    }
    for u in &a.unknown {
        header(out, u.flags, u.type_code, u.value.len())?;
        out.put_slice(&u.value);
    }
    Ok(())
}

fn has_as4(s: &AsPathSegment) -> bool {
    match s {
        AsPathSegment::Set(v) | AsPathSegment::Sequence(v) => {
            v.iter().any(|a| *a > u16::MAX as u32)
        }
    }
}

/// Writes an AS_PATH (or AS4_PATH with `four`): sequences longer than 255 are split into
/// several segments (RFC 4271 §4.3: the count is one octet); a set cannot be split.
fn as_path(
    out: &mut BytesMut,
    flags: u8,
    code: u8,
    p: &AsPath,
    four: bool,
) -> Result<(), EncodeError> {
    let width = if four { 4 } else { 2 };
    let mut len = 0;
    for s in &p.segments {
        let (AsPathSegment::Set(v) | AsPathSegment::Sequence(v)) = s;
        if v.is_empty() {
            return Err(EncodeError::EmptyAsPathSegment);
        }
        if matches!(s, AsPathSegment::Set(_)) && v.len() > 255 {
            return Err(EncodeError::AsSetTooLong(v.len()));
        }
        len += 2 * v.len().div_ceil(255) + width * v.len();
    }
    header(out, flags, code, len)?;
    for s in &p.segments {
        let (kind, v) = match s {
            AsPathSegment::Set(v) => (1, v),
            AsPathSegment::Sequence(v) => (2, v),
        };
        for chunk in v.chunks(255) {
            out.put_u8(kind);
            out.put_u8(chunk.len() as u8);
            for asn in chunk {
                if four {
                    out.put_u32(*asn);
                } else {
                    out.put_u16(as2(*asn));
                }
            }
        }
    }
    Ok(())
}

fn aggregator(out: &mut BytesMut, code: u8, a: &Aggregator, four: bool) {
    out.put_slice(&[OPTIONAL | TRANSITIVE, code, if four { 8 } else { 6 }]);
    if four {
        out.put_u32(a.asn);
    } else {
        out.put_u16(as2(a.asn));
    }
    out.put_slice(&a.address.octets());
}

fn prefix(out: &mut BytesMut, afi: Afi, net: &IpNet) -> Result<(), EncodeError> {
    match (net, afi == Afi::IPV4) {
        (IpNet::V4(n), true) => nlri::encode_v4(n, out),
        (IpNet::V6(n), false) => nlri::encode_v6(n, out),
        _ => {
            return Err(EncodeError::AddressFamilyMismatch(
                "prefix does not match the AFI",
            ))
        }
    }
    Ok(())
}

fn prefixes_len(nets: &[IpNet]) -> usize {
    nets.iter()
        .map(|n| 1 + (n.prefix_len() as usize).div_ceil(8))
        .sum()
}

fn mp_reach(r: &MpReach, out: &mut BytesMut) -> Result<(), EncodeError> {
    let nh_len: usize = r
        .next_hops
        .iter()
        .map(|h| if h.is_ipv4() { 4 } else { 16 })
        .sum();
    let nh_len8 = u8::try_from(nh_len).map_err(|_| EncodeError::FieldTooLong {
        what: "MP_REACH_NLRI next hop",
        len: nh_len,
    })?;
    header(
        out,
        OPTIONAL,
        attr_type::MP_REACH_NLRI,
        5 + nh_len + prefixes_len(&r.nlri),
    )?;
    out.put_u16(r.afi.0);
    out.put_u8(r.safi.0);
    out.put_u8(nh_len8);
    for h in &r.next_hops {
        match h {
            IpAddr::V4(a) => out.put_slice(&a.octets()),
            IpAddr::V6(a) => out.put_slice(&a.octets()),
        }
    }
    out.put_u8(0);
    r.nlri.iter().try_for_each(|n| prefix(out, r.afi, n))
}

fn mp_unreach(u: &MpUnreach, out: &mut BytesMut) -> Result<(), EncodeError> {
    header(
        out,
        OPTIONAL,
        attr_type::MP_UNREACH_NLRI,
        3 + prefixes_len(&u.withdrawn),
    )?;
    out.put_u16(u.afi.0);
    out.put_u8(u.safi.0);
    u.withdrawn.iter().try_for_each(|n| prefix(out, u.afi, n))
}
