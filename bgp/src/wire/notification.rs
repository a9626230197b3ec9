//! NOTIFICATION message, RFC 4271 §4.5 (wire diagram on [`Notification`]).
//!
//! Any code and subcode decode: RFC 4271 §6.1-6.7, RFC 4486 Cease subcodes and the RFC 8203
//! shutdown communication (Cease subcodes 2 and 4) all arrive as code, subcode and raw data.
//! Nothing in a NOTIFICATION is answered with another NOTIFICATION (§6), so decoding cannot
//! fail past the header check (length >= 21).

use super::types::{Notification, HEADER_LEN};
use bytes::{BufMut, Bytes, BytesMut};

pub(crate) fn decode(msg: &[u8]) -> Notification {
    let body = msg.get(HEADER_LEN..).unwrap_or(&[]);
    match body {
        [code, subcode, data @ ..] => {
            Notification::new(*code, *subcode, Bytes::copy_from_slice(data))
        }
        // The header check makes this unreachable; an empty NOTIFICATION reads as code 0.
        _ => Notification::new(0, 0, Bytes::new()),
    }
}

pub(crate) fn encode(n: &Notification, out: &mut BytesMut) {
    out.put_u8(n.code);
    out.put_u8(n.subcode);
    out.put_slice(&n.data);
}

/// RFC 8203 §2 (as updated by RFC 9003): the shutdown communication carried by Cease /
/// Administrative Shutdown or Administrative Reset, if the data holds one.
pub fn shutdown_communication(n: &Notification) -> Option<&str> {
    use super::types::error_code::{cease, CEASE};
    if n.code != CEASE
        || !matches!(
            n.subcode,
            cease::ADMINISTRATIVE_SHUTDOWN | cease::ADMINISTRATIVE_RESET
        )
    {
        return None;
    }
    let (&len, rest) = n.data.split_first()?;
    std::str::from_utf8(rest.get(..len as usize)?).ok()
}
