//! Pods on this node: the CNI plugin's requests, and the records that let the agent rebuild
//! host routes after a restart (Calico keeps WorkloadEndpoints in its datastore the same way).

use super::error::AgentError;
use super::Agent;
use crate::control::api::{Assignment, EndpointRecord};
use ipam::resources::{self, InvalidRecord, Resource, Versioned};
use ipam::store::Kind;
use ipam::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Every CustomResourceDefinition Gingham uses: IPAM's and this one. `deploy/gingham.yaml`
/// holds them as YAML, generated from here.
pub fn crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    let mut all = ipam::store::kube::crds();
    all.push(WorkloadEndpointResource::crd());
    all
}

/// Calico's handle for a pod's address: `k8s-pod-network.<container ID>`.
pub fn pod_handle(container_id: &str) -> String {
    format!("k8s-pod-network.{container_id}")
}

/// The stored form: the endpoint and the node it lives on. On Kubernetes, a cluster-scoped
/// `WorkloadEndpoint` custom resource (`gingham.io/v1`).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, kube::CustomResource,
)]
#[kube(
    group = "gingham.io",
    version = "v1",
    kind = "WorkloadEndpoint",
    plural = "workloadendpoints",
    root = "WorkloadEndpointResource",
    doc = "A pod on a node, as its agent recorded it (Gingham).",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Pod","type":"string","jsonPath":".spec.pod"}"#,
    printcolumn = r#"{"name":"IP","type":"string","jsonPath":".spec.ip"}"#,
    printcolumn = r#"{"name":"Interface","type":"string","jsonPath":".spec.interface"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEndpoint {
    pub node: String,
    #[serde(flatten)]
    pub endpoint: EndpointRecord,
}

impl Resource for WorkloadEndpoint {
    const KIND: Kind = Kind::WorkloadEndpoint;

    fn validate(&self) -> Result<(), InvalidRecord> {
        if self.endpoint.container_id.is_empty() {
            return Err(InvalidRecord::Empty("container ID"));
        }
        if !self.endpoint.interface.starts_with("cali") {
            return Err(InvalidRecord::NotCali(self.endpoint.interface.clone()));
        }
        Ok(())
    }
}

/// Record name: unique per node and container.
pub fn record_name(node: &str, container_id: &str) -> String {
    format!("{node}.{container_id}")
}

impl Agent {
    pub async fn endpoints_of_this_node(&self) -> Result<Vec<EndpointRecord>, AgentError> {
        let store = self.store.clone();
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || endpoints_of(store.as_ref(), &node)).await?
    }

    async fn endpoint_record(
        &self,
        container_id: &str,
    ) -> Result<Option<Versioned<WorkloadEndpoint>>, AgentError> {
        let store = self.store.clone();
        let name = record_name(&self.node, container_id);
        Ok(tokio::task::spawn_blocking(move || {
            resources::get::<WorkloadEndpoint>(store.as_ref(), &name)
        })
        .await??)
    }

    /// Who IPAM says holds `ip`.
    async fn holder_of(&self, ip: Ipv4Addr) -> Result<Option<ipam::Allocation>, AgentError> {
        let ipam = self.ipam.clone();
        Ok(tokio::task::spawn_blocking(move || ipam.lookup(ip)).await??)
    }

    /// CNI ADD, step 1: an address for the container (the same one on a repeated ADD).
    pub async fn endpoint_assign(
        &self,
        container_id: &str,
        pod: Option<String>,
        namespace: Option<String>,
    ) -> Result<Assignment, AgentError> {
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
    ) -> Result<Ipv4Addr, AgentError> {
        let ipam = self.ipam.clone();
        let attrs = ipam::AllocationAttrs {
            node: self.node.clone(),
            pod,
            namespace,
        };
        let handle = handle.to_string();
        // A block claimed for this address is announced as soon as the claim is confirmed,
        // while the address and the handle are still being written: other nodes route it by
        // the time the pod's first packet needs the return route.
        let routing = self.routing.clone();
        let rt = tokio::runtime::Handle::current();
        let done = tokio::task::spawn_blocking(move || {
            let mut announced = true;
            let r = ipam.assign_reporting(&handle, &attrs, &mut |block| {
                // This is a blocking thread: waiting here for the owner is allowed, and the
                // address is written only once the block is out.
                announced &= rt.block_on(routing.new_block(block)).is_ok();
            });
            r.map(|a| (a, announced))
        })
        .await??;
        let (done, announced) = done;
        // A borrowed address is announced as a /32 before the pod uses it; an address in a
        // block the owner does not route yet (another ADD claimed it a moment ago, and its
        // announcement is on its way) is read again too. Anything else changed nothing.
        let routed = !done.borrowed
            && announced
            && self
                .routing
                .view()
                .await?
                .blocks
                .iter()
                .any(|b| b.contains(&done.ip));
        if !routed {
            self.local.refresh().await?;
        } else if done.claimed.is_some() {
            // The claim's own read, to replace what the owner took on trust.
            self.local.nudge();
        }
        Ok(done.ip)
    }

    pub async fn release(&self, handle: &str) -> Result<Vec<Ipv4Addr>, AgentError> {
        let ipam = self.ipam.clone();
        let h = handle.to_string();
        let released = tokio::task::spawn_blocking(move || ipam.release(&h)).await??;
        self.local.nudge();
        Ok(released)
    }

    /// CNI ADD, step 2: the veth exists; install the host route and record the endpoint.
    pub async fn endpoint_attach(&self, ep: EndpointRecord) -> Result<EndpointRecord, AgentError> {
        if !ep.interface.starts_with("cali") {
            return Err(AgentError::NotCali(ep.interface));
        }
        // The address must be the one IPAM gave this container: never route someone else's.
        let ip = ep.ip;
        let handle = pod_handle(&ep.container_id);
        match self.holder_of(ip).await? {
            Some(a) if a.handle == handle => {}
            Some(a) => {
                return Err(AgentError::HeldByOther {
                    ip,
                    holder: a.handle,
                    handle,
                })
            }
            None => return Err(AgentError::NotAssigned { ip, handle }),
        }
        self.routing.attach_host(ep.ip, &ep.interface).await?;
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
        .await?;
        if let Err(e) = saved {
            // Without a record the route would be orphaned after a restart: undo it.
            let _ = self.routing.detach_host(ep.ip, &ep.interface).await;
            return Err(AgentError::RecordEndpoint(e));
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
    pub async fn endpoint_release(&self, container_id: &str) -> Result<Assignment, AgentError> {
        if let Some(v) = self.endpoint_record(container_id).await? {
            let ep = &v.value.endpoint;
            self.routing.detach_host(ep.ip, &ep.interface).await?;
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || match resources::delete(store.as_ref(), &v) {
                Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            })
            .await??;
        }
        let handle = pod_handle(container_id);
        let released = self.release(&handle).await?;
        Ok(Assignment {
            handle,
            ip: released.first().copied(),
        })
    }

    /// CNI CHECK: recorded, address still held by the container, host route present.
    pub async fn endpoint_check(&self, container_id: &str) -> Result<EndpointRecord, AgentError> {
        let v = self
            .endpoint_record(container_id)
            .await?
            .ok_or_else(|| AgentError::NoEndpoint(container_id.to_string()))?;
        let ep = v.value.endpoint;
        let holder = self.holder_of(ep.ip).await?;
        if holder.map(|a| a.handle) != Some(pod_handle(container_id)) {
            return Err(AgentError::NoLongerAssigned {
                ip: ep.ip,
                container_id: container_id.to_string(),
            });
        }
        let want = crate::kernel::DesiredRoute::host(ep.ip, &ep.interface);
        let present = self
            .kernel_route(ep.ip)
            .await?
            .and_then(|r| r.ours)
            .is_some_and(|r| r.desired() == want);
        if !present {
            return Err(AgentError::HostRouteMissing(want.to_string()));
        }
        Ok(ep)
    }
}

/// The endpoints recorded for `node` (read at start, so the routing owner keeps their host
/// routes from the first reconcile on).
pub fn endpoints_of(store: &dyn Store, node: &str) -> Result<Vec<EndpointRecord>, AgentError> {
    let (items, _corrupt) = resources::list::<WorkloadEndpoint>(store)?;
    Ok(items
        .into_iter()
        .map(|v| v.value)
        .filter(|w| w.node == node)
        .map(|w| w.endpoint)
        .collect())
}
