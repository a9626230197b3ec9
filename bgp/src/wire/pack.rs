//! Packing many prefixes that share one attribute set into few UPDATE messages.

use super::attribute;
use super::error::EncodeError;
use super::header;
use super::nlri;
use super::types::{MessageType, PathAttributes, SessionContext};
use bytes::{BufMut, Bytes, BytesMut};
use ipnet::Ipv4Net;

/// Header (19) plus the Withdrawn Routes Length and Total Path Attribute Length fields (2 + 2).
const UPDATE_OVERHEAD: usize = 23;
/// The largest IPv4 prefix on the wire: a length octet and 4 address octets.
const MAX_PREFIX_LEN: usize = 5;

/// Packs IPv4 withdrawals and NLRI sharing one attribute set into as few UPDATEs as possible,
/// each <= `ctx.max_message_len()`. Withdrawals go first; the message where they end also
/// starts the announcements when there is room. Withdrawn-only messages carry no attributes
/// (RFC 4271 §4.3 allows an empty attribute list when there is no NLRI). The attributes are
/// encoded once and copied into each message.
pub fn encode_updates(
    withdrawn: &[Ipv4Net],
    attrs: &PathAttributes,
    nlri: &[Ipv4Net],
    ctx: &SessionContext,
) -> Result<Vec<Bytes>, EncodeError> {
    let max = ctx.max_message_len();
    let mut attr_buf = BytesMut::new();
    if !nlri.is_empty() {
        attribute::encode(attrs, ctx, &mut attr_buf)?;
        if UPDATE_OVERHEAD + attr_buf.len() + MAX_PREFIX_LEN > max {
            return Err(EncodeError::AttributesTooLong {
                len: attr_buf.len(),
                max,
            });
        }
    }
    let mut left: usize = withdrawn.iter().chain(nlri).map(nlri::v4_len).sum();
    let count = left / (max - UPDATE_OVERHEAD - attr_buf.len()).max(1) + 2;
    // Sized to what the messages take, not to a maximum-size message each: every message is a
    // slice of this one allocation and keeps all of it alive until the last is written, and a
    // mesh sends one small UPDATE to each of hundreds of peers.
    let mut buf =
        BytesMut::with_capacity((left + count * (UPDATE_OVERHEAD + attr_buf.len())).min(16 * max));
    let mut msgs = Vec::with_capacity(count);
    let (mut w, mut n) = (withdrawn, nlri);
    while !w.is_empty() || !n.is_empty() {
        buf.reserve(max.min(UPDATE_OVERHEAD + attr_buf.len() + left));
        let start = header::begin(&mut buf, MessageType::Update);
        let mut room = max - UPDATE_OVERHEAD;

        let wlen_at = buf.len();
        buf.put_u16(0);
        let before = room;
        let taken = fill(&mut buf, w, &mut room);
        left -= before - room;
        w = &w[taken..];
        let wlen = (buf.len() - wlen_at - 2) as u16;
        buf[wlen_at..wlen_at + 2].copy_from_slice(&wlen.to_be_bytes());

        match n.first() {
            Some(first) if w.is_empty() && room >= attr_buf.len() + nlri::v4_len(first) => {
                buf.put_u16(attr_buf.len() as u16);
                buf.put_slice(&attr_buf);
                room -= attr_buf.len();
                let before = room;
                let taken = fill(&mut buf, n, &mut room);
                left -= before - room;
                n = &n[taken..];
            }
            _ => buf.put_u16(0),
        }
        header::finish(&mut buf, start, max)?;
        msgs.push(buf.split().freeze());
    }
    Ok(msgs)
}

/// Appends prefixes from the front of `nets` while they fit in `room`; returns how many.
fn fill(out: &mut BytesMut, nets: &[Ipv4Net], room: &mut usize) -> usize {
    let mut taken = 0;
    for net in nets {
        let len = nlri::v4_len(net);
        if len > *room {
            break;
        }
        nlri::encode_v4(net, out);
        *room -= len;
        taken += 1;
    }
    taken
}
