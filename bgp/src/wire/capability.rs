//! Capabilities optional parameter, RFC 5492 §4: a list of (code, length, value) triples.
//!
//! ```text
//! +------------------------------+
//! | Capability Code (1 octet)    |
//! +------------------------------+
//! | Capability Length (1 octet)  |
//! +------------------------------+
//! | Capability Value (variable)  |
//! ~                              ~
//! +------------------------------+
//! ```

use super::error::{EncodeError, OpenError};
use super::reader::Reader;
use super::types::{Afi, Capability, GracefulRestart, GracefulRestartFamily, Safi};
use bytes::{BufMut, Bytes, BytesMut};

/// RFC 4724 §3 Restart Flags (top 4 bits of the first 16): R = restarted, N = RFC 8538.
const GR_RESTART_STATE: u16 = 0x8000;
const GR_NOTIFICATION: u16 = 0x4000;
const GR_TIME_MASK: u16 = 0x0fff;
/// RFC 4724 §3 Flags for Address Family: F = forwarding state preserved.
const GR_FORWARDING: u8 = 0x80;

/// Decodes the capabilities in one Capabilities parameter value and appends them to `caps`.
/// Errors carry the offset of the capability that failed.
pub(crate) fn decode_all(
    r: &mut Reader<'_>,
    caps: &mut Vec<Capability>,
) -> Result<(), (usize, OpenError)> {
    while !r.is_empty() {
        let at = r.offset();
        let malformed = |why| (at, OpenError::Malformed(why));
        let code = r.u8().ok_or(malformed("truncated capability header"))?;
        let len = r.u8().ok_or(malformed("truncated capability header"))?;
        let value = r
            .take(len as usize)
            .ok_or(malformed("capability overruns parameter"))?;
        caps.push(decode_one(code, value).map_err(|e| (at, e))?);
    }
    Ok(())
}

fn decode_one(code: u8, value: &[u8]) -> Result<Capability, OpenError> {
    let mut r = Reader::new(value);
    let cap = match code {
        // RFC 4760 §8: AFI (2), Reserved (1), SAFI (1).
        Capability::MULTIPROTOCOL => {
            if value.len() != 4 {
                return Err(OpenError::Malformed(
                    "multiprotocol capability length is not 4",
                ));
            }
            Capability::Multiprotocol {
                afi: Afi(u16::from_be_bytes([value[0], value[1]])),
                safi: Safi(value[3]),
            }
        }
        // RFC 2918 §2 and RFC 8654 §3: no value.
        Capability::ROUTE_REFRESH if value.is_empty() => Capability::RouteRefresh,
        Capability::ROUTE_REFRESH => {
            return Err(OpenError::Malformed("route refresh capability has a value"))
        }
        Capability::EXTENDED_MESSAGE if value.is_empty() => Capability::ExtendedMessage,
        Capability::EXTENDED_MESSAGE => {
            return Err(OpenError::Malformed(
                "extended message capability has a value",
            ))
        }
        // RFC 4724 §3: 2 octets of flags and time, then 4 octets per address family.
        Capability::GRACEFUL_RESTART => {
            let head = r.u16().ok_or(OpenError::Malformed(
                "graceful restart capability too short",
            ))?;
            if !r.remaining().is_multiple_of(4) {
                return Err(OpenError::Malformed("graceful restart capability length"));
            }
            let mut families = Vec::with_capacity(r.remaining() / 4);
            while let (Some(afi), Some(safi), Some(flags)) = (r.u16(), r.u8(), r.u8()) {
                families.push(GracefulRestartFamily {
                    afi: Afi(afi),
                    safi: Safi(safi),
                    forwarding_preserved: flags & GR_FORWARDING != 0,
                });
            }
            Capability::GracefulRestart(GracefulRestart {
                restart_state: head & GR_RESTART_STATE != 0,
                notification: head & GR_NOTIFICATION != 0,
                restart_time: head & GR_TIME_MASK,
                families,
            })
        }
        // RFC 6793 §3: the 4-octet AS number.
        Capability::FOUR_OCTET_AS => {
            if value.len() != 4 {
                return Err(OpenError::Malformed(
                    "4-octet AS capability length is not 4",
                ));
            }
            let asn = r.u32().unwrap_or(0);
            // RFC 7607 §2: AS 0 as the peer AS is a Bad Peer AS.
            if asn == 0 {
                return Err(OpenError::BadPeerAs(0));
            }
            Capability::FourOctetAs(asn)
        }
        // RFC 5492 §4: unknown capabilities are kept (and ignored by negotiation).
        _ => Capability::Unknown {
            code,
            value: Bytes::copy_from_slice(value),
        },
    };
    Ok(cap)
}

/// Appends one capability as (code, length, value).
pub(crate) fn encode(cap: &Capability, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u8(cap.code());
    let len_at = out.len();
    out.put_u8(0);
    match cap {
        Capability::Multiprotocol { afi, safi } => {
            out.put_u16(afi.0);
            out.put_u8(0);
            out.put_u8(safi.0);
        }
        Capability::RouteRefresh | Capability::ExtendedMessage => {}
        Capability::GracefulRestart(gr) => {
            let mut head = gr.restart_time & GR_TIME_MASK;
            if gr.restart_state {
                head |= GR_RESTART_STATE;
            }
            if gr.notification {
                head |= GR_NOTIFICATION;
            }
            out.put_u16(head);
            for f in &gr.families {
                out.put_u16(f.afi.0);
                out.put_u8(f.safi.0);
                out.put_u8(if f.forwarding_preserved {
                    GR_FORWARDING
                } else {
                    0
                });
            }
        }
        Capability::FourOctetAs(asn) => out.put_u32(*asn),
        Capability::Unknown { value, .. } => out.put_slice(value),
    }
    let len = out.len() - len_at - 1;
    out[len_at] = u8::try_from(len).map_err(|_| EncodeError::FieldTooLong {
        what: "capability value",
        len,
    })?;
    Ok(())
}
