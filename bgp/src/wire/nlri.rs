//! Prefix lists: the Withdrawn Routes and NLRI fields of UPDATE (RFC 4271 §4.3) and the prefixes
//! inside MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760 §5).
//!
//! ```text
//! +---------------------------+
//! |   Length (1 octet)        |
//! +---------------------------+
//! |   Prefix (variable)       |
//! +---------------------------+
//! ```
//!
//! This is the hot path of a full-table load, so IPv4 decoding is a plain loop over the bytes:
//! one pass checks and counts, so the vector is allocated once at its exact size (bounded by the
//! input length), and the second pass builds the prefixes with no per-prefix allocation.

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a prefix list is syntactically wrong (RFC 7606 §5.3), with the offset inside the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NlriError {
    pub(crate) offset: usize,
    pub(crate) reason: &'static str,
}

/// Walks the list once: checks every length (<= `max_bits`, prefix inside the list) and counts.
fn count(buf: &[u8], max_bits: u8) -> Result<usize, NlriError> {
    let mut i = 0;
    let mut n = 0;
    while i < buf.len() {
        let bits = buf[i];
        if bits > max_bits {
            return Err(NlriError {
                offset: i,
                reason: "prefix length too long",
            });
        }
        i += 1 + (bits as usize).div_ceil(8);
        n += 1;
    }
    if i != buf.len() {
        return Err(NlriError {
            offset: buf.len(),
            reason: "prefix overruns the field",
        });
    }
    Ok(n)
}

/// Decodes an IPv4 prefix list. Bits past the prefix length are cleared: RFC 4271 §4.3 says
/// "the value of trailing bits is irrelevant".
pub(crate) fn decode_v4(buf: &[u8]) -> Result<Vec<Ipv4Net>, NlriError> {
    let n = count(buf, 32)?;
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < buf.len() {
        let bits = buf[i];
        let nbytes = (bits as usize).div_ceil(8);
        let mut a = [0u8; 4];
        a[..nbytes].copy_from_slice(&buf[i + 1..i + 1 + nbytes]);
        let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
        let addr = Ipv4Addr::from(u32::from_be_bytes(a) & mask);
        // `count` checked bits <= 32, so this never takes the error branch.
        if let Ok(net) = Ipv4Net::new(addr, bits) {
            out.push(net);
        }
        i += 1 + nbytes;
    }
    Ok(out)
}

/// Decodes an IPv6 prefix list (MP_REACH / MP_UNREACH with AFI 2).
pub(crate) fn decode_v6(buf: &[u8]) -> Result<Vec<IpNet>, NlriError> {
    let n = count(buf, 128)?;
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < buf.len() {
        let bits = buf[i];
        let nbytes = (bits as usize).div_ceil(8);
        let mut a = [0u8; 16];
        a[..nbytes].copy_from_slice(&buf[i + 1..i + 1 + nbytes]);
        let mask = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
        let addr = Ipv6Addr::from(u128::from_be_bytes(a) & mask);
        if let Ok(net) = Ipv6Net::new(addr, bits) {
            out.push(IpNet::V6(net));
        }
        i += 1 + nbytes;
    }
    Ok(out)
}

/// Wire size of one IPv4 prefix.
pub(crate) fn v4_len(net: &Ipv4Net) -> usize {
    1 + (net.prefix_len() as usize).div_ceil(8)
}

/// Appends one IPv4 prefix with only its significant octets.
pub(crate) fn encode_v4(net: &Ipv4Net, out: &mut BytesMut) {
    let bits = net.prefix_len();
    let nbytes = (bits as usize).div_ceil(8);
    let octets = net.network().octets();
    out.put_u8(bits);
    out.put_slice(&octets[..nbytes]);
}

pub(crate) fn encode_v6(net: &Ipv6Net, out: &mut BytesMut) {
    let bits = net.prefix_len();
    let nbytes = (bits as usize).div_ceil(8);
    let octets = net.network().octets();
    out.put_u8(bits);
    out.put_slice(&octets[..nbytes]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_masks_trailing_bits() {
        let got = decode_v4(&[24, 10, 1, 2, 26, 192, 168, 0, 0xff, 0, 32, 1, 2, 3, 4]).unwrap();
        let want: Vec<Ipv4Net> = ["10.1.2.0/24", "192.168.0.192/26", "0.0.0.0/0", "1.2.3.4/32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn rejects_long_prefix_and_overrun() {
        assert_eq!(
            decode_v4(&[33, 1, 2, 3, 4, 5]).unwrap_err().reason,
            "prefix length too long"
        );
        assert_eq!(
            decode_v4(&[24, 10, 1]).unwrap_err().reason,
            "prefix overruns the field"
        );
        assert!(decode_v6(&[129]).is_err());
    }
}
