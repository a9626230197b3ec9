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
        graceful_restart: p.graceful_restart,
        end_of_rib_received: p.end_of_rib_received,
        stale_routes: p.stale_routes,
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
                stale: r.stale,
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
        let pool = self.ipam.pool().cidr;
        let in_pool = pool.contains(&ip);
        // Outside the pool (a node, a service, the internet) IPAM has nothing to say; the
        // kernel's route does.
        let info = if in_pool {
            self.ip_info(ip).await?
        } else {
            IpInfo {
                ip,
                assigned: false,
                handle: None,
                block: None,
                block_owner: None,
                node: None,
                pod: None,
                namespace: None,
            }
        };
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

        // The kernel route: what `ip route get fibmatch` answers, Gingham's or not.
        let route = self.kernel_route(ip).await?;
        let ours = route.as_ref().and_then(|r| r.ours.clone());
        let kernel_route = route.as_ref().map(|r| r.to_string());
        match (&kernel_route, &ours) {
            (Some(r), Some(_)) => steps.push(format!("this node's kernel uses: {r}")),
            (Some(r), None) => steps.push(format!(
                "no Gingham route covers it here; the kernel uses: {r}"
            )),
            (None, _) => steps.push("the kernel has no route to it here: unreachable".into()),
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
        let rejected_connections = status.as_ref().map_or(0, |s| s.rejected_connections);
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
            rejected_connections,
            unreadable_nodes: self.unreadable_nodes.borrow().len() as u64,
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

    async fn node_list(&self) -> Result<Vec<crate::control::api::NodeInfo>, AgentError> {
        let (store, ipam) = (self.store.clone(), self.ipam.clone());
        let (nodes, blocks) = blocking(move || {
            let nodes = ipam::NodeRegistry::new(store).list()?;
            let blocks = ipam.blocks()?;
            Ok((nodes, blocks))
        })
        .await?;
        let now = super::now_secs();
        Ok(nodes
            .into_iter()
            .map(|n| crate::control::api::NodeInfo {
                blocks: blocks
                    .iter()
                    .filter(|b| b.node.as_deref() == Some(n.name.as_str()))
                    .map(|b| b.cidr)
                    .collect(),
                this_node: n.name == self.node,
                heartbeat_age_secs: now.saturating_sub(n.last_heartbeat),
                name: n.name,
                ip: n.address,
                asn: n.asn,
                last_heartbeat: n.last_heartbeat,
            })
            .collect())
    }

    async fn node_remove(&self, name: String, force: bool) -> Result<NodeRemoved, AgentError> {
        if name == self.node {
            return Err(AgentError::RemoveSelf(name));
        }
        let node = self.node_list().await?.into_iter().find(|n| n.name == name);
        let (ipam, n) = (self.ipam.clone(), name.clone());
        let owns_something = blocking(move || Ok(!ipam.allocations(&n)?.is_empty())).await?;
        let Some(node) = node else {
            if owns_something {
                // Not registered but still holding addresses: freeing them is what is asked.
                return self.node_release(name, false).await;
            }
            return Err(AgentError::NoSuchNode(name));
        };
        if !force {
            if let Some(why) = self.still_running(&node).await? {
                return Err(AgentError::NodeAlive { name, why });
            }
        }
        self.node_release(name, true).await
    }

    /// Why `node`'s agent looks alive, if it does. A mesh peer's session says it best: a
    /// stopping agent sends Cease, so the session drops with it (allowed a moment to be seen).
    /// Without a session to go by (no mesh), a heartbeat younger than three periods.
    async fn still_running(
        &self,
        node: &crate::control::api::NodeInfo,
    ) -> Result<Option<String>, AgentError> {
        let addr = std::net::IpAddr::V4(node.ip);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let status = self.speaker.status().await?;
            match status.peers.iter().find(|p| p.address == addr) {
                Some(p) if p.state == bgp::fsm::State::Established => {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(Some(format!(
                            "its BGP session with this node ({}) is Established",
                            node.ip
                        )));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Some(_) => return Ok(None),
                None if node.heartbeat_age_secs < super::HEARTBEAT_STALE.as_secs() => {
                    return Ok(Some(format!(
                        "its last heartbeat was {} s ago",
                        node.heartbeat_age_secs
                    )))
                }
                None => return Ok(None),
            }
        }
    }

    /// Removes the registry record and frees the node's blocks and addresses.
    async fn node_release(
        &self,
        name: String,
        registered: bool,
    ) -> Result<NodeRemoved, AgentError> {
        let (store, ipam, n) = (self.store.clone(), self.ipam.clone(), name.clone());
        let (registered, freed) = blocking(move || {
            let removed = ipam::NodeRegistry::new(store).remove(&n)?;
            let freed = ipam.release_node(&n)?;
            Ok((removed || registered, freed))
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
                    left: vec![],
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
                    left: report
                        .left
                        .iter()
                        .map(|p| format!("{p} (left: {})", p.why_left()))
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
            Command::NodeRemove { name, force } => {
                Response::ok(&self.node_remove(name, force).await?)
            }
            Command::NodeList => Response::ok(&self.node_list().await?),
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
