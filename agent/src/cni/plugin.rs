//! ADD, DEL, CHECK and STATUS: the agent does IPAM and host routes over the control socket, a
//! [`Dataplane`] does the veth. ADD undoes everything it did when a later step fails.

use super::config::NetConf;
use super::env::CniEnv;
use super::error::{code, CniError};
use super::result::{Attachment, CniResult};
use crate::control::api::ErrorKind;
use crate::control::api::{Assignment, Command, EndpointRecord};
use crate::control::{call, ClientError};
use serde_json::Value;
use sha1::{Digest, Sha1};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// The agent may be claiming a new block (a datastore round trip) during assign; kubelet gives
/// a whole ADD a few minutes, so this leaves room for retries without hanging a sandbox forever.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);
/// STATUS is polled; it must answer fast even when the agent hangs.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

pub type DataplaneError = Box<dyn std::error::Error + Send + Sync>;

/// What ADD asks the dataplane to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    pub host_ifname: String,
    pub netns: String,
    pub pod_ifname: String,
    pub ip: Ipv4Addr,
    pub mtu: u32,
}

/// The kernel side of the plugin, a trait so the orchestration (and its rollback) is testable
/// without root.
pub trait Dataplane {
    /// Creates the veth pair (replacing a leftover one of the same host name, so a repeated ADD
    /// succeeds) and configures the pod end; returns the (host, pod) MAC addresses. On error it
    /// leaves nothing half-built that [`Dataplane::remove_host`] would not remove.
    fn create(&self, spec: &VethSpec) -> Result<(String, String), DataplaneError>;
    /// Deletes the host end (and with it the pod end). Succeeds when it is already gone.
    fn remove_host(&self, host_ifname: &str) -> Result<(), DataplaneError>;
    /// Deletes `ifname` inside `netns`. Succeeds when the interface or the namespace is gone.
    fn remove_pod(&self, netns: &str, ifname: &str) -> Result<(), DataplaneError>;
    /// Checks both ends are as `create` left them.
    fn check(&self, spec: &VethSpec) -> Result<(), DataplaneError>;
}

/// `cali` + the first 11 hex digits of sha1("<namespace>.<pod>"), as Calico names it, so the
/// name survives sandbox restarts of the same pod; without pod identity, the container ID.
pub fn host_ifname(env: &CniEnv) -> String {
    let key = match (&env.namespace, &env.pod) {
        (Some(ns), Some(pod)) => format!("{ns}.{pod}"),
        _ => env.container_id.clone(),
    };
    let digest = Sha1::digest(key.as_bytes());
    format!("cali{}", &hex::encode(digest)[..11])
}

fn agent_error(what: &str, e: ClientError) -> CniError {
    match e {
        ClientError::Connect { .. } | ClientError::Io { .. } => CniError::new(
            code::TRY_AGAIN_LATER,
            format!("gingham-agent not reachable ({what})"),
            e.to_string(),
        ),
        // The agent runs but its datastore does not answer: the runtime should retry later.
        ClientError::Agent { .. } if e.is_unavailable() => CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "gingham-agent cannot do {what} now: its datastore is unavailable, try again later"
            ),
            e.to_string(),
        ),
        other => CniError::new(
            code::AGENT_REFUSED,
            format!("gingham-agent refused {what}"),
            other.to_string(),
        ),
    }
}

fn dataplane_error(what: &str, e: DataplaneError) -> CniError {
    CniError::new(code::DATAPLANE, what.to_string(), e.to_string())
}

pub fn add(conf: &NetConf, env: &CniEnv, dp: &dyn Dataplane) -> Result<CniResult, CniError> {
    let socket = conf.control_socket.as_path();
    let netns = env.netns.clone().unwrap_or_default();
    // Before anything is asked of the agent: a missing namespace must not cost an address.
    if !std::path::Path::new(&netns).exists() {
        return Err(CniError::new(
            code::INVALID_ENV,
            "CNI_NETNS does not exist",
            format!("no network namespace at {netns}"),
        ));
    }
    let host = host_ifname(env);
    let assignment: Assignment = call(
        socket,
        Command::EndpointAssign {
            container_id: env.container_id.clone(),
            pod: env.pod.clone(),
            namespace: env.namespace.clone(),
        },
        AGENT_TIMEOUT,
    )
    .map_err(|e| agent_error("address assignment", e))?;
    tracing::info!(container = %env.container_id, ip = ?assignment.ip, "assigned");

    // From here on the agent holds an address for us: every failure path goes through
    // `undo`, so the address, the veth and the host route never leak.
    let undo = |err: CniError| -> CniError {
        if let Err(e) = dp.remove_host(&host) {
            tracing::warn!("rollback: deleting {host}: {e}");
        }
        if let Err(e) = release(socket, &env.container_id) {
            tracing::warn!(
                "rollback: releasing the address of {}: {e}",
                env.container_id
            );
        }
        err
    };
    let Some(ip) = assignment.ip else {
        return Err(undo(CniError::new(
            code::AGENT_REFUSED,
            "no address available",
            format!(
                "gingham-agent assigned no address to handle {}",
                assignment.handle
            ),
        )));
    };
    let spec = VethSpec {
        host_ifname: host.clone(),
        netns: netns.clone(),
        pod_ifname: env.ifname.clone(),
        ip,
        mtu: conf.mtu,
    };
    let (host_mac, pod_mac) = dp
        .create(&spec)
        .map_err(|e| undo(dataplane_error("cannot set up the pod's veth", e)))?;
    let record = EndpointRecord {
        container_id: env.container_id.clone(),
        pod: env.pod.clone(),
        namespace: env.namespace.clone(),
        interface: host.clone(),
        ip,
        netns: netns.clone(),
        pod_interface: env.ifname.clone(),
    };
    call::<Value>(socket, Command::EndpointAttach(record), AGENT_TIMEOUT)
        .map_err(|e| undo(agent_error("endpoint attach", e)))?;
    let attachment = Attachment {
        host_ifname: host.clone(),
        host_mac,
        pod_ifname: env.ifname.clone(),
        pod_mac,
        netns,
        ip,
    };
    CniResult::for_attachment(
        &conf.cni_version,
        conf.version,
        &attachment,
        conf.prev_result.as_ref(),
    )
    .map_err(undo)
}

fn release(socket: &Path, container_id: &str) -> Result<(), CniError> {
    call::<Value>(
        socket,
        Command::EndpointRelease {
            container_id: container_id.to_string(),
        },
        AGENT_TIMEOUT,
    )
    .map(|_| ())
    .map_err(|e| agent_error("address release", e))
}

/// Releases the address and deletes the veth. Everything already gone counts as done (the
/// spec: DEL must succeed when resources are missing). The veth goes even when the agent is
/// unreachable, and the error is still reported so the runtime retries the release.
pub fn del(conf: &NetConf, env: &CniEnv, dp: &dyn Dataplane) -> Result<(), CniError> {
    let released = release(&conf.control_socket, &env.container_id);
    // The pod end, not the host name: a host name is per pod, so a late DEL of an old sandbox
    // must not delete the veth of the pod's new sandbox. Deleting one end deletes the pair, and
    // a namespace that is gone took its end (and so the pair) with it.
    if let Some(netns) = &env.netns {
        dp.remove_pod(netns, &env.ifname)
            .map_err(|e| dataplane_error("cannot delete the pod's interface", e))?;
    }
    released
}

pub fn check(conf: &NetConf, env: &CniEnv, dp: &dyn Dataplane) -> Result<(), CniError> {
    if conf.version < (0, 4, 0) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "CHECK needs cniVersion 0.4.0 or later",
            format!("config has cniVersion {}", conf.cni_version),
        ));
    }
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "CHECK needs prevResult",
            "the runtime must pass the ADD result as prevResult",
        )
    })?;
    let netns = env.netns.clone().unwrap_or_default();
    let ip = CniResult::from_prev(prev, &conf.cni_version)?.pod_address(&env.ifname, &netns)?;
    let spec = VethSpec {
        host_ifname: host_ifname(env),
        netns,
        pod_ifname: env.ifname.clone(),
        ip,
        mtu: conf.mtu,
    };
    dp.check(&spec).map_err(|e| {
        CniError::new(
            code::CHECK_FAILED,
            "pod networking is not as set up",
            e.to_string(),
        )
    })?;
    call::<Value>(
        &conf.control_socket,
        Command::EndpointCheck {
            container_id: env.container_id.clone(),
        },
        AGENT_TIMEOUT,
    )
    .map_err(|e| match e {
        ClientError::Agent { message, kind } if kind != Some(ErrorKind::Unavailable) => {
            CniError::new(
                code::CHECK_FAILED,
                "gingham-agent: endpoint is not as recorded",
                message,
            )
        }
        other => agent_error("endpoint check", other),
    })?;
    Ok(())
}

/// GC (spec 1.1): every endpoint the agent records on this node whose (container, interface)
/// the runtime no longer lists is released. Its host veth goes too, unless a listed endpoint
/// uses the same name (the pod's new sandbox: host names are per pod, not per container).
/// Addresses assigned but never attached have no record; `routectl ipam check` finds those.
pub fn gc(conf: &NetConf, dp: &dyn Dataplane) -> Result<(), CniError> {
    let socket = conf.control_socket.as_path();
    let endpoints: Vec<EndpointRecord> = call(socket, Command::Endpoints, AGENT_TIMEOUT)
        .map_err(|e| agent_error("listing endpoints", e))?;
    let valid = |ep: &EndpointRecord| {
        conf.valid_attachments
            .iter()
            .any(|(id, ifname)| *id == ep.container_id && *ifname == ep.pod_interface)
    };
    let (keep, stale): (Vec<_>, Vec<_>) = endpoints.into_iter().partition(|ep| valid(ep));
    let mut first_error = None;
    for ep in stale {
        tracing::info!(container = %ep.container_id, ip = %ep.ip, "gc: releasing");
        if let Err(e) = release(socket, &ep.container_id) {
            first_error.get_or_insert(e);
        }
        if !keep.iter().any(|k| k.interface == ep.interface) {
            if let Err(e) = dp.remove_host(&ep.interface) {
                first_error.get_or_insert(dataplane_error("gc: cannot delete a stale veth", e));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Ready when the agent answers on its socket; any well-formed answer counts, an error one too
/// (it proves the agent is up and serving).
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    match call::<Value>(&conf.control_socket, Command::Summary, STATUS_TIMEOUT) {
        Ok(_) | Err(ClientError::Agent { .. }) => Ok(()),
        Err(e) => Err(CniError::new(
            code::NOT_AVAILABLE,
            "plugin not available",
            e.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::env::CniCommand;

    fn env(ns: Option<&str>, pod: Option<&str>) -> CniEnv {
        CniEnv {
            command: CniCommand::Add,
            container_id: "c0ffee".into(),
            netns: Some("/var/run/netns/x".into()),
            ifname: "eth0".into(),
            pod: pod.map(Into::into),
            namespace: ns.map(Into::into),
        }
    }

    #[test]
    fn host_name_is_calico_compatible() {
        // sha1("default.nginx") = c440f455693b…, so Calico names this pod's veth cali
        // + those 11 digits.
        let name = host_ifname(&env(Some("default"), Some("nginx")));
        assert_eq!(name, "calic440f455693");
        assert_eq!(name.len(), 15);
        let by_id = host_ifname(&env(None, Some("nginx")));
        assert_eq!(
            by_id,
            format!("cali{}", &hex::encode(Sha1::digest(b"c0ffee"))[..11])
        );
    }
}
