//! BGP-4 wire codec. One file per message family; [`types`] holds the message model.
//!
//! - [`frame_length`] finds message boundaries in a byte stream (RFC 4271 §4.1, §6.1);
//! - [`decode_message`] / [`encode_message`] turn one whole message into a [`Message`] and back,
//!   in the form the [`SessionContext`] (4-octet AS, Extended Message, iBGP/eBGP) asks for;
//! - [`encode_updates`] packs many prefixes sharing one attribute set into few UPDATEs.
//!
//! Errors are typed: [`DecodeError`] wraps one enum per message family, records the byte offset
//! where decoding failed and maps to the NOTIFICATION to send. UPDATE attribute errors that
//! RFC 7606 lets a session survive are returned inside the [`Update`] instead.

mod attribute;
mod capability;
mod error;
mod header;
mod nlri;
mod notification;
mod open;
mod pack;
mod reader;
mod route_refresh;
// `Message::Update` is much larger than the other variants; boxing it would cost an allocation
// for the most frequent message, so the size difference is accepted.
#[allow(clippy::large_enum_variant)]
mod types;
mod update;

pub use error::{DecodeError, EncodeError, HeaderError, OpenError, RouteRefreshError, UpdateError};
pub use header::frame_length;
pub use notification::shutdown_communication;
pub use pack::encode_updates;
pub use types::*;

use bytes::BytesMut;

/// Decodes exactly one whole message (header included). RFC 7606 survivable attribute errors
/// are recorded in `Update::attribute_errors`; errors that reset the session are `Err`.
pub fn decode_message(buf: &[u8], ctx: &SessionContext) -> Result<Message, DecodeError> {
    Ok(match header::check_whole(buf, ctx)? {
        MessageType::Open => Message::Open(open::decode(buf)?),
        MessageType::Update => Message::Update(update::decode(buf, ctx)?),
        MessageType::Notification => Message::Notification(notification::decode(buf)),
        MessageType::Keepalive => Message::Keepalive,
        MessageType::RouteRefresh => Message::RouteRefresh(route_refresh::decode(buf)?),
    })
}

/// Appends one message to `out`. On error `out` is left as it was.
pub fn encode_message(
    msg: &Message,
    ctx: &SessionContext,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = header::begin(out, msg.message_type());
    // RFC 8654 §4: OPEN and KEEPALIVE stay within 4096 octets whatever was negotiated.
    let mut max = ctx.max_message_len();
    let body = match msg {
        Message::Open(o) => {
            max = MAX_MESSAGE_LEN;
            open::encode(o, out)
        }
        Message::Update(u) => update::encode(u, ctx, out),
        Message::Notification(n) => {
            notification::encode(n, out);
            Ok(())
        }
        Message::Keepalive => Ok(()),
        Message::RouteRefresh(r) => {
            route_refresh::encode(r, out);
            Ok(())
        }
    };
    if let Err(e) = body {
        out.truncate(start);
        return Err(e);
    }
    header::finish(out, start, max)
}
