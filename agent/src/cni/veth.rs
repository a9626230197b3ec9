//! The kernel [`Dataplane`]: the pod's veth pair over rtnetlink. The plugin process runs in the
//! node's namespace; the pod end is created directly inside the pod's namespace (the veth peer
//! carries the namespace fd), so its name never collides with a host interface and no rename is
//! needed. Work inside the pod uses [`crate::netns::run_in_netns`].

use super::plugin::{Dataplane, DataplaneError, VethSpec};
use super::result::GATEWAY;
use crate::netns::{run_in_netns, NetnsError};
use crate::sysctl::{configure_cali_interface, SysctlError};
use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteScope};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

/// Calico's fixed host-side MAC: every pod sees the same gateway MAC, so a pod's ARP cache
/// stays valid when its veth is re-created.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
const ENODEV: i32 = libc::ENODEV;

#[derive(Debug, thiserror::Error)]
pub enum VethError {
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        source: rtnetlink::Error,
    },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error("cannot open pod namespace {path}: {source}")]
    OpenNetns {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start a netlink runtime: {0}")]
    Runtime(std::io::Error),
    /// CHECK found something missing or different.
    #[error("{0}")]
    Mismatch(String),
}

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> VethError {
    let op = op.into();
    move |source| VethError::Netlink { op, source }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Runs `f` with a netlink handle in the calling thread's namespace (the node's).
fn in_node<T, Fut>(f: impl FnOnce(Handle) -> Fut) -> Result<T, VethError>
where
    Fut: Future<Output = Result<T, VethError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(VethError::Runtime)?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(VethError::Runtime)?;
        tokio::spawn(conn);
        f(handle).await
    })
}

/// Runs `f` with a netlink handle inside the namespace at `path`.
fn in_netns<T, Fut>(
    path: &str,
    f: impl FnOnce(Handle) -> Fut + Send + 'static,
) -> Result<T, VethError>
where
    Fut: Future<Output = Result<T, VethError>>,
    T: Send + 'static,
{
    run_in_netns(path, move || async move {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(VethError::Runtime)?;
        tokio::spawn(conn);
        f(handle).await
    })?
}

/// The link called `name`: `None` when there is none.
async fn link_by_name(
    handle: &Handle,
    name: &str,
) -> Result<Option<netlink_packet_route::link::LinkMessage>, VethError> {
    match handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("looking up {name}"))(e)),
    }
}

async fn delete_by_name(handle: &Handle, name: &str) -> Result<(), VethError> {
    if let Some(link) = link_by_name(handle, name).await? {
        match handle.link().del(link.header.index).execute().await {
            // Gone in between (its peer's namespace went away): that is what we wanted.
            Err(e) if errno(&e) == Some(ENODEV) => {}
            other => other.map_err(nl(format!("deleting {name}")))?,
        }
    }
    Ok(())
}

fn mac_of(link: &netlink_packet_route::link::LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(
                mac.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// Configures the pod end: up, the /32, the on-link route to the gateway, the default route.
async fn configure_pod(handle: Handle, ifname: String, ip: Ipv4Addr) -> Result<String, VethError> {
    let link = link_by_name(&handle, &ifname)
        .await?
        .ok_or_else(|| VethError::Mismatch(format!("{ifname} did not appear in the pod")))?;
    let index = link.header.index;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("setting {ifname} up")))?;
    handle
        .address()
        .add(index, IpAddr::V4(ip), 32)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("adding {ip}/32 to {ifname}")))?;
    // The gateway is on-link although no prefix covers it: the host end answers its ARP.
    let onlink = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(GATEWAY, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .build();
    handle
        .route()
        .add(onlink)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("adding {GATEWAY} dev {ifname} scope link")))?;
    let default = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(GATEWAY)
        .output_interface(index)
        .build();
    handle
        .route()
        .add(default)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("adding default via {GATEWAY} dev {ifname}")))?;
    Ok(mac_of(&link))
}

/// The pod side as CHECK expects it.
async fn check_pod(handle: Handle, ifname: String, ip: Ipv4Addr) -> Result<(), VethError> {
    let link = link_by_name(&handle, &ifname)
        .await?
        .ok_or_else(|| VethError::Mismatch(format!("no interface {ifname} in the pod")))?;
    let index = link.header.index;
    if !link.header.flags.contains(LinkFlags::Up) {
        return Err(VethError::Mismatch(format!("{ifname} is down in the pod")));
    }
    let addrs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing pod addresses"))?;
    let has_ip = addrs.iter().any(|a| {
        a.header.prefix_len == 32
            && a.attributes
                .iter()
                .any(|at| matches!(at, AddressAttribute::Address(IpAddr::V4(x)) if *x == ip))
    });
    if !has_ip {
        return Err(VethError::Mismatch(format!(
            "{ifname} does not hold {ip}/32"
        )));
    }
    let routes: Vec<_> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing pod routes"))?;
    let attr_ip = |r: &netlink_packet_route::route::RouteMessage, want_gw: bool| {
        r.attributes.iter().find_map(|a| match (a, want_gw) {
            (RouteAttribute::Gateway(RouteAddress::Inet(x)), true) => Some(*x),
            (RouteAttribute::Destination(RouteAddress::Inet(x)), false) => Some(*x),
            _ => None,
        })
    };
    let on_if = |r: &netlink_packet_route::route::RouteMessage| {
        r.attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index))
    };
    let onlink = routes.iter().any(|r| {
        on_if(r) && r.header.destination_prefix_length == 32 && attr_ip(r, false) == Some(GATEWAY)
    });
    let default = routes.iter().any(|r| {
        on_if(r) && r.header.destination_prefix_length == 0 && attr_ip(r, true) == Some(GATEWAY)
    });
    match (onlink, default) {
        (true, true) => Ok(()),
        (false, _) => Err(VethError::Mismatch(format!(
            "no route {GATEWAY} dev {ifname} scope link in the pod"
        ))),
        (_, false) => Err(VethError::Mismatch(format!(
            "no default via {GATEWAY} dev {ifname} in the pod"
        ))),
    }
}

/// The veth dataplane the `gingham-cni` binary uses.
pub struct KernelDataplane;

impl KernelDataplane {
    fn create_veth(spec: &VethSpec) -> Result<(String, String), VethError> {
        let pod_ns = File::open(&spec.netns).map_err(|source| VethError::OpenNetns {
            path: spec.netns.clone(),
            source,
        })?;
        let (host, ifname, mtu) = (spec.host_ifname.clone(), spec.pod_ifname.clone(), spec.mtu);
        in_node(|handle| async move {
            // A repeated ADD (or one after a crash) finds the old pair: replace it. Deleting the
            // host end deletes the old pod end with it.
            delete_by_name(&handle, &host).await?;
            let peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(ifname.clone())
                .mtu(mtu)
                .setns_by_fd(pod_ns.as_raw_fd())
                .build();
            let pair = LinkVeth::new(&host, &ifname)
                .mtu(mtu)
                .address(HOST_MAC.to_vec())
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .up()
                .build();
            handle.link().add(pair).execute().await.map_err(nl(format!(
                "creating veth {host} / {ifname} in {}",
                spec.netns
            )))?;
            Ok(())
        })?;
        configure_cali_interface(&spec.host_ifname)?;
        let (ifname, ip) = (spec.pod_ifname.clone(), spec.ip);
        let pod_mac = in_netns(&spec.netns, move |handle| configure_pod(handle, ifname, ip))?;
        Ok((mac_string(&HOST_MAC), pod_mac))
    }
}

fn mac_string(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Dataplane for KernelDataplane {
    fn create(&self, spec: &VethSpec) -> Result<(String, String), DataplaneError> {
        Ok(Self::create_veth(spec)?)
    }

    fn remove_host(&self, host_ifname: &str) -> Result<(), DataplaneError> {
        let host = host_ifname.to_string();
        Ok(in_node(|handle| async move {
            delete_by_name(&handle, &host).await
        })?)
    }

    fn remove_pod(&self, netns: &str, ifname: &str) -> Result<(), DataplaneError> {
        let ifname = ifname.to_string();
        match in_netns(netns, move |handle| async move {
            delete_by_name(&handle, &ifname).await
        }) {
            // The namespace is gone, and with it the pod end and the pair.
            Err(VethError::Netns(NetnsError::Open { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(())
            }
            other => Ok(other?),
        }
    }

    fn check(&self, spec: &VethSpec) -> Result<(), DataplaneError> {
        let host = spec.host_ifname.clone();
        let up = in_node(|handle| async move {
            Ok(link_by_name(&handle, &host)
                .await?
                .map(|l| l.header.flags.contains(LinkFlags::Up)))
        })?;
        match up {
            None => return Err(format!("no host interface {}", spec.host_ifname).into()),
            Some(false) => {
                return Err(format!("host interface {} is down", spec.host_ifname).into())
            }
            Some(true) => {}
        }
        let (ifname, ip) = (spec.pod_ifname.clone(), spec.ip);
        Ok(in_netns(&spec.netns, move |handle| {
            check_pod(handle, ifname, ip)
        })?)
    }
}
