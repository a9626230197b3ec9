//! The local task: reads this node's blocks and borrowed addresses from IPAM and hands them to
//! the routing owner, which announces and blackholes them.
//!
//! It runs when asked (after an assignment or a release, so a new block is announced before
//! the pod's first packet needs the return route) and on a timer that catches changes made by
//! others (a repair run elsewhere). The timer reads only this node's affinities; borrowed
//! addresses, which take a read of every block in the pool, are read when asked and every
//! [`BORROWED_EVERY`], so an idle mesh of 250 nodes does not read 250 blocks per node every
//! few seconds. Reading IPAM is blocking work and may be slow; doing it here keeps the routing
//! owner free for the kernel. One task does all reads, so the owner never gets an older
//! snapshot after a newer one.

use super::error::AgentError;
use super::routing::RoutingHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How often this node's blocks are read when nobody asks.
pub const POLL_EVERY: Duration = Duration::from_secs(30);
/// How often the addresses this node borrowed are read when nobody asks: only another node's
/// repair or removal changes them behind our back.
pub const BORROWED_EVERY: Duration = Duration::from_secs(600);

/// Asks the local task to read IPAM now.
#[derive(Debug, Clone)]
pub struct LocalHandle {
    tx: mpsc::Sender<oneshot::Sender<()>>,
}

impl LocalHandle {
    /// Re-reads IPAM and returns once the routing owner has made the announcements.
    pub async fn refresh(&self) -> Result<(), AgentError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(done)
            .await
            .map_err(|_| AgentError::TaskEnded {
                task: "local",
                reason: None,
            })?;
        rx.await.map_err(|_| AgentError::TaskEnded {
            task: "local",
            reason: None,
        })
    }

    /// Asks for a re-read without waiting for it.
    pub fn nudge(&self) {
        let (done, _) = oneshot::channel();
        let _ = self.tx.try_send(done);
    }
}

pub fn channel() -> (LocalHandle, mpsc::Receiver<oneshot::Sender<()>>) {
    let (tx, rx) = mpsc::channel(64);
    (LocalHandle { tx }, rx)
}

pub async fn run(
    ipam: Arc<ipam::Ipam>,
    node: String,
    routing: RoutingHandle,
    mut requests: mpsc::Receiver<oneshot::Sender<()>>,
    every: Duration,
) -> Result<(), AgentError> {
    let mut failing = false;
    let mut borrowed: Option<(Vec<std::net::Ipv4Addr>, std::time::Instant)> = None;
    loop {
        let mut waiting = Vec::new();
        tokio::select! {
            r = requests.recv() => match r {
                Some(done) => waiting.push(done),
                None => return Ok(()),
            },
            _ = tokio::time::sleep(every) => {}
        }
        // Everyone who asked meanwhile is served by this one read.
        while let Ok(done) = requests.try_recv() {
            waiting.push(done);
        }
        let (ipam, n) = (ipam.clone(), node.clone());
        // Asked for: something changed here, so read it all. On the timer, the borrowed
        // addresses only when they are due.
        let known = borrowed
            .as_ref()
            .filter(|(_, at)| waiting.is_empty() && at.elapsed() < BORROWED_EVERY)
            .map(|(b, _)| b.clone());
        let read = tokio::task::spawn_blocking(move || {
            let blocks = ipam.node_blocks(&n)?;
            let fresh = match known {
                Some(b) => (b, false),
                None => (ipam.borrowed(&n)?, true),
            };
            Ok::<_, ipam::IpamError>((blocks, fresh))
        })
        .await?;
        match read {
            Ok((blocks, (lent, fresh))) => {
                if failing {
                    tracing::info!("IPAM: this node's blocks can be read again");
                    failing = false;
                }
                if fresh {
                    borrowed = Some((lent.clone(), std::time::Instant::now()));
                }
                routing.set_local(blocks, lent).await?;
            }
            // Keep what was announced: a datastore that does not answer must not take the
            // node's routes away. Said once per outage, not once per poll.
            Err(e) if !failing => {
                tracing::warn!(
                    "IPAM: cannot read this node's blocks (keeping what is announced): {e}"
                );
                failing = true;
            }
            Err(_) => {}
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}
