//! [`KernelRoutes`]: the agent's writer and reader of the main routing table.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use rtnetlink::proto::{ConnectionHandle, ReplyExpectation};
use rtnetlink::sys::{protocols::NETLINK_ROUTE, SocketAddr};

use super::message::{self, ParsedRoute};
use super::{
    BirdTarget, DesiredRoute, InstalledRoute, Kernel, KernelError, KernelRoute, OwnedTable,
    ReconcileReport, RouteOp, RouteTarget, BATCH_SIZE,
};

const ESRCH: i32 = libc::ESRCH;
const ENOENT: i32 = libc::ENOENT;
const EEXIST: i32 = libc::EEXIST;
/// Room for the errors of a fully failing batch (each echoes its request and costs ~1 kB of
/// socket buffer); forced past rmem_max when we are root.
const RECV_BUFFER: usize = 8 * 1024 * 1024;

type Unsolicited = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// A netlink route socket in the namespace of the thread that called [`KernelRoutes::new`].
///
/// Methods take `&mut self` because replies to a batch are matched to its requests by sequence
/// number. The agent's routing owner (`daemon/routing.rs`) keeps the one that writes; readers
/// (trace, CNI CHECK) open their own.
pub struct KernelRoutes {
    handle: ConnectionHandle<RouteNetlinkMessage>,
    unsolicited: Unsolicited,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for KernelRoutes {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// A message of a batch and the errnos that count as success for it.
struct Outgoing {
    message: NetlinkMessage<RouteNetlinkMessage>,
    ok_errnos: &'static [i32],
}

impl KernelRoutes {
    /// Opens the socket and spawns its connection task on the current tokio runtime.
    pub fn new() -> Result<Self, KernelError> {
        let (mut conn, handle, unsolicited) =
            rtnetlink::proto::new_connection::<RouteNetlinkMessage>(NETLINK_ROUTE)
                .map_err(|e| KernelError::Socket(e.to_string()))?;
        set_receive_buffer(rtnetlink::sys::AsyncSocket::socket_ref(conn.socket_mut()));
        let connection = tokio::spawn(conn);
        Ok(KernelRoutes {
            handle,
            unsolicited,
            connection,
        })
    }

    /// `<prefix> via <gateway> proto bird`, replacing our route at `prefix` in place. A route
    /// at `prefix` that the agent did not make stays, and this fails with `NotOurs`.
    pub async fn replace_via(
        &mut self,
        prefix: Ipv4Net,
        gateway: Ipv4Addr,
    ) -> Result<(), KernelError> {
        self.one(RouteOp::Replace(DesiredRoute::via(prefix, gateway)))
            .await
    }

    /// `blackhole <prefix> proto bird` (replacing ours in place, never another's). The caller
    /// skips /32 blocks: a /32
    /// blackhole would take the place of the pod's host route.
    pub async fn add_blackhole(&mut self, prefix: Ipv4Net) -> Result<(), KernelError> {
        self.one(RouteOp::Replace(DesiredRoute::blackhole(prefix)))
            .await
    }

    /// `<ip> dev <ifname> scope link`, the pod's host route. Succeeds if it is already there on
    /// the same device; fails with [`KernelError::RouteExists`] if another route holds the
    /// address (Calico's "already exists for an interface other than" error).
    pub async fn add_host_route(&mut self, ip: Ipv4Addr, ifname: &str) -> Result<(), KernelError> {
        let route = DesiredRoute::host(ip, ifname);
        match self.one(RouteOp::Add(route.clone())).await {
            Err(e) if e.errno() == Some(EEXIST) => {}
            other => return other,
        }
        let existing = self
            .list_all()
            .await?
            .into_iter()
            .find(|r| r.prefix == route.prefix && r.metric == 0);
        let names = self.link_names().await?;
        let other = match existing {
            Some(r)
                if r.gateway.is_none()
                    && r.kind == netlink_packet_route::route::RouteType::Unicast =>
            {
                let name = r.oif.and_then(|i| names.get(&i).cloned());
                if name.as_deref() == Some(ifname) {
                    return Ok(());
                }
                name.unwrap_or_else(|| "?".into())
            }
            Some(r) => format!("{:?} route, proto {}", r.kind, r.protocol),
            // Gone again in between: try once more.
            None => return self.one(RouteOp::Add(route)).await,
        };
        Err(KernelError::RouteExists {
            prefix: route.prefix,
            wanted: ifname.to_string(),
            other,
        })
    }

    /// Deletes the `proto bird` route (via or blackhole) at `prefix`. Already gone is success;
    /// routes of other protocols at the same prefix are left alone.
    pub async fn delete(&mut self, prefix: Ipv4Net) -> Result<(), KernelError> {
        self.one(RouteOp::Remove(prefix)).await
    }

    /// Deletes the host route `<ip> dev <ifname>`; already gone (or the device gone) is success.
    pub async fn delete_host_route(
        &mut self,
        ip: Ipv4Addr,
        ifname: &str,
    ) -> Result<(), KernelError> {
        match self
            .one(RouteOp::Delete(DesiredRoute::host(ip, ifname)))
            .await
        {
            Err(KernelError::NoSuchInterface(_)) => Ok(()),
            other => other,
        }
    }

    /// Every route of ours in the main table: `proto bird` via and blackhole routes, and host
    /// routes on cali devices.
    pub async fn list_owned(&mut self) -> Result<Vec<InstalledRoute>, KernelError> {
        let names = self.link_names().await?;
        let all = self.list_all().await?;
        Ok(all
            .iter()
            .filter_map(|r| message::owned(r, &names))
            .collect())
    }

    /// Brings the kernel to `desired`: adds what is missing, replaces what differs, deletes our
    /// routes that are not desired, and touches nothing else. A prefix held by a route that is
    /// not ours is not overwritten: that add fails and is listed in `failed`. If `desired` holds
    /// a prefix twice, the last entry wins.
    pub async fn reconcile(
        &mut self,
        desired: &[DesiredRoute],
    ) -> Result<ReconcileReport, KernelError> {
        let installed = self.list_owned().await?;
        let plan = plan(desired, &installed);
        let errs = self.apply(&plan.ops).await?;
        let mut report = ReconcileReport {
            unchanged: plan.unchanged,
            ..Default::default()
        };
        for (op, err) in plan.ops.into_iter().zip(errs) {
            match (err, &op) {
                (Some(e), _) => report.failed.push((op, e)),
                (None, RouteOp::Add(_)) => report.added += 1,
                (None, RouteOp::Replace(_)) => report.replaced += 1,
                (None, RouteOp::Delete(_) | RouteOp::Remove(_)) => report.removed += 1,
            }
        }
        Ok(report)
    }

    /// Applies `ops` in batches of [`BATCH_SIZE`]; returns one result per op, `None` for
    /// success. A delete of something already gone is a success.
    pub async fn apply(
        &mut self,
        ops: &[RouteOp],
    ) -> Result<Vec<Option<KernelError>>, KernelError> {
        let needs_links = ops.iter().any(|op| {
            matches!(
                op,
                RouteOp::Add(r) | RouteOp::Replace(r) | RouteOp::Delete(r)
                    if matches!(r.target, RouteTarget::Device(_))
            )
        });
        let ifindex: HashMap<String, u32> = if needs_links {
            self.link_names()
                .await?
                .into_iter()
                .map(|(i, n)| (n, i))
                .collect()
        } else {
            HashMap::new()
        };
        let mut results: Vec<Option<KernelError>> = Vec::with_capacity(ops.len());
        for chunk in ops.chunks(BATCH_SIZE) {
            // Ops that cannot even be encoded (a missing device) fail alone; the rest go out.
            let mut slots = Vec::with_capacity(chunk.len());
            let mut batch = Vec::with_capacity(chunk.len());
            for op in chunk {
                match encode(op, &ifindex) {
                    Ok(out) => {
                        slots.push(Ok(batch.len()));
                        batch.push(out);
                    }
                    Err(e) => slots.push(Err(e)),
                }
            }
            let errnos = self.send_batch(batch).await?;
            // A replace went out as an exclusive add; where a route was already there, it is
            // replaced only if it is ours.
            let taken: Vec<&DesiredRoute> = chunk
                .iter()
                .zip(&slots)
                .filter_map(|(op, slot)| match (op, slot) {
                    (RouteOp::Replace(r), Ok(i)) if errnos[*i] == Some(EEXIST) => Some(r),
                    _ => None,
                })
                .collect();
            let mut second = self.replace_ours(&taken, &ifindex).await?.into_iter();
            for (op, slot) in chunk.iter().zip(slots) {
                results.push(match slot {
                    Err(KernelError::NoSuchInterface(_)) if matches!(op, RouteOp::Delete(_)) => {
                        None
                    }
                    Err(e) => Some(e),
                    Ok(i) if matches!(op, RouteOp::Replace(_)) && errnos[i] == Some(EEXIST) => {
                        second.next().flatten()
                    }
                    Ok(i) => errnos[i].map(|errno| KernelError::netlink(describe(op), errno)),
                });
            }
        }
        Ok(results)
    }

    /// Replaces the routes at the prefixes of `routes` that are ours, in place; a prefix held
    /// by anyone else's route (another protocol, a metric-0 static route, a route on a device
    /// that is not a pod's) is refused with [`KernelError::NotOurs`]. One dump answers for the
    /// whole batch: this runs only when a replace met an existing route.
    async fn replace_ours(
        &mut self,
        routes: &[&DesiredRoute],
        ifindex: &HashMap<String, u32>,
    ) -> Result<Vec<Option<KernelError>>, KernelError> {
        if routes.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: std::collections::HashSet<Ipv4Net> = routes.iter().map(|r| r.prefix).collect();
        // NLM_F_REPLACE takes the first route of the prefix at metric 0: that is the one to judge.
        let mut first: HashMap<Ipv4Net, ParsedRoute> = HashMap::new();
        self.each_route(|r| {
            if r.metric == 0 && wanted.contains(&r.prefix) {
                first.entry(r.prefix).or_insert(r);
            }
        })
        .await?;
        let names = self.link_names().await?;
        let mut verdicts: Vec<Option<KernelError>> = Vec::with_capacity(routes.len());
        let mut batch = Vec::new();
        let mut sent = Vec::new();
        for r in routes {
            match first.get(&r.prefix) {
                Some(holder) if message::owned(holder, &names).is_none() => {
                    verdicts.push(Some(KernelError::NotOurs {
                        prefix: r.prefix,
                        wanted: r.to_string(),
                        holder: holder.describe(&names),
                    }))
                }
                // Ours, or gone in between (then the replace creates it).
                _ => match encode_replace(r, ifindex) {
                    Ok(out) => {
                        sent.push(verdicts.len());
                        verdicts.push(None);
                        batch.push(out);
                    }
                    Err(e) => verdicts.push(Some(e)),
                },
            }
        }
        let errnos = self.send_batch(batch).await?;
        for (slot, errno) in sent.into_iter().zip(errnos) {
            verdicts[slot] =
                errno.map(|e| KernelError::netlink(format!("replace {}", routes[slot]), e));
        }
        Ok(verdicts)
    }

    async fn one(&mut self, op: RouteOp) -> Result<(), KernelError> {
        match self.apply(std::slice::from_ref(&op)).await?.pop().flatten() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends `batch` as one datagram with no acks asked, then a request that is always answered
    /// (get link 1, `lo`). Returns the errno of each message, `None` when it succeeded.
    async fn send_batch(&mut self, batch: Vec<Outgoing>) -> Result<Vec<Option<i32>>, KernelError> {
        let n = batch.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        // Left-over replies from an earlier, abandoned batch must not be taken for ours.
        while self.unsolicited.try_recv().is_ok() {}
        let ok: Vec<&'static [i32]> = batch.iter().map(|o| o.ok_errnos).collect();
        let mut lo = LinkMessage::default();
        lo.header.index = 1;
        let sentinel = request(RouteNetlinkMessage::GetLink(lo), 0);
        let messages = batch
            .into_iter()
            .map(|o| (o.message, ReplyExpectation::NotExpected))
            .chain(std::iter::once((sentinel, ReplyExpectation::Expected)));
        let mut replies = self
            .handle
            .request_batch_with_expectation(messages, SocketAddr::new(0, 0))
            .map_err(|_| KernelError::ConnectionClosed)?;
        let mut sentinel_seq = None;
        while let Some(reply) = replies.next().await {
            sentinel_seq = Some(reply.header.sequence_number);
        }
        let sentinel_seq = sentinel_seq.ok_or(KernelError::ConnectionClosed)?;
        // Batch messages carry the n sequence numbers just before the sentinel's.
        let first = sentinel_seq.wrapping_sub(n as u32);
        let mut errnos = vec![None; n];
        while let Ok((msg, _)) = self.unsolicited.try_recv() {
            match msg.payload {
                NetlinkPayload::Error(e) => {
                    let index = msg.header.sequence_number.wrapping_sub(first) as usize;
                    if let (Some(code), true) = (e.code, index < n) {
                        let errno = -code.get();
                        if !ok[index].contains(&errno) {
                            errnos[index] = Some(errno);
                        }
                    }
                }
                NetlinkPayload::Overrun(_) => return Err(KernelError::Overrun),
                _ => {}
            }
        }
        Ok(errnos)
    }

    /// Every IPv4 route of the main table.
    pub(crate) async fn list_all(&mut self) -> Result<Vec<ParsedRoute>, KernelError> {
        let mut out = Vec::new();
        self.each_route(|r| out.push(r)).await?;
        Ok(out)
    }

    /// Calls `f` with every IPv4 route of the main table as the dump streams in, so a large
    /// table is never held twice.
    async fn each_route(&mut self, mut f: impl FnMut(ParsedRoute)) -> Result<(), KernelError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let req = request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP);
        let mut replies = self
            .handle
            .request(req, SocketAddr::new(0, 0))
            .map_err(|_| KernelError::ConnectionClosed)?;
        while let Some(reply) = replies.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                    if let Some(p) = message::parse(&r) {
                        f(p);
                    }
                }
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    let errno = -e.code.map(|c| c.get()).unwrap_or(0);
                    return Err(KernelError::netlink("dump routes", errno));
                }
                NetlinkPayload::Overrun(_) => return Err(KernelError::Overrun),
                _ => {}
            }
        }
        Ok(())
    }

    /// Our routes, compactly: `proto bird` routes sorted by prefix and pod host routes.
    pub async fn owned_table(&mut self) -> Result<OwnedTable, KernelError> {
        let names = self.link_names().await?;
        let mut table = OwnedTable::default();
        self.each_route(|r| match message::owned(&r, &names) {
            Some(InstalledRoute {
                prefix,
                target: RouteTarget::Via(gw),
                ..
            }) => table.bird.push((prefix, BirdTarget::Via(gw))),
            Some(InstalledRoute {
                prefix,
                target: RouteTarget::Blackhole,
                ..
            }) => table.bird.push((prefix, BirdTarget::Blackhole)),
            Some(InstalledRoute {
                prefix,
                target: RouteTarget::Device(dev),
                ..
            }) if prefix.prefix_len() == 32 => table.hosts.push((prefix.addr(), dev)),
            _ => {}
        })
        .await?;
        table.bird.sort_unstable();
        Ok(table)
    }

    /// The route the kernel uses for `ip` (`ip route get fibmatch <ip>`): the matching entry of
    /// the main table with its own prefix, whoever made it. `None` when nothing matches.
    pub async fn lookup(&mut self, ip: Ipv4Addr) -> Result<Option<KernelRoute>, KernelError> {
        use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteFlags};
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 32;
        msg.header.flags = RouteFlags::FibMatch;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(ip)));
        let req = request(RouteNetlinkMessage::GetRoute(msg), 0);
        let mut replies = self
            .handle
            .request(req, SocketAddr::new(0, 0))
            .map_err(|_| KernelError::ConnectionClosed)?;
        let mut found = None;
        while let Some(reply) = replies.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                    found = message::parse(&r);
                }
                // ENETUNREACH / EHOSTUNREACH: no route at all.
                NetlinkPayload::Error(e) if e.code.is_some() => return Ok(None),
                _ => {}
            }
        }
        let Some(route) = found else {
            return Ok(None);
        };
        let names = self.link_names().await?;
        Ok(Some(KernelRoute {
            ours: message::owned(&route, &names),
            device: route.oif.and_then(|i| names.get(&i).cloned()),
            route,
        }))
    }

    /// ifindex → name of every interface in the namespace.
    pub(crate) async fn link_names(&mut self) -> Result<HashMap<u32, String>, KernelError> {
        let req = request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        );
        let mut replies = self
            .handle
            .request(req, SocketAddr::new(0, 0))
            .map_err(|_| KernelError::ConnectionClosed)?;
        let mut out = HashMap::new();
        while let Some(reply) = replies.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    for attr in &link.attributes {
                        if let LinkAttribute::IfName(name) = attr {
                            out.insert(link.header.index, name.clone());
                        }
                    }
                }
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    let errno = -e.code.map(|c| c.get()).unwrap_or(0);
                    return Err(KernelError::netlink("dump links", errno));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

impl Kernel for KernelRoutes {
    async fn apply(&mut self, ops: &[RouteOp]) -> Result<Vec<Option<KernelError>>, KernelError> {
        KernelRoutes::apply(self, ops).await
    }
    async fn owned_table(&mut self) -> Result<OwnedTable, KernelError> {
        KernelRoutes::owned_table(self).await
    }
    async fn add_host_route(&mut self, ip: Ipv4Addr, ifname: &str) -> Result<(), KernelError> {
        KernelRoutes::add_host_route(self, ip, ifname).await
    }
    async fn delete_host_route(&mut self, ip: Ipv4Addr, ifname: &str) -> Result<(), KernelError> {
        KernelRoutes::delete_host_route(self, ip, ifname).await
    }
    async fn interface_names(&mut self) -> Result<std::collections::HashSet<String>, KernelError> {
        Ok(self.link_names().await?.into_values().collect())
    }
}

fn request(payload: RouteNetlinkMessage, extra_flags: u16) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut msg = NetlinkMessage::from(payload);
    msg.header.flags = NLM_F_REQUEST | extra_flags;
    msg
}

fn encode(op: &RouteOp, ifindex: &HashMap<String, u32>) -> Result<Outgoing, KernelError> {
    Ok(match op {
        RouteOp::Add(r) => Outgoing {
            message: request(
                RouteNetlinkMessage::NewRoute(message::new_route(r, ifindex)?),
                NLM_F_CREATE | NLM_F_EXCL,
            ),
            ok_errnos: &[],
        },
        // First as an exclusive add: a replace must never take a route that is not ours, and
        // NLM_F_REPLACE does not look at the protocol. `apply` finishes the EEXIST cases.
        RouteOp::Replace(r) => Outgoing {
            message: request(
                RouteNetlinkMessage::NewRoute(message::new_route(r, ifindex)?),
                NLM_F_CREATE | NLM_F_EXCL,
            ),
            ok_errnos: &[],
        },
        RouteOp::Delete(r) => Outgoing {
            message: request(
                RouteNetlinkMessage::DelRoute(message::del_route(r, ifindex)?),
                0,
            ),
            ok_errnos: &[ESRCH, ENOENT],
        },
        RouteOp::Remove(prefix) => Outgoing {
            message: request(
                RouteNetlinkMessage::DelRoute(message::del_bird_prefix(*prefix)),
                0,
            ),
            ok_errnos: &[ESRCH, ENOENT],
        },
    })
}

/// The in-place replace of a route already judged ours.
fn encode_replace(
    r: &DesiredRoute,
    ifindex: &HashMap<String, u32>,
) -> Result<Outgoing, KernelError> {
    Ok(Outgoing {
        message: request(
            RouteNetlinkMessage::NewRoute(message::new_route(r, ifindex)?),
            NLM_F_CREATE | NLM_F_REPLACE,
        ),
        ok_errnos: &[],
    })
}

fn describe(op: &RouteOp) -> String {
    match op {
        RouteOp::Add(r) => format!("add {r}"),
        RouteOp::Replace(r) => format!("replace {r}"),
        RouteOp::Delete(r) => format!("delete {r}"),
        RouteOp::Remove(p) => format!("delete {p} proto bird"),
    }
}

/// The changes that take `installed` to `desired`.
pub(crate) struct Plan {
    pub ops: Vec<RouteOp>,
    pub unchanged: usize,
}

pub(crate) fn plan(desired: &[DesiredRoute], installed: &[InstalledRoute]) -> Plan {
    let wanted: HashMap<Ipv4Net, &DesiredRoute> = desired.iter().map(|d| (d.prefix, d)).collect();
    let mut have: HashMap<Ipv4Net, Vec<&InstalledRoute>> = HashMap::new();
    for r in installed {
        have.entry(r.prefix).or_default().push(r);
    }
    let mut ops = Vec::new();
    let mut unchanged = 0;
    // Iterate `desired` (not the map) so the order of changes follows the caller's; an entry
    // overridden by a later one for the same prefix is skipped.
    for d in desired {
        if !std::ptr::eq(wanted[&d.prefix], d) {
            continue;
        }
        match have.get(&d.prefix) {
            None => ops.push(RouteOp::Add(d.clone())),
            Some(routes) => {
                if routes.iter().any(|r| r.target == d.target) {
                    unchanged += 1;
                    // Extra routes of ours at the same prefix (e.g. appended by hand) go.
                    for r in routes.iter().filter(|r| r.target != d.target) {
                        ops.push(RouteOp::Delete(r.desired()));
                    }
                } else {
                    ops.push(RouteOp::Replace(d.clone()));
                }
            }
        }
    }
    for r in installed {
        if !wanted.contains_key(&r.prefix) {
            ops.push(RouteOp::Delete(r.desired()));
        }
    }
    Plan { ops, unchanged }
}

/// Raises the socket's receive buffer so that the errors of a failing batch are not dropped.
fn set_receive_buffer(fd: &impl std::os::fd::AsFd) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(fd, sockopt::RcvBufForce, &RECV_BUFFER).is_err() {
        // Not root: take what rmem_max allows. Overruns are still detected and reported.
        let _ = setsockopt(fd, sockopt::RcvBuf, &RECV_BUFFER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(prefix: &str, target: RouteTarget) -> InstalledRoute {
        InstalledRoute {
            prefix: prefix.parse().unwrap(),
            target,
            ifindex: None,
            ifname: None,
            protocol: 12,
        }
    }

    #[test]
    fn plan_adds_replaces_removes_and_keeps() {
        let gw = |s: &str| RouteTarget::Via(s.parse().unwrap());
        let have = vec![
            installed("10.0.0.0/26", gw("172.18.0.8")),
            installed("10.0.1.0/26", gw("172.18.0.8")),
            installed("10.0.2.0/26", RouteTarget::Blackhole),
        ];
        let want = vec![
            DesiredRoute::via(
                "10.0.0.0/26".parse().unwrap(),
                "172.18.0.8".parse().unwrap(),
            ),
            DesiredRoute::via(
                "10.0.1.0/26".parse().unwrap(),
                "172.18.0.9".parse().unwrap(),
            ),
            DesiredRoute::blackhole("10.0.3.0/26".parse().unwrap()),
        ];
        let p = plan(&want, &have);
        assert_eq!(p.unchanged, 1);
        assert!(p.ops.contains(&RouteOp::Replace(want[1].clone())));
        assert!(p.ops.contains(&RouteOp::Add(want[2].clone())));
        assert!(p.ops.contains(&RouteOp::Delete(DesiredRoute::blackhole(
            "10.0.2.0/26".parse().unwrap()
        ))));
        assert_eq!(p.ops.len(), 3);
    }

    #[test]
    fn plan_last_duplicate_wins() {
        let a = DesiredRoute::via("10.0.0.0/26".parse().unwrap(), "1.1.1.1".parse().unwrap());
        let b = DesiredRoute::blackhole("10.0.0.0/26".parse().unwrap());
        let p = plan(&[a, b.clone()], &[]);
        assert_eq!(p.ops, vec![RouteOp::Add(b)]);
    }
}
