//! `/metrics`, `/liveness` and `/readiness` on the metrics address.
//!
//! The exposition is prometheus-client's (OpenMetrics when the scraper asks for it, Prometheus
//! text 0.0.4 otherwise): metric types, label escaping and the `_total` suffix of counters are
//! its business, not ours. Each scrape builds a registry from one snapshot of the agent, so the
//! numbers of a scrape agree with each other and nothing is kept between scrapes. The HTTP side
//! is hyper, GET only: the port serves read-only data. Metric names follow GoBGP's
//! (`bgp_peer_state`, `bgp_routes_received`, ...) under a `gingham_` prefix, with FRR-K8s-style
//! session gauges.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::control::api::PeerInfo;
use bgp::fsm::State;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
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
    /// BGP connections refused (unknown source, or a peer held off).
    pub rejected_connections: u64,
    /// Node records in the registry that cannot be read (their peers are kept as last read).
    pub unreadable_nodes: u64,
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
        .filter(|p| p.state != State::Established)
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

fn state_number(state: State) -> i64 {
    // The RFC 4271 §8.2.2 order, as GoBGP numbers its session_state label values.
    match state {
        State::Idle => 0,
        State::Connect => 1,
        State::Active => 2,
        State::OpenSent => 3,
        State::OpenConfirm => 4,
        State::Established => 5,
    }
}

type Labels = Vec<(&'static str, String)>;

fn gauge(reg: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    reg.register(name, help, g);
}

fn gauges(
    reg: &mut Registry,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, i64)>,
) {
    let f = Family::<Labels, Gauge>::default();
    for (labels, v) in rows {
        f.get_or_create(&labels).set(v);
    }
    reg.register(name, help, f);
}

fn counters(
    reg: &mut Registry,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) {
    let f = Family::<Labels, Counter>::default();
    for (labels, v) in rows {
        f.get_or_create(&labels).inc_by(v);
    }
    reg.register(name, help, f);
}

/// The registry of one scrape.
pub fn registry(s: &Snapshot) -> Registry {
    let mut r = Registry::default();
    let peer = |p: &PeerInfo| -> Labels { vec![("peer", p.address.to_string())] };
    gauges(
        &mut r,
        "gingham_up",
        "1 while the agent runs",
        [(vec![("node", s.node.clone())], 1)],
    );
    gauge(
        &mut r,
        "gingham_uptime_seconds",
        "Seconds since the agent started",
        s.uptime_secs as i64,
    );
    gauge(
        &mut r,
        "gingham_kernel_routes",
        "Routes this agent holds in the kernel (proto bird and blackholes)",
        s.kernel_routes as i64,
    );
    gauge(
        &mut r,
        "gingham_ipam_blocks",
        "IPAM blocks affine to this node",
        s.local_blocks as i64,
    );
    gauge(
        &mut r,
        "gingham_endpoints",
        "Pods attached on this node",
        s.endpoints as i64,
    );
    gauges(
        &mut r,
        "gingham_datastore_unreadable_records",
        "Datastore records this agent follows but cannot read (kept as last read; see routectl ipam check)",
        [(vec![("kind", "Node".to_string())], s.unreadable_nodes as i64)],
    );
    let rejected: Counter = Counter::default();
    rejected.inc_by(s.rejected_connections);
    r.register(
        "gingham_bgp_rejected_connections",
        "BGP connections closed at once: from neither a mesh node nor a configured peer, or from a peer held off after its prefix limit",
        rejected,
    );
    gauges(
        &mut r,
        "gingham_bgp_session_up",
        "1 when the BGP session is Established",
        s.peers.iter().map(|p| {
            (
                vec![
                    ("peer", p.address.to_string()),
                    ("type", p.peer_type.to_string()),
                ],
                i64::from(p.state == State::Established),
            )
        }),
    );
    gauges(
        &mut r,
        "gingham_bgp_peer_state",
        "FSM state: 0 Idle, 1 Connect, 2 Active, 3 OpenSent, 4 OpenConfirm, 5 Established",
        s.peers.iter().map(|p| {
            (
                vec![
                    ("peer", p.address.to_string()),
                    ("session_state", p.state.to_string()),
                ],
                state_number(p.state),
            )
        }),
    );
    gauges(
        &mut r,
        "gingham_bgp_peer_uptime_seconds",
        "Seconds the session has been Established",
        s.peers
            .iter()
            .map(|p| (peer(p), p.uptime_secs.unwrap_or(0) as i64)),
    );
    gauges(
        &mut r,
        "gingham_bgp_stale_routes",
        "Routes kept from a restarting peer's previous session (RFC 4724)",
        s.peers.iter().map(|p| (peer(p), p.stale_routes as i64)),
    );
    counters(
        &mut r,
        "gingham_bgp_peer_flaps",
        "Times the session left Established",
        s.peers.iter().map(|p| (peer(p), p.flaps)),
    );
    for (name, help, get) in [
        (
            "gingham_bgp_routes_received",
            "Prefixes received from the peer",
            (|p: &PeerInfo| p.prefixes_received) as fn(&PeerInfo) -> u64,
        ),
        (
            "gingham_bgp_routes_accepted",
            "Prefixes accepted from the peer",
            |p: &PeerInfo| p.prefixes_accepted,
        ),
        (
            "gingham_bgp_routes_advertised",
            "Prefixes advertised to the peer",
            |p: &PeerInfo| p.prefixes_advertised,
        ),
    ] {
        gauges(
            &mut r,
            name,
            help,
            s.peers.iter().map(|p| {
                (
                    vec![
                        ("peer", p.address.to_string()),
                        ("route_family", "ipv4-unicast".to_string()),
                    ],
                    get(p) as i64,
                )
            }),
        );
    }
    for (name, help, incoming) in [
        (
            "gingham_bgp_received_messages",
            "BGP messages in by type",
            true,
        ),
        (
            "gingham_bgp_sent_messages",
            "BGP messages out by type",
            false,
        ),
    ] {
        let rows = s.peers.iter().flat_map(|p| {
            let c = if incoming {
                &p.messages_in
            } else {
                &p.messages_out
            };
            [
                ("open", c.open),
                ("update", c.update),
                ("notification", c.notification),
                ("keepalive", c.keepalive),
                ("route_refresh", c.route_refresh),
            ]
            .into_iter()
            .map(|(t, v)| {
                (
                    vec![("peer", p.address.to_string()), ("type", t.to_string())],
                    v,
                )
            })
        });
        counters(&mut r, name, help, rows);
    }
    r
}

/// The exposition: OpenMetrics when `openmetrics`, else Prometheus text 0.0.4.
pub fn render(s: &Snapshot, openmetrics: bool) -> (String, &'static str) {
    let reg = registry(s);
    let mut out = String::new();
    if openmetrics {
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        (
            out,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &reg);
        (
            out,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    }
}

async fn answer(
    req: Request<Incoming>,
    source: Arc<dyn MetricsSource>,
    grace: Duration,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only: GET only\n".into(),
        ));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            let (body, content_type) = render(&source.snapshot().await, openmetrics);
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(content_type),
            );
            r
        }
        "/liveness" => text(StatusCode::OK, "live\n".into()),
        "/readiness" => match readiness(&source.snapshot().await, grace) {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("gingham is not ready: {e}\n"),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    })
}

/// Serves the three paths on `listener` for as long as the agent runs.
pub async fn serve(listener: TcpListener, source: Arc<dyn MetricsSource>, grace: Duration) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::debug!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = source.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, source.clone(), grace));
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(5))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

/// Binds the metrics address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::MessageCounts;

    fn peer(addr: &str, state: State) -> PeerInfo {
        PeerInfo {
            address: addr.parse().unwrap(),
            port: 179,
            asn: 64512,
            peer_type: bgp::PeerKind::Mesh,
            state,
            since: 0,
            uptime_secs: None,
            info: state.to_string(),
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
            graceful_restart: None,
            end_of_rib_received: false,
            stale_routes: 0,
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
            peer("172.18.0.2", State::Established),
            peer("172.18.0.3", State::Active),
        ];
        s.uptime_secs = 5;
        let e = readiness(&s, Duration::from_secs(30)).unwrap_err();
        assert_eq!(e, "BGP not established with 172.18.0.3");
        s.uptime_secs = 31;
        assert!(readiness(&s, Duration::from_secs(30)).is_ok());
        s.peers[0].state = State::Connect;
        assert!(readiness(&s, Duration::from_secs(30)).is_err());
    }

    #[test]
    fn metrics_text_has_per_peer_series() {
        let s = Snapshot {
            node: "n1".into(),
            peers: vec![peer("172.18.0.2", State::Established)],
            ..Default::default()
        };
        let (text, _) = render(&s, false);
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

    #[test]
    fn label_values_are_escaped_and_counters_are_typed() {
        let s = Snapshot {
            node: "we\"ird\\node".into(),
            peers: vec![peer("172.18.0.2", State::Established)],
            ..Default::default()
        };
        let (text, content_type) = render(&s, true);
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains(r#"gingham_up{node="we\"ird\\node"} 1"#),
            "{text}"
        );
        assert!(text.contains("# TYPE gingham_bgp_received_messages counter"));
        assert!(text.contains(
            "gingham_bgp_received_messages_total{peer=\"172.18.0.2\",type=\"update\"} 0"
        ));
        let (text, content_type) = render(&s, false);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            text.contains("# TYPE gingham_bgp_peer_flaps_total counter"),
            "{text}"
        );
    }
}
