//! `/metrics` (Prometheus text format), `/liveness` and `/readiness` on the metrics address.
//!
//! The server is a few lines of HTTP/1.1 over tokio: three GET paths do not earn a web framework's
//! build time. Metric names follow GoBGP's (`bgp_peer_state`, `bgp_routes_received`, ...) under a
//! `gingham_` prefix, with FRR-K8s-style session gauges.

use crate::control::api::PeerInfo;
use std::fmt::Write;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the HTTP side asks the agent for.
pub trait MetricsSource: Send + Sync + 'static {
    /// Peers and counters right now.
    fn snapshot(&self) -> Pin<Box<dyn Future<Output = Snapshot> + Send + '_>>;
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub node: String,
    pub peers: Vec<PeerInfo>,
    pub kernel_routes: u64,
    pub local_blocks: u64,
    pub endpoints: u64,
    /// Seconds since the agent started.
    pub uptime_secs: u64,
}

/// Readiness like calico-node's BIRD check: ready when there are no peers, or every configured
/// peer is Established; after `grace` from start, one Established peer is enough.
pub fn readiness(s: &Snapshot, grace: Duration) -> Result<(), String> {
    if s.peers.is_empty() {
        return Ok(());
    }
    let down: Vec<String> = s
        .peers
        .iter()
        .filter(|p| p.state != "Established")
        .map(|p| p.address.to_string())
        .collect();
    if down.is_empty() {
        return Ok(());
    }
    let any_up = down.len() < s.peers.len();
    if any_up && s.uptime_secs >= grace.as_secs() {
        return Ok(());
    }
    Err(format!("BGP not established with {}", down.join(", ")))
}

fn state_number(state: &str) -> u8 {
    // The RFC 4271 §8.2.2 order, as GoBGP numbers its session_state label values.
    match state {
        "Idle" => 0,
        "Connect" => 1,
        "Active" => 2,
        "OpenSent" => 3,
        "OpenConfirm" => 4,
        "Established" => 5,
        _ => 0,
    }
}

/// Renders the Prometheus text exposition format (version 0.0.4).
pub fn render(s: &Snapshot) -> String {
    let mut o = String::new();
    let help = |o: &mut String, name: &str, kind: &str, text: &str| {
        let _ = writeln!(o, "# HELP {name} {text}\n# TYPE {name} {kind}");
    };
    help(&mut o, "gingham_up", "gauge", "1 while the agent runs.");
    let _ = writeln!(o, "gingham_up{{node=\"{}\"}} 1", s.node);
    help(
        &mut o,
        "gingham_uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
    );
    let _ = writeln!(o, "gingham_uptime_seconds {}", s.uptime_secs);
    help(
        &mut o,
        "gingham_kernel_routes",
        "gauge",
        "Routes this agent holds in the kernel (proto bird and blackholes).",
    );
    let _ = writeln!(o, "gingham_kernel_routes {}", s.kernel_routes);
    help(
        &mut o,
        "gingham_ipam_blocks",
        "gauge",
        "IPAM blocks affine to this node.",
    );
    let _ = writeln!(o, "gingham_ipam_blocks {}", s.local_blocks);
    help(
        &mut o,
        "gingham_endpoints",
        "gauge",
        "Pods attached on this node.",
    );
    let _ = writeln!(o, "gingham_endpoints {}", s.endpoints);

    help(
        &mut o,
        "gingham_bgp_session_up",
        "gauge",
        "1 when the BGP session is Established.",
    );
    for p in &s.peers {
        let _ = writeln!(
            o,
            "gingham_bgp_session_up{{peer=\"{}\",type=\"{}\"}} {}",
            p.address,
            p.peer_type,
            u8::from(p.state == "Established")
        );
    }
    help(
        &mut o,
        "gingham_bgp_peer_state",
        "gauge",
        "FSM state: 0 Idle, 1 Connect, 2 Active, 3 OpenSent, 4 OpenConfirm, 5 Established.",
    );
    for p in &s.peers {
        let _ = writeln!(
            o,
            "gingham_bgp_peer_state{{peer=\"{}\",session_state=\"{}\"}} {}",
            p.address,
            p.state,
            state_number(&p.state)
        );
    }
    help(
        &mut o,
        "gingham_bgp_peer_uptime_seconds",
        "gauge",
        "Seconds the session has been Established.",
    );
    for p in &s.peers {
        let _ = writeln!(
            o,
            "gingham_bgp_peer_uptime_seconds{{peer=\"{}\"}} {}",
            p.address,
            p.uptime_secs.unwrap_or(0)
        );
    }
    help(
        &mut o,
        "gingham_bgp_peer_flap_count",
        "counter",
        "Times the session left Established.",
    );
    for p in &s.peers {
        let _ = writeln!(
            o,
            "gingham_bgp_peer_flap_count{{peer=\"{}\"}} {}",
            p.address, p.flaps
        );
    }
    for (name, text, get) in [
        (
            "gingham_bgp_routes_received",
            "Prefixes received from the peer.",
            (|p: &PeerInfo| p.prefixes_received) as fn(&PeerInfo) -> u64,
        ),
        (
            "gingham_bgp_routes_accepted",
            "Prefixes accepted from the peer.",
            |p: &PeerInfo| p.prefixes_accepted,
        ),
        (
            "gingham_bgp_routes_advertised",
            "Prefixes advertised to the peer.",
            |p: &PeerInfo| p.prefixes_advertised,
        ),
    ] {
        help(&mut o, name, "gauge", text);
        for p in &s.peers {
            let _ = writeln!(
                o,
                "{name}{{peer=\"{}\",route_family=\"ipv4-unicast\"}} {}",
                p.address,
                get(p)
            );
        }
    }
    for (dir, text) in [("received", "in"), ("sent", "out")] {
        let name = format!("gingham_bgp_{dir}_messages_total");
        help(
            &mut o,
            &name,
            "counter",
            &format!("BGP messages {text} by type."),
        );
        for p in &s.peers {
            let c = if dir == "received" {
                &p.messages_in
            } else {
                &p.messages_out
            };
            for (t, v) in [
                ("open", c.open),
                ("update", c.update),
                ("notification", c.notification),
                ("keepalive", c.keepalive),
                ("route_refresh", c.route_refresh),
            ] {
                let _ = writeln!(o, "{name}{{peer=\"{}\",type=\"{t}\"}} {v}", p.address);
            }
        }
    }
    o
}

/// Serves the three paths on `listener` until the task is aborted.
pub fn serve(
    listener: TcpListener,
    source: Arc<dyn MetricsSource>,
    grace: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let source = source.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/metrics" => ("200 OK", render(&source.snapshot().await)),
                    "/liveness" => ("200 OK", "live\n".to_string()),
                    "/readiness" => match readiness(&source.snapshot().await, grace) {
                        Ok(()) => ("200 OK", "ready\n".to_string()),
                        Err(e) => (
                            "503 Service Unavailable",
                            format!("gingham is not ready: {e}\n"),
                        ),
                    },
                    _ => ("404 Not Found", "not found\n".to_string()),
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    })
}

/// Binds the metrics address, with an error that names the flag.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics-addr {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::MessageCounts;

    fn peer(addr: &str, state: &str) -> PeerInfo {
        PeerInfo {
            address: addr.parse().unwrap(),
            port: 179,
            asn: 64512,
            peer_type: "mesh".into(),
            state: state.into(),
            since: 0,
            uptime_secs: None,
            info: state.into(),
            hold_time: None,
            keepalive: None,
            capabilities: vec![],
            prefixes_received: 3,
            prefixes_accepted: 3,
            prefixes_advertised: 1,
            messages_in: MessageCounts::default(),
            messages_out: MessageCounts::default(),
            last_error: None,
            flaps: 0,
        }
    }

    #[test]
    fn readiness_follows_calico_rules() {
        let mut s = Snapshot {
            peers: vec![],
            ..Default::default()
        };
        assert!(readiness(&s, Duration::from_secs(30)).is_ok());
        s.peers = vec![
            peer("172.18.0.2", "Established"),
            peer("172.18.0.3", "Active"),
        ];
        s.uptime_secs = 5;
        let e = readiness(&s, Duration::from_secs(30)).unwrap_err();
        assert_eq!(e, "BGP not established with 172.18.0.3");
        s.uptime_secs = 31;
        assert!(readiness(&s, Duration::from_secs(30)).is_ok());
        s.peers[0].state = "Connect".into();
        assert!(readiness(&s, Duration::from_secs(30)).is_err());
    }

    #[test]
    fn metrics_text_has_per_peer_series() {
        let s = Snapshot {
            node: "n1".into(),
            peers: vec![peer("172.18.0.2", "Established")],
            ..Default::default()
        };
        let text = render(&s);
        assert!(text.contains("gingham_bgp_session_up{peer=\"172.18.0.2\",type=\"mesh\"} 1"));
        assert!(text.contains(
            "gingham_bgp_peer_state{peer=\"172.18.0.2\",session_state=\"Established\"} 5"
        ));
        assert!(text.contains(
            "gingham_bgp_routes_received{peer=\"172.18.0.2\",route_family=\"ipv4-unicast\"} 3"
        ));
        // Every sample line belongs to a declared metric family.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "undeclared {name}"
            );
        }
    }
}
