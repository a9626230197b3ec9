//! The network configuration on stdin (CNI spec 1.0 §"Network configuration") and the plugin's
//! own fields, validated into [`NetConf`].

use super::error::{code, CniError};
use serde_json::Value;
use std::path::PathBuf;

/// Every spec version whose configuration and result shapes we read and write. 0.3.x and 0.4.0
/// results differ from 1.x only by `ips[].version`, so supporting them costs one field.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// What we answer in when the caller's version is unknown (garbage on stdin, VERSION).
pub const DEFAULT_VERSION: &str = "1.0.0";
pub const DEFAULT_MTU: u32 = 1500;
pub const DEFAULT_CONTROL_SOCKET: &str = "/var/run/gingham/agent.sock";
/// The only IPAM: the agent owns allocation, so the plugin never execs an IPAM binary.
pub const IPAM_TYPE: &str = "gingham-ipam";
/// The plugin's `type`: the runtime runs the binary of that name, so anything else means the
/// configuration was meant for another plugin.
pub const PLUGIN_TYPE: &str = "gingham-cni";
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// A spec version as (major, minor, patch), for "CHECK needs ≥ 0.4.0" style comparisons.
pub type Version = (u32, u32, u32);

/// Parses `x.y.z`; anything else is a decode error (code 6), as the reference `skel` does.
pub fn parse_version(text: &str) -> Result<Version, CniError> {
    let bad = || {
        CniError::new(
            code::DECODE,
            "cannot decode cniVersion",
            format!("{text:?} is not a semantic version x.y.z"),
        )
    };
    let mut parts = text.split('.').map(|p| p.parse::<u32>().map_err(|_| bad()));
    let v = (
        parts.next().ok_or_else(bad)??,
        parts.next().ok_or_else(bad)??,
        parts.next().ok_or_else(bad)??,
    );
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(v)
}

/// A supported version or code 1 naming what we do support.
pub fn check_supported(text: &str) -> Result<Version, CniError> {
    let v = parse_version(text)?;
    if SUPPORTED_VERSIONS.contains(&text) {
        Ok(v)
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            format!(
                "config has cniVersion {text}; gingham-cni supports {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ))
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub version: Version,
    pub name: String,
    pub plugin_type: String,
    pub mtu: u32,
    pub control_socket: PathBuf,
    pub log_level: String,
    /// The previous plugin's (ADD) or the earlier ADD's (CHECK, DEL) result, kept as JSON: ADD
    /// merges into it, CHECK reads it.
    pub prev_result: Option<Value>,
    /// GC (spec 1.1): `cni.dev/valid-attachments` as (container ID, ifname) pairs.
    pub valid_attachments: Vec<(String, String)>,
}

/// Reads just enough of stdin to learn the version errors should be written in.
pub fn version_hint(stdin: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(stdin).ok()?;
    let v = value.get("cniVersion")?.as_str()?;
    parse_version(v).ok().map(|_| v.to_string())
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE,
                "cannot decode network configuration",
                e.to_string(),
            )
        })?;
        let obj = value.as_object().ok_or_else(|| {
            CniError::new(
                code::DECODE,
                "cannot decode network configuration",
                "stdin must hold one JSON object",
            )
        })?;
        let cni_version = required_str(obj, "cniVersion")?;
        let version = check_supported(&cni_version)?;
        let name = required_str(obj, "name")?;
        validate_network_name(&name)?;
        let plugin_type = required_str(obj, "type")?;
        if plugin_type != PLUGIN_TYPE {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("unsupported type {plugin_type:?}"),
                format!(
                    "this plugin is {PLUGIN_TYPE:?}: the configuration is meant for another plugin"
                ),
            ));
        }

        let mtu = match obj.get("mtu") {
            None | Some(Value::Null) => DEFAULT_MTU,
            Some(v) => match v.as_u64() {
                // 68 is the IPv4 minimum link MTU (RFC 791); 65535 the largest the kernel takes
                // on a veth.
                Some(m) if (68..=65535).contains(&m) => m as u32,
                _ => return Err(invalid("mtu", v, "an integer from 68 to 65535")),
            },
        };
        let control_socket = match obj.get("control_socket") {
            None | Some(Value::Null) => PathBuf::from(DEFAULT_CONTROL_SOCKET),
            Some(Value::String(s)) if !s.is_empty() => PathBuf::from(s),
            Some(v) => return Err(invalid("control_socket", v, "a socket path")),
        };
        let log_level = match obj.get("log_level") {
            None | Some(Value::Null) => "info".to_string(),
            Some(Value::String(s)) if LOG_LEVELS.contains(&s.to_ascii_lowercase().as_str()) => {
                s.to_ascii_lowercase()
            }
            Some(v) => {
                return Err(invalid(
                    "log_level",
                    v,
                    "one of error, warn, info, debug, trace",
                ))
            }
        };
        match obj.get("ipam") {
            None | Some(Value::Null) => {}
            Some(Value::Object(ipam)) => match ipam.get("type") {
                Some(Value::String(t)) if t == IPAM_TYPE => {}
                Some(Value::String(t)) => {
                    return Err(CniError::new(
                        code::UNSUPPORTED_FIELD,
                        format!("unsupported field ipam.type = {t:?}"),
                        format!("gingham-cni only works with ipam.type {IPAM_TYPE:?}: the agent allocates addresses"),
                    ))
                }
                _ => return Err(invalid("ipam.type", ipam.get("type").unwrap_or(&Value::Null), "a string")),
            },
            Some(v) => return Err(invalid("ipam", v, "an object")),
        }
        let prev_result = match obj.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(v) => return Err(invalid("prevResult", v, "an object")),
        };
        let valid_attachments = match obj.get("cni.dev/valid-attachments") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    let id = item.get("containerID").and_then(Value::as_str);
                    let ifname = item.get("ifname").and_then(Value::as_str);
                    match (id, ifname) {
                        (Some(id), Some(ifname)) => out.push((id.to_string(), ifname.to_string())),
                        _ => {
                            return Err(invalid(
                                "cni.dev/valid-attachments",
                                item,
                                "objects with containerID and ifname",
                            ))
                        }
                    }
                }
                out
            }
            Some(v) => return Err(invalid("cni.dev/valid-attachments", v, "a list")),
        };
        Ok(NetConf {
            valid_attachments,
            cni_version,
            version,
            name,
            plugin_type,
            mtu,
            control_socket,
            log_level,
            prev_result,
        })
    }
}

fn required_str(obj: &serde_json::Map<String, Value>, key: &str) -> Result<String, CniError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None | Some(Value::Null) => Err(CniError::new(
            code::INVALID_CONFIG,
            format!("network configuration has no {key:?}"),
            format!("{key:?} is required"),
        )),
        Some(v) => Err(invalid(key, v, "a non-empty string")),
    }
}

fn invalid(key: &str, value: &Value, want: &str) -> CniError {
    CniError::new(
        code::INVALID_CONFIG,
        format!("invalid {key:?} in network configuration"),
        format!("{key} = {value}; want {want}"),
    )
}

/// The spec's rule for `name`: an alphanumeric, then alphanumerics, `_`, `.` or `-`.
fn validate_network_name(name: &str) -> Result<(), CniError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        Ok(())
    } else {
        Err(invalid(
            "name",
            &Value::String(name.into()),
            "an alphanumeric followed by alphanumerics, '_', '.' or '-'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NetConf, CniError> {
        NetConf::parse(s.as_bytes())
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"gingham-cni"}"#)
            .unwrap();
        assert_eq!(c.mtu, 1500);
        assert_eq!(c.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert_eq!(c.version, (1, 0, 0));
        assert_eq!(c.log_level, "info");
        assert!(c.prev_result.is_none());
    }

    #[test]
    fn fields_are_read() {
        let c = parse(
            r#"{"cniVersion":"0.4.0","name":"n","type":"gingham-cni","mtu":1440,
                "control_socket":"/tmp/a.sock","log_level":"DEBUG","ipam":{"type":"gingham-ipam"},
                "prevResult":{"ips":[]}}"#,
        )
        .unwrap();
        assert_eq!(c.mtu, 1440);
        assert_eq!(c.control_socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.log_level, "debug");
        assert!(c.prev_result.is_some());
    }

    #[test]
    fn another_plugins_type_is_refused() {
        let e =
            NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"calico"}"#).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("\"calico\""), "{e}");
    }

    #[test]
    fn error_codes() {
        let code_of = |s: &str| parse(s).unwrap_err().code;
        assert_eq!(code_of("{nope"), code::DECODE);
        assert_eq!(code_of("[1,2]"), code::DECODE);
        assert_eq!(code_of(r#"{"name":"n","type":"t"}"#), code::INVALID_CONFIG);
        assert_eq!(
            code_of(r#"{"cniVersion":"0.2.0","name":"n","type":"t"}"#),
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"2.0.0","name":"n","type":"t"}"#),
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"one","name":"n","type":"t"}"#),
            code::DECODE
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","type":"t"}"#),
            code::INVALID_CONFIG
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"-x","type":"t"}"#),
            code::INVALID_CONFIG
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"n"}"#),
            code::INVALID_CONFIG
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":"big"}"#),
            code::INVALID_CONFIG
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"n","type":"gingham-cni","mtu":10}"#),
            code::INVALID_CONFIG
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"n","type":"gingham-cni","log_level":"loud"}"#),
            code::INVALID_CONFIG
        );
        let e =
            parse(r#"{"cniVersion":"1.0.0","name":"n","type":"gingham-cni","ipam":{"type":"host-local"}}"#)
                .unwrap_err();
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
        assert!(
            e.msg.contains("ipam.type") && e.msg.contains("host-local"),
            "{e}"
        );
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.1.0").unwrap(), (1, 1, 0));
        assert!(parse_version("1.1").is_err());
        assert!(parse_version("1.1.0.0").is_err());
        assert_eq!(
            version_hint(br#"{"cniVersion":"0.4.0"}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(version_hint(b"garbage"), None);
    }
}
