//! UPDATE message, RFC 4271 §4.3 (wire diagram on [`Update`]), with RFC 7606 error handling.

use super::attribute;
use super::error::{DecodeError, EncodeError, UpdateError};
use super::nlri;
use super::reader::Reader;
use super::types::{
    attr_type, AttributeError, ErrorAction, PeerType, SessionContext, Update, HEADER_LEN,
};
use bytes::{BufMut, BytesMut};

fn err(offset: usize, error: UpdateError) -> DecodeError {
    DecodeError::Update { offset, error }
}

/// Decodes the UPDATE body; `msg` is the whole message, its header already checked.
pub(crate) fn decode(msg: &[u8], ctx: &SessionContext) -> Result<Update, DecodeError> {
    let mut r = Reader::new(msg);
    r.take(HEADER_LEN);
    // §6.3: "If the Withdrawn Routes Length or Total Attribute Length is too large (i.e., if
    // Withdrawn Routes Length + Total Attribute Length + 23 exceeds the message Length), then
    // the Error Subcode MUST be set to Malformed Attribute List." RFC 7606 §4 keeps this a
    // session reset: the NLRI field cannot be located.
    let too_large = |at| {
        err(
            at,
            UpdateError::MalformedAttributeList("length fields overrun the message"),
        )
    };
    let withdrawn_len = r.u16().ok_or(too_large(19))? as usize;
    let withdrawn_field = r.take(withdrawn_len).ok_or(too_large(19))?;
    let attrs_at = r.offset();
    let attrs_len = r.u16().ok_or(too_large(attrs_at))? as usize;
    let attrs_field = r.take(attrs_len).ok_or(too_large(attrs_at))?;
    let nlri_at = r.offset();
    let nlri_field = r.take_rest();

    // RFC 7606 §3 i and §5.3: Withdrawn Routes and NLRI are checked alike, and a syntax error
    // in either resets the session (Invalid Network Field).
    let withdrawn = nlri::decode_v4(withdrawn_field).map_err(|e| {
        err(
            21 + e.offset.min(withdrawn_len),
            UpdateError::InvalidNetworkField(e.reason),
        )
    })?;
    let nlri = nlri::decode_v4(nlri_field).map_err(|e| {
        err(
            nlri_at + e.offset,
            UpdateError::InvalidNetworkField(e.reason),
        )
    })?;

    let decoded = attribute::decode_list(&r, attrs_field, ctx)?;
    let attributes = decoded.attrs;
    let mut attribute_errors = decoded.errors;

    // RFC 7606 §3 d: missing well-known mandatory attributes are treat-as-withdraw. They are
    // required only when the UPDATE carries reachability: NEXT_HOP only for the NLRI field
    // (RFC 4760 §3 makes it optional with MP_REACH_NLRI alone), LOCAL_PREF only from internal
    // peers (RFC 4271 §5.1.5).
    if !nlri.is_empty() || attributes.mp_reach.is_some() {
        let mut missing = Vec::with_capacity(4);
        if attributes.origin.is_none() {
            missing.push(attr_type::ORIGIN);
        }
        if attributes.as_path.is_none() {
            missing.push(attr_type::AS_PATH);
        }
        if attributes.next_hop.is_none() && !nlri.is_empty() {
            missing.push(attr_type::NEXT_HOP);
        }
        if attributes.local_pref.is_none() && ctx.peer_type == PeerType::Internal {
            missing.push(attr_type::LOCAL_PREF);
        }
        for code in missing {
            // A malformed attribute already recorded is not reported a second time as missing.
            if attribute_errors.iter().any(|e| e.type_code == code) {
                continue;
            }
            attribute_errors.push(AttributeError {
                type_code: code,
                action: ErrorAction::TreatAsWithdraw,
                offset: attrs_at,
                reason: "missing well-known attribute".into(),
            });
        }
    }
    Ok(Update {
        withdrawn,
        attributes,
        nlri,
        attribute_errors,
    })
}

/// Appends the UPDATE body.
pub(crate) fn encode(
    u: &Update,
    ctx: &SessionContext,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let withdrawn_len: usize = u.withdrawn.iter().map(nlri::v4_len).sum();
    let withdrawn_len = u16::try_from(withdrawn_len).map_err(|_| EncodeError::FieldTooLong {
        what: "withdrawn routes",
        len: withdrawn_len,
    })?;
    out.put_u16(withdrawn_len);
    u.withdrawn.iter().for_each(|n| nlri::encode_v4(n, out));
    let attrs_at = out.len();
    out.put_u16(0);
    attribute::encode(&u.attributes, ctx, out)?;
    let attrs_len = out.len() - attrs_at - 2;
    let attrs_len16 = u16::try_from(attrs_len).map_err(|_| EncodeError::FieldTooLong {
        what: "path attributes",
        len: attrs_len,
    })?;
    out[attrs_at..attrs_at + 2].copy_from_slice(&attrs_len16.to_be_bytes());
    u.nlri.iter().for_each(|n| nlri::encode_v4(n, out));
    Ok(())
}
