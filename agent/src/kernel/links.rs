//! Link events: which interfaces came up. When a link goes down the kernel drops every route
//! through it, ours included, without telling the agent; when it comes back the agent puts
//! them back at once instead of waiting for its periodic repair.

use std::collections::HashMap;

use futures::StreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, AsyncSocket, SocketAddr};
use tokio::sync::mpsc;

use super::{is_cali, KernelError};

/// rtnetlink's multicast group of link changes.
const RTMGRP_LINK: u32 = 1;

/// Sends the name of every non-pod interface that becomes usable (up and running) in the
/// namespace of the calling thread. A full channel drops the event: one pending is enough to
/// make the owner look. Must be called inside a tokio runtime.
pub fn watch_links_up(tx: mpsc::Sender<String>) -> Result<(), KernelError> {
    let (mut conn, _handle, mut messages) =
        rtnetlink::proto::new_connection::<RouteNetlinkMessage>(NETLINK_ROUTE)
            .map_err(|e| KernelError::Socket(e.to_string()))?;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_LINK))
        .map_err(|e| KernelError::Socket(format!("cannot join the link group: {e}")))?;
    let connection = tokio::spawn(conn);
    tokio::spawn(async move {
        let mut usable: HashMap<u32, bool> = HashMap::new();
        while let Some((msg, _)) = messages.next().await {
            let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) = msg.payload
            else {
                continue;
            };
            let now = is_usable(&link);
            let was = usable.insert(link.header.index, now);
            if now && was != Some(true) {
                if let Some(name) = name(&link).filter(|n| !is_cali(n)) {
                    let _ = tx.try_send(name);
                }
            }
            if tx.is_closed() {
                break;
            }
        }
        connection.abort();
    });
    Ok(())
}

fn is_usable(link: &LinkMessage) -> bool {
    link.header
        .flags
        .contains(LinkFlags::Up | LinkFlags::Running)
}

fn name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}
