//! CNI errors as the spec prints them: `{"cniVersion","code","msg","details"}` on stdout with a
//! non-zero exit status (CNI spec 1.0 §"Error", §"Well-known Error Codes").

use serde::Serialize;

/// Well-known error codes (0–99 are reserved by the spec; 100+ are the plugin's own).
pub mod code {
    /// The network configuration asks for a CNI version this plugin does not speak.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// A field value the plugin does not support; the message names the key and the value.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// `CNI_COMMAND`, `CNI_CONTAINERID`, … missing or malformed; the message names them.
    pub const INVALID_ENV: u32 = 4;
    /// Reading stdin failed.
    pub const IO_FAILURE: u32 = 5;
    /// stdin is not JSON (or a field cannot be decoded at all).
    pub const DECODE: u32 = 6;
    /// The configuration decoded but does not validate.
    pub const INVALID_CONFIG: u32 = 7;
    /// A transient condition (the agent is not reachable): the runtime should retry.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS (spec 1.1): the plugin cannot serve ADD right now.
    pub const NOT_AVAILABLE: u32 = 50;
    /// Our own: the agent answered with an error (e.g. no address left).
    pub const AGENT_REFUSED: u32 = 999;
    /// Our own: programming the kernel (veth, addresses, routes) failed.
    pub const DATAPLANE: u32 = 1000;
    /// Our own: CHECK found the container's networking not as ADD left it.
    pub const CHECK_FAILED: u32 = 1001;
}

/// One CNI error. `msg` is short; `details` says what was tried and why it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}: {details} (code {code})")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The JSON object the spec wants on stdout; `cni_version` is the configuration's version
    /// when it could be read (so the runtime decodes the error in the dialect it asked for).
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_value(Wire {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        let e = CniError::new(code::INVALID_ENV, "missing CNI_NETNS", "ADD needs it");
        assert_eq!(
            e.to_json("1.0.0"),
            serde_json::json!({"cniVersion":"1.0.0","code":4,"msg":"missing CNI_NETNS","details":"ADD needs it"})
        );
        let bare = CniError::new(code::DECODE, "bad", "");
        assert!(bare.to_json("0.4.0").get("details").is_none());
    }
}
