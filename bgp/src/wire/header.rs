//! Message header and framing, RFC 4271 §4.1.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                           Marker                              |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::error::{DecodeError, EncodeError, HeaderError};
use super::types::{MessageType, SessionContext, HEADER_LEN, MARKER};
use bytes::{BufMut, BytesMut};

/// Smallest legal length of each message type: §4.2 OPEN 29, §4.3 UPDATE 23, §4.5
/// NOTIFICATION 21, §4.4 KEEPALIVE exactly 19, RFC 2918 §3 ROUTE-REFRESH 23.
fn min_len(t: MessageType) -> usize {
    match t {
        MessageType::Open => 29,
        MessageType::Update => 23,
        MessageType::Notification => 21,
        MessageType::Keepalive => HEADER_LEN,
        MessageType::RouteRefresh => 23,
    }
}

fn header_error(offset: usize, error: HeaderError) -> DecodeError {
    DecodeError::Header { offset, error }
}

/// Framing: `None` while fewer than 19 bytes are buffered; otherwise checks the header as
/// RFC 4271 §6.1 says (marker all ones, length 19..=max and at least the type's minimum,
/// KEEPALIVE exactly 19, known type) and returns the full message length, which may be more
/// than is buffered yet.
pub fn frame_length(buf: &[u8], ctx: &SessionContext) -> Result<Option<usize>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16] != MARKER {
        return Err(header_error(0, HeaderError::ConnectionNotSynchronized));
    }
    let len_field = u16::from_be_bytes([buf[16], buf[17]]);
    let len = len_field as usize;
    let bad_len = || header_error(16, HeaderError::BadMessageLength(len_field));
    if len < HEADER_LEN || len > ctx.max_message_len() {
        return Err(bad_len());
    }
    let Some(t) = MessageType::from_u8(buf[18]) else {
        return Err(header_error(18, HeaderError::BadMessageType(buf[18])));
    };
    // §6.1: a length below the type's minimum (or a KEEPALIVE that is not exactly 19) is a Bad
    // Message Length. RFC 8654 §4 keeps OPEN and KEEPALIVE to 4096 even with Extended Message.
    if len < min_len(t)
        || (t == MessageType::Keepalive && len != HEADER_LEN)
        || (t == MessageType::Open && len > super::types::MAX_MESSAGE_LEN)
    {
        return Err(bad_len());
    }
    Ok(Some(len))
}

/// Checks the header of `buf`, which must be exactly one message, and returns its type.
pub(crate) fn check_whole(buf: &[u8], ctx: &SessionContext) -> Result<MessageType, DecodeError> {
    match frame_length(buf, ctx)? {
        Some(len) if len == buf.len() => {}
        Some(len) => {
            return Err(header_error(16, HeaderError::BadMessageLength(len as u16)));
        }
        None => {
            let len = u16::try_from(buf.len()).unwrap_or(u16::MAX);
            return Err(header_error(buf.len(), HeaderError::BadMessageLength(len)));
        }
    }
    // frame_length accepted the type byte.
    MessageType::from_u8(buf[18]).ok_or(header_error(18, HeaderError::BadMessageType(buf[18])))
}

/// Writes a header with a zero length and returns where the message starts; [`finish`] fills
/// the length in once the body is written.
pub(crate) fn begin(out: &mut BytesMut, t: MessageType) -> usize {
    let start = out.len();
    out.put_slice(&MARKER);
    out.put_u16(0);
    out.put_u8(t as u8);
    start
}

/// Back-patches the length of the message that starts at `start`, or removes it and fails
/// when it is longer than the session allows.
pub(crate) fn finish(out: &mut BytesMut, start: usize, max: usize) -> Result<(), EncodeError> {
    let len = out.len() - start;
    if len > max {
        out.truncate(start);
        return Err(EncodeError::MessageTooLong { len, max });
    }
    out[start + 16..start + 18].copy_from_slice(&(len as u16).to_be_bytes());
    Ok(())
}
