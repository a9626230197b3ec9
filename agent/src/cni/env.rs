//! The runtime's environment variables (CNI spec 1.0 §"Parameters"), checked per command.

use super::error::{code, CniError};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
    Check,
    Version,
    /// Spec 1.1: is the plugin ready to serve ADD?
    Status,
    /// Spec 1.1: release everything not in `cni.dev/valid-attachments`.
    Gc,
}

/// What the runtime told us about the container. `netns` is optional only for DEL (the
/// runtime may have lost it already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: CniCommand,
    pub container_id: String,
    pub netns: Option<String>,
    pub ifname: String,
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

/// Reads only `CNI_COMMAND`: VERSION, STATUS and GC need nothing else.
pub fn command(get: &dyn Fn(&str) -> Option<String>) -> Result<CniCommand, CniError> {
    match get("CNI_COMMAND").as_deref() {
        Some("ADD") => Ok(CniCommand::Add),
        Some("DEL") => Ok(CniCommand::Del),
        Some("CHECK") => Ok(CniCommand::Check),
        Some("VERSION") => Ok(CniCommand::Version),
        Some("STATUS") => Ok(CniCommand::Status),
        Some("GC") => Ok(CniCommand::Gc),
        Some(other) => Err(CniError::new(
            code::INVALID_ENV,
            "invalid CNI_COMMAND",
            format!("CNI_COMMAND={other:?}; want ADD, DEL, CHECK, VERSION, STATUS or GC"),
        )),
        None => Err(CniError::new(
            code::INVALID_ENV,
            "missing CNI_COMMAND",
            "CNI_COMMAND is required",
        )),
    }
}

impl CniEnv {
    /// Reads and checks the variables ADD, DEL and CHECK need. `get` is `std::env::var` in the
    /// binary and a map in tests.
    pub fn read(
        command: CniCommand,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CniEnv, CniError> {
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());
        let mut missing = Vec::new();
        let container_id = nonempty("CNI_CONTAINERID");
        let netns = nonempty("CNI_NETNS");
        let ifname = nonempty("CNI_IFNAME");
        if container_id.is_none() {
            missing.push("CNI_CONTAINERID");
        }
        if netns.is_none() && command != CniCommand::Del {
            missing.push("CNI_NETNS");
        }
        if ifname.is_none() {
            missing.push("CNI_IFNAME");
        }
        if !missing.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("missing {}", missing.join(", ")),
                "the runtime must set these for ADD, DEL and CHECK",
            ));
        }
        let container_id = container_id.unwrap_or_default();
        let ifname = ifname.unwrap_or_default();
        validate_container_id(&container_id)?;
        validate_ifname(&ifname)?;
        let args = parse_cni_args(get("CNI_ARGS").as_deref().unwrap_or(""))?;
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            pod: args.get("K8S_POD_NAME").cloned(),
            namespace: args.get("K8S_POD_NAMESPACE").cloned(),
        })
    }
}

/// `CNI_ARGS` is `K=V;K=V`. Unknown keys are ignored (runtimes send `IgnoreUnknown=1` and
/// keys meant for other plugins in a chain); a pair without `=` is an error.
pub fn parse_cni_args(text: &str) -> Result<HashMap<String, String>, CniError> {
    let mut out = HashMap::new();
    for pair in text.split(';').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            _ => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    "invalid CNI_ARGS",
                    format!("{pair:?} is not KEY=VALUE"),
                ))
            }
        }
    }
    Ok(out)
}

/// The reference library's rule: an alphanumeric, then alphanumerics, `_`, `.` or `-`. It also
/// keeps the ID safe to log and to put in a JSON request.
fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_ENV,
            "invalid CNI_CONTAINERID",
            format!("{id:?}: want an alphanumeric followed by alphanumerics, '_', '.' or '-'"),
        ))
    }
}

/// A Linux interface name: 1–15 bytes (IFNAMSIZ - 1), no `/`, `:` or whitespace, not `.`/`..`.
fn validate_ifname(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_ENV,
            "invalid CNI_IFNAME",
            format!("{name:?} is not a valid interface name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn add_reads_everything() {
        let get = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/var/run/netns/p"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
            ),
        ]);
        let cmd = command(&get).unwrap();
        let e = CniEnv::read(cmd, &get).unwrap();
        assert_eq!(e.command, CniCommand::Add);
        assert_eq!(e.pod.as_deref(), Some("web-0"));
        assert_eq!(e.namespace.as_deref(), Some("default"));
        assert_eq!(e.netns.as_deref(), Some("/var/run/netns/p"));
    }

    #[test]
    fn missing_and_bad_variables_are_named() {
        let get = env(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")]);
        let e = CniEnv::read(CniCommand::Add, &get).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(
            e.msg.contains("CNI_CONTAINERID") && e.msg.contains("CNI_NETNS"),
            "{e}"
        );

        // DEL may come without a netns.
        let get = env(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")]);
        assert!(CniEnv::read(CniCommand::Del, &get).is_ok());

        let get = env(&[
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "a-very-long-ifname"),
        ]);
        assert!(CniEnv::read(CniCommand::Del, &get)
            .unwrap_err()
            .msg
            .contains("CNI_IFNAME"));
        let get = env(&[("CNI_CONTAINERID", "../x"), ("CNI_IFNAME", "eth0")]);
        assert!(CniEnv::read(CniCommand::Del, &get)
            .unwrap_err()
            .msg
            .contains("CNI_CONTAINERID"));

        assert_eq!(command(&env(&[])).unwrap_err().code, code::INVALID_ENV);
        assert_eq!(
            command(&env(&[("CNI_COMMAND", "FROB")])).unwrap_err().code,
            code::INVALID_ENV
        );
    }

    #[test]
    fn cni_args() {
        assert!(parse_cni_args("").unwrap().is_empty());
        assert_eq!(
            parse_cni_args("A=1;;B=")
                .unwrap()
                .get("B")
                .map(String::as_str),
            Some("")
        );
        assert_eq!(
            parse_cni_args("A=1;junk").unwrap_err().code,
            code::INVALID_ENV
        );
    }
}
