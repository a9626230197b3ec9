//! Answers control-socket requests and metrics scrapes. Everything here is typed
//! ([`AgentError`]); it becomes text only in [`AgentHandler::handle`], at the socket.

use super::error::AgentError;
use super::Agent;
use crate::control::api::{
    Assignment, BlockInfo, BlocksReport, Command, IpInfo, IpamPolicy, IpamReport, MessageCounts,
    NodeRemoved, PeerInfo, Request, Response, RouteInfo, Summary, Trace,
};
use crate::control::{Handler, HandlerFuture};
use crate::kernel::{KernelRoute, KernelRoutes, RouteTarget};
use crate::metrics::{MetricsSource, Snapshot};
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;

/// The handler is a thin wrapper so `Agent` stays free of trait plumbing.
pub struct AgentHandler(pub Arc<Agent>);

impl Handler for AgentHandler {
    fn handle(&self, request: Request) -> HandlerFuture<'_> {
        Box::pin(async move {
            match self.0.answer(request.command).await {
                Ok(r) => r,
                Err(e) => Response::err_kind(e.to_string(), e.kind()),
            }
        })
    }
}

impl MetricsSource for AgentHandler {
    fn snapshot(&self) -> Pin<Box<dyn Future<Output = Snapshot> + Send + '_>> {
        Box::pin(async move { self.0.snapshot().await })
    }
}

fn counts(c: &bgp::MessageCounts) -> MessageCounts {
    MessageCounts {
        open: c.open,
        update: c.update,
        notification: c.notification,
        keepalive: c.keepalive,
        route_refresh: c.route_refresh,
    }
}

/// The speaker's view of a peer in routectl's JSON shape (its field names are an interface).
pub fn peer_info(p: &bgp::PeerStatus) -> PeerInfo {
    PeerInfo {
        address: p.address,
        port: p.port,
        asn: p.r#as,
        peer_type: p.kind,
        state: p.state,
        since: p.since_unix,
        uptime_secs: p.uptime_secs,
        info: p.info(),
        hold_time: p.hold_time,
        keepalive: p.keepalive,
        capabilities: p.capabilities.clone(),
        prefixes_received: p.prefixes_received,
        prefixes_accepted: p.prefixes_accepted,
        prefixes_advertised: p.prefixes_advertised,
        messages_in: counts(&p.messages_in),
        messages_out: counts(&p.messages_out),
        last_error: p.last_error.as_ref().map(|e| e.to_string()),
        flaps: p.flaps,
    }
}

/// Runs synchronous IPAM work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f).await?
}

impl Agent {
    async fn peers(&self) -> Result<Vec<PeerInfo>, AgentError> {
        let status = self.speaker.status().await?;
        Ok(status.peers.iter().map(peer_info).collect())
    }

    async fn routes_view(&self) -> Result<Vec<RouteInfo>, AgentError> {
        let routes = self.speaker.routes().await?;
        let view = self.routing.view().await?;
        Ok(routes
            .into_iter()
            .map(|r| RouteInfo {
                in_kernel: r.best && view.in_kernel(r.prefix, r.source, r.next_hop, self.ip),
                prefix: r.prefix,
                next_hop: r.next_hop,
                as_path: r.as_path,
                origin: r.origin,
                local_pref: r.local_pref,
                med: r.med,
                source: r.source.to_string(),
                best: r.best,
                reason: r.reason,
            })
            .collect())
    }

    async fn blocks_report(&self) -> Result<BlocksReport, AgentError> {
        let ipam = self.ipam.clone();
        let (usage, blocks) = blocking(move || Ok((ipam.pool_usage()?, ipam.blocks()?))).await?;
        Ok(BlocksReport {
            pool: usage.cidr,
            block_size: usage.block_size,
            total: usage.addresses_total,
            in_use: usage.addresses_in_use,
            free: usage.addresses_free,
            blocks: blocks
                .into_iter()
                .map(|b| BlockInfo {
                    block: b.cidr,
                    node: b.node,
                    in_use: b.in_use as u64,
                    free: b.free as u64,
                })
                .collect(),
        })
    }

    async fn ip_info(&self, ip: Ipv4Addr) -> Result<IpInfo, AgentError> {
        let ipam = self.ipam.clone();
        let (alloc, block) = blocking(move || {
            let alloc = ipam.lookup(ip)?;
            // The block that would hold it, and whether it exists (claimed) and whose it is.
            let block = match ipam.pool().block_of(ip) {
                Some(cidr) => ipam.blocks()?.into_iter().find(|b| b.cidr == cidr),
                None => None,
            };
            Ok((alloc, block))
        })
        .await?;
        Ok(IpInfo {
            ip,
            assigned: alloc.is_some(),
            handle: alloc.as_ref().map(|a| a.handle.clone()),
            block: block.as_ref().map(|b| b.cidr),
            block_owner: block.and_then(|b| b.node),
            node: alloc.as_ref().and_then(|a| a.node.clone()),
            pod: alloc.as_ref().and_then(|a| a.pod.clone()),
            namespace: alloc.as_ref().and_then(|a| a.namespace.clone()),
        })
    }

    /// The kernel's route for `ip`. The routing owner is the only writer of the kernel;
    /// reading it is anyone's, on a socket of its own.
    pub(super) async fn kernel_route(
        &self,
        ip: Ipv4Addr,
    ) -> Result<Option<KernelRoute>, AgentError> {
        let mut k = KernelRoutes::new()?;
        Ok(k.lookup(ip).await?)
    }

    async fn trace(&self, ip: Ipv4Addr) -> Result<Trace, AgentError> {
        let info = self.ip_info(ip).await?;
        let pool = self.ipam.pool().cidr;
        let in_pool = pool.contains(&ip);
        let mut steps = Vec::new();
        if in_pool {
            steps.push(format!("{ip} is in the pod pool {pool}"));
        } else {
            steps.push(format!("{ip} is outside the pod pool {pool}"));
        }
        match (&info.block, &info.block_owner) {
            (Some(b), Some(owner)) => {
                steps.push(format!("it is in block {b}, affine to node {owner}"))
            }
            (Some(b), None) => steps.push(format!("it is in block {b}, which no node owns")),
            (None, _) if in_pool => steps.push("no block holds it yet (unallocated)".into()),
            _ => {}
        }
        let borrowed_by = match (&info.node, &info.block_owner) {
            (Some(n), Some(owner)) if n != owner => {
                steps.push(format!("node {n} borrowed it and advertises it as {ip}/32"));
                Some(n.clone())
            }
            _ => None,
        };
        if info.assigned {
            steps.push(format!(
                "it is assigned to {} ({}/{})",
                info.handle.as_deref().unwrap_or("-"),
                info.namespace.as_deref().unwrap_or("-"),
                info.pod.as_deref().unwrap_or("-")
            ));
        } else if in_pool {
            steps.push("it is not assigned to anything".into());
        }

        // The kernel route: what `ip route get fibmatch` answers.
        let route = self.kernel_route(ip).await?;
        let ours = route.as_ref().and_then(|r| r.ours.clone());
        let kernel_route = ours.as_ref().and(route.as_ref()).map(|r| r.to_string());
        match &kernel_route {
            Some(r) => steps.push(format!("this node's kernel uses: {r}")),
            None => steps.push("no Gingham route covers it here: the kernel's other routes (e.g. the default route) decide".into()),
        }
        let endpoint = self
            .endpoints_of_this_node()
            .await?
            .into_iter()
            .find(|e| e.ip == ip);
        let owner_is_local =
            info.block_owner.as_deref() == Some(self.node.as_str()) || endpoint.is_some();
        if let Some(ep) = &endpoint {
            steps.push(format!(
                "it is pod {}/{} on this node, behind {} (pod side {} in {})",
                ep.namespace.as_deref().unwrap_or("-"),
                ep.pod.as_deref().unwrap_or("-"),
                ep.interface,
                ep.pod_interface,
                ep.netns
            ));
        } else if let Some(RouteTarget::Via(gw)) = ours.as_ref().map(|r| &r.target) {
            steps.push(format!(
                "packets leave through {} to {gw}, unencapsulated",
                ours.as_ref()
                    .and_then(|r| r.ifname.clone())
                    .unwrap_or_else(|| "?".into())
            ));
        } else if ours
            .as_ref()
            .is_some_and(|r| r.target == RouteTarget::Blackhole)
        {
            steps.push(
                "the block is ours but no pod holds this address: dropped by the blackhole".into(),
            );
        }
        let bgp_route = self
            .routes_view()
            .await?
            .into_iter()
            .filter(|r| r.best && r.prefix.contains(&ip))
            .max_by_key(|r| r.prefix.prefix_len());
        Ok(Trace {
            ip,
            in_pool,
            block: info.block,
            block_owner: info.block_owner,
            owner_is_local,
            borrowed_by,
            kernel_route,
            bgp_route,
            endpoint,
            steps,
        })
    }

    pub async fn snapshot(&self) -> Snapshot {
        let status = self.speaker.status().await.ok();
        let peers = status
            .as_ref()
            .map(|s| s.peers.iter().map(peer_info).collect())
            .unwrap_or_default();
        let view = self.routing.view().await.unwrap_or_default();
        let failed_peer_routes = view
            .failed
            .iter()
            .filter(|p| !view.blocks.contains(p))
            .count() as u64;
        let peer_routes = status.map_or(0, |s| s.peer_best_routes);
        let endpoints = self
            .endpoints_of_this_node()
            .await
            .map(|e| e.len() as u64)
            .unwrap_or(0);
        Snapshot {
            node: self.node.clone(),
            peers,
            kernel_routes: peer_routes.saturating_sub(failed_peer_routes)
                + view.blackholes() as u64,
            local_blocks: view.blocks.len() as u64,
            endpoints,
            uptime_secs: self.started.elapsed().as_secs(),
        }
    }

    async fn ipam_configure(
        &self,
        strict_affinity: Option<bool>,
        max_blocks_per_node: Option<u32>,
    ) -> Result<IpamPolicy, AgentError> {
        let ipam = self.ipam.clone();
        let cfg = blocking(move || {
            let mut cfg = ipam.config()?;
            let changed = strict_affinity.is_some() || max_blocks_per_node.is_some();
            if let Some(v) = strict_affinity {
                cfg.strict_affinity = v;
            }
            if let Some(v) = max_blocks_per_node {
                cfg.max_blocks_per_host = v;
            }
            if changed {
                ipam.set_config(cfg.clone())?;
            }
            Ok(cfg)
        })
        .await?;
        Ok(IpamPolicy {
            strict_affinity: cfg.strict_affinity,
            max_blocks_per_node: cfg.block_limit(),
        })
    }

    async fn node_remove(&self, name: String) -> Result<NodeRemoved, AgentError> {
        if name == self.node {
            return Err(AgentError::RemoveSelf(name));
        }
        let (store, ipam, n) = (self.store.clone(), self.ipam.clone(), name.clone());
        let (registered, freed) = blocking(move || {
            let registered = ipam::NodeRegistry::new(store).remove(&n)?;
            let freed = ipam.release_node(&n)?;
            Ok((registered, freed))
        })
        .await?;
        tracing::info!(
            "node {name} removed: {} addresses and {} blocks freed",
            freed.addresses.len(),
            freed.blocks.len()
        );
        Ok(NodeRemoved {
            name,
            registered,
            addresses: freed.addresses,
            blocks: freed.blocks,
        })
    }

    async fn answer(&self, cmd: Command) -> Result<Response, AgentError> {
        Ok(match cmd {
            Command::Summary => Response::ok(&Summary {
                node: self.node.clone(),
                ip: self.ip,
                asn: self.asn,
                router_id: self.router_id,
                peers: self.peers().await?,
            }),
            Command::Peers => Response::ok(&self.peers().await?),
            Command::Routes => Response::ok(&self.routes_view().await?),
            Command::Blocks => Response::ok(&self.blocks_report().await?),
            Command::Endpoints => Response::ok(&self.endpoints_of_this_node().await?),
            Command::IpamCheck => {
                let ipam = self.ipam.clone();
                let problems = blocking(move || Ok(ipam.check()?)).await?;
                Response::ok(&IpamReport {
                    problems: problems.iter().map(|p| p.to_string()).collect(),
                    fixed: vec![],
                })
            }
            Command::IpamRepair => {
                let ipam = self.ipam.clone();
                let (problems, report) =
                    blocking(move || Ok((ipam.check()?, ipam.repair()?))).await?;
                self.local.nudge();
                Response::ok(&IpamReport {
                    problems: problems.iter().map(|p| p.to_string()).collect(),
                    fixed: report
                        .repaired
                        .iter()
                        .map(|r| format!("{}: {}", r.problem, r.action))
                        .collect(),
                })
            }
            Command::IpamShow { ip } => Response::ok(&self.ip_info(ip).await?),
            Command::IpamConfigure {
                strict_affinity,
                max_blocks_per_node,
            } => Response::ok(
                &self
                    .ipam_configure(strict_affinity, max_blocks_per_node)
                    .await?,
            ),
            Command::IpamAssign { handle, .. } => {
                let ip = self.assign(&handle, None, None).await?;
                Response::ok(&Assignment {
                    handle,
                    ip: Some(ip),
                })
            }
            Command::IpamRelease { handle } => {
                let released = self.release(&handle).await?;
                Response::ok(&Assignment {
                    handle,
                    ip: released.first().copied(),
                })
            }
            Command::Trace { ip } => Response::ok(&self.trace(ip).await?),
            Command::NodeRemove { name } => Response::ok(&self.node_remove(name).await?),
            Command::EndpointAssign {
                container_id,
                pod,
                namespace,
            } => Response::ok(&self.endpoint_assign(&container_id, pod, namespace).await?),
            Command::EndpointAttach(ep) => Response::ok(&self.endpoint_attach(ep).await?),
            Command::EndpointRelease { container_id } => {
                Response::ok(&self.endpoint_release(&container_id).await?)
            }
            Command::EndpointCheck { container_id } => {
                Response::ok(&self.endpoint_check(&container_id).await?)
            }
        })
    }
}
