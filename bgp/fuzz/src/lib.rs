//! Helpers shared by the fuzz targets.

use bgp::wire::*;
use bytes::BytesMut;

/// A session context from the low bits of one byte, so every target covers all of them.
pub fn ctx(b: u8) -> SessionContext {
    SessionContext {
        four_octet_as: b & 1 != 0,
        extended_message: b & 2 != 0,
        peer_type: if b & 4 != 0 { PeerType::External } else { PeerType::Internal },
    }
}

/// A whole message of type `t` around `body`, or None when it cannot have a length field.
pub fn message(t: u8, body: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(19 + body.len()).ok()?;
    let mut m = Vec::with_capacity(len as usize);
    m.extend_from_slice(&MARKER);
    m.extend_from_slice(&len.to_be_bytes());
    m.push(t);
    m.extend_from_slice(body);
    Some(m)
}

/// Decodes `msg`; when it decodes cleanly, re-encodes it and checks it decodes to the same.
pub fn check(msg: &[u8], c: &SessionContext) {
    let Ok(m) = decode_message(msg, c) else { return };
    if let Message::Update(u) = &m {
        // Survived errors and the RFC 6793 aggregator rule make the re-encoded form differ on
        // purpose; only clean messages must round-trip.
        if !u.attribute_errors.is_empty() || (!c.four_octet_as && u.attributes.aggregator.is_some()) {
            return;
        }
    }
    let mut out = BytesMut::new();
    match encode_message(&m, c, &mut out) {
        Ok(()) => {}
        // AS4_PATH regeneration can make a 2-octet UPDATE longer than it arrived.
        Err(EncodeError::MessageTooLong { .. }) => return,
        Err(e) => panic!("decoded message does not encode: {e}: {m:?}"),
    }
    let again = decode_message(&out, c).expect("re-encoded message decodes");
    assert_eq!(again, m);
}
