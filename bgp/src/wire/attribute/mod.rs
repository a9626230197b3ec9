//! Path attributes of an UPDATE, RFC 4271 §4.3 and §5, with the error handling of RFC 7606.
//!
//! ```text
//! 0                   1
//! 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attr. Flags  |Attr. Type Code|  then Attribute Length: 1 octet, or 2 octets when the
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  Extended Length flag is set; then the value.
//! ```
//!
//! Each attribute decoder returns an [`AttrFault`] naming its RFC 7606 action; the list decoder
//! records survivable faults in `Update::attribute_errors` and turns session resets into
//! [`UpdateError`]s.

mod as_path;
mod encode;
mod mp;
mod values;

pub(crate) use encode::encode;

use super::error::{DecodeError, UpdateError};
use super::reader::Reader;
use super::types::{
    attr_flags, attr_type, Aggregator, AsPath, AttributeError, ErrorAction, PathAttributes,
    PeerType, RawAttribute, SessionContext,
};
use bytes::Bytes;

/// What an attribute decoder found wrong, with the RFC 7606 action it calls for.
#[derive(Debug)]
pub(crate) enum AttrFault {
    /// RFC 7606 §2 "attribute discard": drop the attribute, keep the routes.
    Discard(&'static str),
    /// RFC 7606 §2 "treat-as-withdraw": every prefix of the UPDATE is withdrawn.
    Withdraw(&'static str),
    /// RFC 7606 §2 "session reset": the NOTIFICATION to send.
    Reset(UpdateError),
}

/// What the attribute list decodes into, before RFC 6793 merging.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) attrs: PathAttributes,
    pub(crate) as4_path: Option<AsPath>,
    pub(crate) as4_aggregator: Option<Aggregator>,
    pub(crate) errors: Vec<AttributeError>,
}

/// One attribute as it appeared on the wire.
pub(crate) struct Attr<'a> {
    pub(crate) flags: u8,
    pub(crate) code: u8,
    pub(crate) value: &'a [u8],
    /// The whole attribute (flags, type, length, value): NOTIFICATION data per RFC 4271 §6.3.
    pub(crate) raw: &'a [u8],
}

impl Attr<'_> {
    pub(crate) fn raw_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.raw)
    }
}

/// The Optional and Transitive bits each known attribute must carry (RFC 4271 §5, RFC 4456 §8,
/// RFC 4760 §3-4, RFC 1997, RFC 6793 §3), or None for a type we do not interpret.
fn expected_flags(code: u8) -> Option<u8> {
    use attr_flags::{OPTIONAL as O, TRANSITIVE as T};
    use attr_type::*;
    Some(match code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => T,
        MULTI_EXIT_DISC | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH_NLRI | MP_UNREACH_NLRI => O,
        AGGREGATOR | COMMUNITIES | AS4_PATH | AS4_AGGREGATOR => O | T,
        _ => return None,
    })
}

/// RFC 7606 §3 c: wrong Optional/Transitive bits make the attribute malformed, handled as that
/// attribute's malformations are: discard for ATOMIC_AGGREGATE (§7.6), AGGREGATOR (§7.7) and
/// the AS4_ attributes (RFC 6793 §6), session reset for MP_REACH/MP_UNREACH (RFC 4760 §7, §7.11),
/// treat-as-withdraw for the rest.
fn flags_fault(a: &Attr<'_>) -> AttrFault {
    use attr_type::*;
    const WHY: &str = "Optional/Transitive flags conflict with the attribute type";
    match a.code {
        ATOMIC_AGGREGATE | AGGREGATOR | AS4_PATH | AS4_AGGREGATOR => AttrFault::Discard(WHY),
        MP_REACH_NLRI | MP_UNREACH_NLRI => {
            AttrFault::Reset(UpdateError::AttributeFlagsError(a.raw_bytes()))
        }
        _ => AttrFault::Withdraw(WHY),
    }
}

/// Decodes the Path Attributes field. `field` is its slice of the message; `r` only supplies
/// the message for offsets.
pub(crate) fn decode_list(
    r: &Reader<'_>,
    field: &[u8],
    ctx: &SessionContext,
) -> Result<Decoded, DecodeError> {
    let mut d = Decoded::default();
    let mut seen = [0u64; 4];
    let mut ar = r.sub(field);
    while !ar.is_empty() {
        let at = ar.offset();
        let before = ar.rest();
        let Some(a) = next_attr(&mut ar) else {
            // RFC 7606 §4: an attribute header or length that overruns the Total Path Attribute
            // Length is treat-as-withdraw; the NLRI field is still found from that total.
            let code = before.get(1).copied().unwrap_or(0);
            d.errors.push(AttributeError {
                type_code: code,
                action: ErrorAction::TreatAsWithdraw,
                offset: at,
                reason: "attribute overruns the path attributes field".into(),
            });
            break;
        };
        let fault = decode_one(&a, ctx, &mut d, &mut seen);
        if let Err(fault) = fault {
            let (action, reason) = match fault {
                AttrFault::Discard(why) => (ErrorAction::AttributeDiscard, why),
                AttrFault::Withdraw(why) => (ErrorAction::TreatAsWithdraw, why),
                AttrFault::Reset(error) => return Err(DecodeError::Update { offset: at, error }),
            };
            d.errors.push(AttributeError {
                type_code: a.code,
                action,
                offset: at,
                reason: reason.into(),
            });
        }
    }
    if !ctx.four_octet_as {
        as_path::merge_as4(&mut d);
    }
    Ok(d)
}

/// Splits the next attribute off, or None when its header or value would overrun the field.
fn next_attr<'a>(ar: &mut Reader<'a>) -> Option<Attr<'a>> {
    let start = ar.rest();
    let flags = ar.u8()?;
    let code = ar.u8()?;
    let len = if flags & attr_flags::EXTENDED_LENGTH != 0 {
        ar.u16()? as usize
    } else {
        ar.u8()? as usize
    };
    let value = ar.take(len)?;
    let raw = &start[..start.len() - ar.remaining()];
    Some(Attr {
        flags,
        code,
        value,
        raw,
    })
}

fn decode_one(
    a: &Attr<'_>,
    ctx: &SessionContext,
    d: &mut Decoded,
    seen: &mut [u64; 4],
) -> Result<(), AttrFault> {
    // RFC 7606 §3 g: a repeated MP_REACH_NLRI or MP_UNREACH_NLRI is Malformed Attribute List;
    // any other repeated attribute is discarded after its first occurrence.
    let bit = 1u64 << (a.code % 64);
    let word = &mut seen[(a.code / 64) as usize];
    if *word & bit != 0 {
        if matches!(
            a.code,
            attr_type::MP_REACH_NLRI | attr_type::MP_UNREACH_NLRI
        ) {
            return Err(AttrFault::Reset(UpdateError::MalformedAttributeList(
                "MP_REACH_NLRI or MP_UNREACH_NLRI appears twice",
            )));
        }
        return Err(AttrFault::Discard("attribute appears more than once"));
    }
    *word |= bit;

    let Some(expected) = expected_flags(a.code) else {
        return unknown(a, d);
    };
    if a.flags & (attr_flags::OPTIONAL | attr_flags::TRANSITIVE) != expected {
        return Err(flags_fault(a));
    }
    let ibgp = ctx.peer_type == PeerType::Internal;
    let at = &mut d.attrs;
    match a.code {
        attr_type::ORIGIN => at.origin = Some(values::origin(a.value)?),
        attr_type::AS_PATH => {
            at.as_path = Some(as_path::decode_as_path(a.value, ctx.four_octet_as)?)
        }
        attr_type::NEXT_HOP => at.next_hop = Some(values::next_hop(a.value)?),
        attr_type::MULTI_EXIT_DISC => at.med = Some(values::med(a.value)?),
        attr_type::LOCAL_PREF => at.local_pref = Some(values::local_pref(a.value, ibgp)?),
        attr_type::ATOMIC_AGGREGATE => at.atomic_aggregate = values::atomic_aggregate(a.value)?,
        attr_type::AGGREGATOR => {
            at.aggregator = Some(as_path::aggregator(a.value, ctx.four_octet_as)?)
        }
        attr_type::COMMUNITIES => at.communities = values::communities(a.value)?,
        attr_type::ORIGINATOR_ID => at.originator_id = Some(values::originator_id(a.value, ibgp)?),
        attr_type::CLUSTER_LIST => at.cluster_list = values::cluster_list(a.value, ibgp)?,
        attr_type::MP_REACH_NLRI => at.mp_reach = Some(mp::reach(a)?),
        attr_type::MP_UNREACH_NLRI => at.mp_unreach = Some(mp::unreach(a)?),
        attr_type::AS4_PATH => {
            d.as4_path = Some(as_path::decode_as4_path(a.value, ctx.four_octet_as)?)
        }
        attr_type::AS4_AGGREGATOR => {
            d.as4_aggregator = Some(as_path::as4_aggregator(a.value, ctx.four_octet_as)?)
        }
        _ => return unknown(a, d),
    }
    Ok(())
}

/// An attribute type we do not interpret (RFC 4271 §5 and §9).
fn unknown(a: &Attr<'_>, d: &mut Decoded) -> Result<(), AttrFault> {
    // §6.3: an unrecognised well-known attribute resets the session; data is the attribute.
    if a.flags & attr_flags::OPTIONAL == 0 {
        return Err(AttrFault::Reset(
            UpdateError::UnrecognizedWellKnownAttribute(a.raw_bytes()),
        ));
    }
    // §9: "If an optional non-transitive attribute is unrecognized, it is quietly ignored."
    if a.flags & attr_flags::TRANSITIVE == 0 {
        return Ok(());
    }
    // §9: an unrecognised optional transitive attribute is passed on with the Partial bit set.
    // The Extended Length bit is the encoder's choice, so it is not kept.
    d.attrs.unknown.push(RawAttribute {
        flags: (a.flags | attr_flags::PARTIAL) & !attr_flags::EXTENDED_LENGTH & 0xf0,
        type_code: a.code,
        value: Bytes::copy_from_slice(a.value),
    });
    Ok(())
}
