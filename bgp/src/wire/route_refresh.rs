//! ROUTE-REFRESH message, RFC 2918 §3 (wire diagram on [`RouteRefresh`]), and the RFC 7313
//! subtypes (Enhanced Route Refresh BoRR / EoRR) kept in `subtype`.

use super::error::{DecodeError, RouteRefreshError};
use super::types::{Afi, RouteRefresh, Safi, HEADER_LEN};
use bytes::{BufMut, Bytes, BytesMut};

pub(crate) fn decode(msg: &[u8]) -> Result<RouteRefresh, DecodeError> {
    // RFC 7313 §5: a body that is not exactly 4 octets is "Invalid Message Length", and "the
    // Data field of the NOTIFICATION message MUST contain the complete ROUTE-REFRESH message".
    let [a0, a1, subtype, safi] = msg.get(HEADER_LEN..).unwrap_or(&[]) else {
        return Err(DecodeError::RouteRefresh {
            offset: HEADER_LEN,
            error: RouteRefreshError::InvalidMessageLength(Bytes::copy_from_slice(msg)),
        });
    };
    Ok(RouteRefresh {
        afi: Afi(u16::from_be_bytes([*a0, *a1])),
        subtype: *subtype,
        safi: Safi(*safi),
    })
}

pub(crate) fn encode(rr: &RouteRefresh, out: &mut BytesMut) {
    out.put_u16(rr.afi.0);
    out.put_u8(rr.subtype);
    out.put_u8(rr.safi.0);
}
