//! Codec errors. Decoding failures are one enum per message family, wrapped in [`DecodeError`]
//! together with the byte offset (from the start of the message) where decoding stopped; each
//! maps to the NOTIFICATION that RFC 4271 §6 says to send, data field included.

use super::types::{error_code, Notification};
use bytes::Bytes;
use std::net::Ipv4Addr;

/// Why a message could not be decoded: the session must send [`DecodeError::notification`] and
/// close (RFC 4271 §6). Survivable UPDATE attribute errors (RFC 7606) are not reported here but in
/// `Update::attribute_errors`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message header error at byte {offset}: {error}")]
    Header { offset: usize, error: HeaderError },
    #[error("OPEN message error at byte {offset}: {error}")]
    Open { offset: usize, error: OpenError },
    #[error("UPDATE message error at byte {offset}: {error}")]
    Update { offset: usize, error: UpdateError },
    #[error("ROUTE-REFRESH message error at byte {offset}: {error}")]
    RouteRefresh {
        offset: usize,
        error: RouteRefreshError,
    },
}

impl DecodeError {
    /// Byte offset from the start of the message (marker included) where decoding failed.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::Header { offset, .. }
            | DecodeError::Open { offset, .. }
            | DecodeError::Update { offset, .. }
            | DecodeError::RouteRefresh { offset, .. } => *offset,
        }
    }

    /// The NOTIFICATION to send for this error (RFC 4271 §6, RFC 5492 §5, RFC 7313 §5).
    pub fn notification(&self) -> Notification {
        match self {
            DecodeError::Header { error, .. } => error.notification(),
            DecodeError::Open { error, .. } => error.notification(),
            DecodeError::Update { error, .. } => error.notification(),
            DecodeError::RouteRefresh { error, .. } => error.notification(),
        }
    }
}

/// Message Header errors, RFC 4271 §6.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The marker is not all ones. No data.
    #[error("marker is not all ones")]
    ConnectionNotSynchronized,
    /// The length field is out of range for the message (or its type). Data: the length field.
    #[error("bad message length {0}")]
    BadMessageLength(u16),
    /// Data: the type field.
    #[error("bad message type {0}")]
    BadMessageType(u8),
}

impl HeaderError {
    pub fn notification(&self) -> Notification {
        use error_code::header::*;
        let code = error_code::MESSAGE_HEADER;
        match self {
            HeaderError::ConnectionNotSynchronized => {
                Notification::new(code, CONNECTION_NOT_SYNCHRONIZED, Bytes::new())
            }
            // §6.1: "the Data field MUST contain the erroneous Length field".
            HeaderError::BadMessageLength(len) => {
                Notification::new(code, BAD_MESSAGE_LENGTH, len.to_be_bytes().to_vec())
            }
            // §6.1: "the Data field MUST contain the erroneous Type field".
            HeaderError::BadMessageType(t) => Notification::new(code, BAD_MESSAGE_TYPE, vec![*t]),
        }
    }
}

/// OPEN message errors, RFC 4271 §6.2 (and RFC 5492 §5 for capabilities).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Data: the largest locally supported version, 2 octets (§6.2).
    #[error("unsupported BGP version {0}")]
    UnsupportedVersion(u8),
    /// AS 0 in My AS or in the 4-octet AS capability (RFC 7607 §2). The FSM also uses this
    /// variant when the AS is not the configured one. No data.
    #[error("bad peer AS {0}")]
    BadPeerAs(u32),
    /// The identifier is zero (RFC 6286 §2.2 relaxed it to any non-zero 32-bit value). No data.
    #[error("bad BGP identifier {0}")]
    BadBgpIdentifier(Ipv4Addr),
    /// An optional parameter other than Capabilities (type 2). No data.
    #[error("unsupported optional parameter type {0}")]
    UnsupportedOptionalParameter(u8),
    /// Hold time 1 or 2 (§6.2: "MUST reject Hold Time values of one or two seconds"). No data.
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
    /// RFC 5492 §5: data is the capability (code, length, value) that is not supported. The
    /// codec keeps unknown capabilities; the FSM raises this when it requires one the peer lacks
    /// or refuses one it cannot honour.
    #[error("unsupported capability")]
    UnsupportedCapability(Bytes),
    /// A recognised optional parameter or capability is malformed: subcode 0 (Unspecific),
    /// as §6.2 says for a recognised but malformed optional parameter. No data.
    #[error("malformed optional parameter: {0}")]
    Malformed(&'static str),
    /// The optional parameters do not fill the message exactly: the length field is wrong
    /// for this OPEN (§6.1 Bad Message Length, as BIRD also reports it). Data: the length field.
    #[error("optional parameters do not match message length {0}")]
    LengthMismatch(u16),
}

impl OpenError {
    pub fn notification(&self) -> Notification {
        use error_code::open::*;
        let code = error_code::OPEN_MESSAGE;
        match self {
            OpenError::UnsupportedVersion(_) => Notification::new(
                code,
                UNSUPPORTED_VERSION_NUMBER,
                4u16.to_be_bytes().to_vec(),
            ),
            OpenError::BadPeerAs(_) => Notification::new(code, BAD_PEER_AS, Bytes::new()),
            OpenError::BadBgpIdentifier(_) => {
                Notification::new(code, BAD_BGP_IDENTIFIER, Bytes::new())
            }
            OpenError::UnsupportedOptionalParameter(_) => {
                Notification::new(code, UNSUPPORTED_OPTIONAL_PARAMETER, Bytes::new())
            }
            OpenError::UnacceptableHoldTime(_) => {
                Notification::new(code, UNACCEPTABLE_HOLD_TIME, Bytes::new())
            }
            OpenError::UnsupportedCapability(cap) => {
                Notification::new(code, UNSUPPORTED_CAPABILITY, cap.clone())
            }
            OpenError::Malformed(_) => Notification::new(code, 0, Bytes::new()),
            OpenError::LengthMismatch(len) => HeaderError::BadMessageLength(*len).notification(),
        }
    }
}

/// UPDATE message errors that reset the session, RFC 4271 §6.3 as revised by RFC 7606.
/// Variants holding `Bytes` hold the whole offending attribute (flags, type, length, value),
/// which §6.3 puts in the data field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Lengths that overrun the message, or a repeated MP_REACH/MP_UNREACH (RFC 7606 §3 g).
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    #[error("unrecognized well-known attribute")]
    UnrecognizedWellKnownAttribute(Bytes),
    /// Data: the type code of the missing attribute. RFC 7606 §3 d turns this into
    /// treat-as-withdraw, so the decoder only records it; kept for completeness.
    #[error("missing well-known attribute {0}")]
    MissingWellKnownAttribute(u8),
    #[error("attribute flags error")]
    AttributeFlagsError(Bytes),
    #[error("attribute length error")]
    AttributeLengthError(Bytes),
    #[error("invalid ORIGIN attribute")]
    InvalidOrigin(Bytes),
    #[error("invalid NEXT_HOP attribute")]
    InvalidNextHop(Bytes),
    /// Used for malformed MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760 §7).
    #[error("optional attribute error: {reason}")]
    OptionalAttributeError {
        attribute: Bytes,
        reason: &'static str,
    },
    /// A prefix in the Withdrawn Routes or NLRI field is syntactically wrong (RFC 7606 §5.3).
    #[error("invalid network field: {0}")]
    InvalidNetworkField(&'static str),
    #[error("malformed AS_PATH")]
    MalformedAsPath,
}

impl UpdateError {
    pub fn notification(&self) -> Notification {
        use error_code::update::*;
        let code = error_code::UPDATE_MESSAGE;
        let (subcode, data) = match self {
            UpdateError::MalformedAttributeList(_) => (MALFORMED_ATTRIBUTE_LIST, Bytes::new()),
            UpdateError::UnrecognizedWellKnownAttribute(a) => {
                (UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE, a.clone())
            }
            // §6.3: "the Data field MUST contain the Attribute Type Code of the missing,
            // well-known attribute".
            UpdateError::MissingWellKnownAttribute(t) => {
                (MISSING_WELL_KNOWN_ATTRIBUTE, Bytes::from(vec![*t]))
            }
            UpdateError::AttributeFlagsError(a) => (ATTRIBUTE_FLAGS_ERROR, a.clone()),
            UpdateError::AttributeLengthError(a) => (ATTRIBUTE_LENGTH_ERROR, a.clone()),
            UpdateError::InvalidOrigin(a) => (INVALID_ORIGIN_ATTRIBUTE, a.clone()),
            UpdateError::InvalidNextHop(a) => (INVALID_NEXT_HOP_ATTRIBUTE, a.clone()),
            UpdateError::OptionalAttributeError { attribute, .. } => {
                (OPTIONAL_ATTRIBUTE_ERROR, attribute.clone())
            }
            UpdateError::InvalidNetworkField(_) => (INVALID_NETWORK_FIELD, Bytes::new()),
            UpdateError::MalformedAsPath => (MALFORMED_AS_PATH, Bytes::new()),
        };
        Notification::new(code, subcode, data)
    }
}

/// ROUTE-REFRESH message errors, RFC 7313 §5.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteRefreshError {
    /// Data: "the complete ROUTE-REFRESH message" (RFC 7313 §5).
    #[error("invalid ROUTE-REFRESH message length {}", .0.len())]
    InvalidMessageLength(Bytes),
}

impl RouteRefreshError {
    pub fn notification(&self) -> Notification {
        match self {
            RouteRefreshError::InvalidMessageLength(msg) => Notification::new(
                error_code::ROUTE_REFRESH_MESSAGE,
                error_code::route_refresh::INVALID_MESSAGE_LENGTH,
                msg.clone(),
            ),
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    MessageTooLong { len: usize, max: usize },
    #[error("path attributes of {len} bytes leave no room for NLRI in a {max}-byte message")]
    AttributesTooLong { len: usize, max: usize },
    #[error("{what} of {len} bytes does not fit its length field")]
    FieldTooLong { what: &'static str, len: usize },
    #[error("AS_PATH segment with no AS numbers")]
    EmptyAsPathSegment,
    #[error("AS_SET of {0} AS numbers exceeds 255")]
    AsSetTooLong(usize),
    #[error("{0}")]
    AddressFamilyMismatch(&'static str),
}
