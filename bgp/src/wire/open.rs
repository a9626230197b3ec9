//! OPEN message, RFC 4271 §4.2 (wire diagram on [`Open`]), with the RFC 9072 extended
//! optional parameters length accepted on decode.

use super::capability;
use super::error::{DecodeError, EncodeError, OpenError};
use super::reader::Reader;
use super::types::{Open, HEADER_LEN};
use bytes::{BufMut, Bytes, BytesMut};
use std::net::Ipv4Addr;

/// RFC 5492 §4: optional parameter type of the Capabilities parameter.
const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072 §2: Non-Ext OP Type that flags the extended encoding.
const PARAM_EXTENDED_LENGTH: u8 = 255;

fn err(offset: usize, error: OpenError) -> DecodeError {
    DecodeError::Open { offset, error }
}

/// Decodes the OPEN body; `msg` is the whole message, its header already checked.
pub(crate) fn decode(msg: &[u8]) -> Result<Open, DecodeError> {
    let mut r = Reader::new(msg);
    r.take(HEADER_LEN);
    let len_field = msg.len() as u16;
    let mismatch = |at| err(at, OpenError::LengthMismatch(len_field));
    // The header check guaranteed the 10 fixed octets (length >= 29).
    let version = r.u8().ok_or(mismatch(19))?;
    // §6.2: data is "a 2-octet unsigned integer, which indicates the largest, locally-supported
    // version number less than the version the remote BGP peer bid"; ours is 4.
    if version != 4 {
        return Err(err(19, OpenError::UnsupportedVersion(version)));
    }
    let my_as = r.u16().ok_or(mismatch(20))?;
    // RFC 7607 §2: AS 0 in an OPEN is a Bad Peer AS.
    if my_as == 0 {
        return Err(err(20, OpenError::BadPeerAs(0)));
    }
    let hold_time = r.u16().ok_or(mismatch(22))?;
    // §6.2: "An implementation MUST reject Hold Time values of one or two seconds."
    if hold_time == 1 || hold_time == 2 {
        return Err(err(22, OpenError::UnacceptableHoldTime(hold_time)));
    }
    let bgp_id = r.ipv4().ok_or(mismatch(24))?;
    // RFC 6286 §2.2: the identifier is any non-zero 4-octet value.
    if bgp_id == Ipv4Addr::UNSPECIFIED {
        return Err(err(24, OpenError::BadBgpIdentifier(bgp_id)));
    }
    let opt_len = r.u8().ok_or(mismatch(28))? as usize;
    // RFC 9072 §2: Opt Parm Len 255 followed by type 255 announces a 2-octet length, and every
    // parameter then has a 2-octet length too.
    let extended = opt_len == 255 && r.rest().first() == Some(&PARAM_EXTENDED_LENGTH);
    let params_len = if extended {
        r.u8();
        r.u16().ok_or(mismatch(30))? as usize
    } else {
        opt_len
    };
    if r.remaining() != params_len {
        return Err(mismatch(28));
    }
    let mut capabilities = Vec::new();
    while !r.is_empty() {
        let at = r.offset();
        let truncated = err(at, OpenError::Malformed("truncated optional parameter"));
        let ptype = r.u8().ok_or(truncated.clone())?;
        let plen = if extended {
            r.u16()
        } else {
            r.u8().map(u16::from)
        };
        let plen = plen.ok_or(truncated.clone())? as usize;
        let value = r.take(plen).ok_or(truncated)?;
        if ptype != PARAM_CAPABILITIES {
            // §6.2: an optional parameter we do not recognise.
            return Err(err(at, OpenError::UnsupportedOptionalParameter(ptype)));
        }
        let mut cr = r.sub(value);
        capability::decode_all(&mut cr, &mut capabilities).map_err(|(o, e)| err(o, e))?;
    }
    Ok(Open {
        version,
        my_as,
        hold_time,
        bgp_id,
        capabilities,
        other_params: Vec::new(),
    })
}

/// Appends the OPEN body. All capabilities go into one Capabilities parameter (RFC 5492 §4
/// allows several per parameter); the RFC 9072 form is used only when the parameters do not fit
/// in 255 octets.
pub(crate) fn encode(open: &Open, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u8(open.version);
    out.put_u16(open.my_as);
    out.put_u16(open.hold_time);
    out.put_u32(u32::from(open.bgp_id));

    let mut caps = BytesMut::new();
    for c in &open.capabilities {
        capability::encode(c, &mut caps)?;
    }
    let mut params: Vec<(u8, Bytes)> = Vec::with_capacity(1 + open.other_params.len());
    if !open.capabilities.is_empty() {
        params.push((PARAM_CAPABILITIES, caps.freeze()));
    }
    params.extend(open.other_params.iter().cloned());

    let short_len: usize = params.iter().map(|(_, v)| 2 + v.len()).sum();
    let extended = short_len > 255 || params.iter().any(|(_, v)| v.len() > 255);
    if !extended {
        out.put_u8(short_len as u8);
        for (t, v) in &params {
            out.put_u8(*t);
            out.put_u8(v.len() as u8);
            out.put_slice(v);
        }
        return Ok(());
    }
    let long_len: usize = params.iter().map(|(_, v)| 3 + v.len()).sum();
    let total = u16::try_from(long_len).map_err(|_| EncodeError::FieldTooLong {
        what: "optional parameters",
        len: long_len,
    })?;
    out.put_u8(255);
    out.put_u8(PARAM_EXTENDED_LENGTH);
    out.put_u16(total);
    for (t, v) in &params {
        out.put_u8(*t);
        out.put_u16(v.len() as u16);
        out.put_slice(v);
    }
    Ok(())
}
