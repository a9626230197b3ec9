//! Pods on this node: the CNI plugin's requests, and the records that let the agent rebuild
//! host routes after a restart (Calico keeps WorkloadEndpoints in its datastore the same way).

use super::Agent;
use crate::control::api::{Assignment, EndpointRecord};
use ipam::resources::{self, Resource, Versioned};
use ipam::store::Kind;
use ipam::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// Calico's handle for a pod's address: `k8s-pod-network.<container ID>`.
pub fn pod_handle(container_id: &str) -> String {
    format!("k8s-pod-network.{container_id}")
}

/// The stored form: the endpoint and the node it lives on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEndpoint {
    pub node: String,
    #[serde(flatten)]
    pub endpoint: EndpointRecord,
}

impl Resource for WorkloadEndpoint {
    const KIND: Kind = Kind::WorkloadEndpoint;

    fn validate(&self) -> Result<(), String> {
        if self.endpoint.container_id.is_empty() {
            return Err("empty container ID".into());
        }
        if !self.endpoint.interface.starts_with("cali") {
            return Err(format!(
                "interface {} is not a cali device",
                self.endpoint.interface
            ));
        }
        Ok(())
    }
}

/// Record name: unique per node and container.
pub fn record_name(node: &str, container_id: &str) -> String {
    format!("{node}.{container_id}")
}

/// Interface names in the agent's network namespace. Read from /sys/class/net, which reflects
/// the namespace the agent was started in (`ip netns exec` remounts it; a host agent sees the host).
pub fn link_names() -> HashSet<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Agent {
    pub async fn endpoints_of_this_node(&self) -> Result<Vec<EndpointRecord>, StoreError> {
        let store = self.store.clone();
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || {
            let (items, _corrupt) = resources::list::<WorkloadEndpoint>(store.as_ref())?;
            Ok(items
                .into_iter()
                .map(|v| v.value)
                .filter(|w| w.node == node)
                .map(|w| w.endpoint)
                .collect())
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    async fn endpoint_record(
        &self,
        container_id: &str,
    ) -> Result<Option<Versioned<WorkloadEndpoint>>, StoreError> {
        let store = self.store.clone();
        let name = record_name(&self.node, container_id);
        tokio::task::spawn_blocking(move || {
            resources::get::<WorkloadEndpoint>(store.as_ref(), &name)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// Who IPAM says holds `ip`.
    async fn holder_of(&self, ip: Ipv4Addr) -> Result<Option<ipam::Allocation>, String> {
        let ipam = self.ipam.clone();
        tokio::task::spawn_blocking(move || ipam.lookup(ip))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// CNI ADD, step 1: an address for the container (the same one on a repeated ADD).
    pub async fn endpoint_assign(
        &self,
        container_id: &str,
        pod: Option<String>,
        namespace: Option<String>,
    ) -> Result<Assignment, String> {
        let handle = pod_handle(container_id);
        let ip = self.assign(&handle, pod, namespace).await?;
        Ok(Assignment {
            handle,
            ip: Some(ip),
        })
    }

    /// Assigns an address to a handle on this node and re-announces what changed (a new block
    /// or a borrowed address).
    pub async fn assign(
        &self,
        handle: &str,
        pod: Option<String>,
        namespace: Option<String>,
    ) -> Result<Ipv4Addr, String> {
        let ipam = self.ipam.clone();
        let attrs = ipam::AllocationAttrs {
            node: self.node.clone(),
            pod,
            namespace,
        };
        let handle = handle.to_string();
        let ip = tokio::task::spawn_blocking(move || ipam.assign(&handle, &attrs))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        // Announce a new block before the pod's first packet needs the return route.
        self.sync_local().await;
        Ok(ip)
    }

    pub async fn release(&self, handle: &str) -> Result<Vec<Ipv4Addr>, String> {
        let ipam = self.ipam.clone();
        let h = handle.to_string();
        let released = tokio::task::spawn_blocking(move || ipam.release(&h))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.wake_local.notify_one();
        Ok(released)
    }

    /// CNI ADD, step 2: the veth exists; install the host route and record the endpoint.
    pub async fn endpoint_attach(&self, ep: EndpointRecord) -> Result<EndpointRecord, String> {
        if !ep.interface.starts_with("cali") {
            return Err(format!("interface {} is not a cali device", ep.interface));
        }
        // The address must be the one IPAM gave this container: never route someone else's.
        let ip = ep.ip;
        let holder = self.holder_of(ip).await?;
        let handle = pod_handle(&ep.container_id);
        match holder {
            Some(a) if a.handle == handle => {}
            Some(a) => return Err(format!("{ip} is held by {}, not by {handle}", a.handle)),
            None => return Err(format!("{ip} is not assigned to {handle}")),
        }
        self.kernel
            .lock()
            .await
            .add_host_route(ep.ip, &ep.interface)
            .await
            .map_err(|e| e.to_string())?;
        let store = self.store.clone();
        let rec = WorkloadEndpoint {
            node: self.node.clone(),
            endpoint: ep.clone(),
        };
        let name = record_name(&self.node, &ep.container_id);
        let saved = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            match resources::get::<WorkloadEndpoint>(store.as_ref(), &name)? {
                Some(mut v) => {
                    v.value = rec;
                    resources::update(store.as_ref(), v).map(|_| ())
                }
                None => resources::create(store.as_ref(), &name, rec).map(|_| ()),
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        if let Err(e) = saved {
            // Without a record the route would be orphaned after a restart: undo it.
            let _ = self
                .kernel
                .lock()
                .await
                .delete_host_route(ep.ip, &ep.interface)
                .await;
            return Err(format!("recording endpoint: {e}"));
        }
        tracing::info!(
            "endpoint {} ({:?}/{:?}): {} dev {}",
            ep.container_id,
            ep.namespace,
            ep.pod,
            ep.ip,
            ep.interface
        );
        Ok(ep)
    }

    /// CNI DEL: host route, record, address. Each step tolerates "already gone".
    pub async fn endpoint_release(&self, container_id: &str) -> Result<Assignment, String> {
        if let Some(v) = self
            .endpoint_record(container_id)
            .await
            .map_err(|e| e.to_string())?
        {
            let ep = &v.value.endpoint;
            self.kernel
                .lock()
                .await
                .delete_host_route(ep.ip, &ep.interface)
                .await
                .map_err(|e| e.to_string())?;
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || match resources::delete(store.as_ref(), &v) {
                Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        }
        let handle = pod_handle(container_id);
        let released = self.release(&handle).await?;
        Ok(Assignment {
            handle,
            ip: released.first().copied(),
        })
    }

    /// CNI CHECK: recorded, address still held by the container, host route present.
    pub async fn endpoint_check(&self, container_id: &str) -> Result<EndpointRecord, String> {
        let v = self
            .endpoint_record(container_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no endpoint recorded for container {container_id}"))?;
        let ep = v.value.endpoint;
        let holder = self.holder_of(ep.ip).await?;
        if holder.map(|a| a.handle) != Some(pod_handle(container_id)) {
            return Err(format!(
                "{} is no longer assigned to container {container_id}",
                ep.ip
            ));
        }
        let routes = self
            .kernel
            .lock()
            .await
            .list_owned()
            .await
            .map_err(|e| e.to_string())?;
        let want = crate::kernel::DesiredRoute::host(ep.ip, &ep.interface);
        if !routes.iter().any(|r| r.desired() == want) {
            return Err(format!("host route {want} is missing"));
        }
        Ok(ep)
    }
}
