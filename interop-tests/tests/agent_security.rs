//! Who may peer with the agent: TCP MD5 (RFC 2385) with BIRD (one password for all, or a
//! peer's own file) and between agents, GTSM (RFC 5082) with BIRD's `ttl security` and on the
//! mesh by default, a per-peer prefix limit, and strangers refused and counted. Needs the agent binaries: `cargo build -p agent --bins` first.

use std::time::Duration;

use interop_tests::agent::{Agent, AgentConfig, AgentPeer};
use interop_tests::peers::{BgpPeer, Bird, Neighbor, PeerConfig};
use interop_tests::{wait_until, TestDir, Underlay};

const T: Duration = Duration::from_secs(20);
/// Long enough for a handful of connect attempts and retries on both sides.
const NEVER: Duration = Duration::from_secs(8);

/// Established within `T`, or (when `expect` is false) still not after `NEVER`.
fn session(agent: &Agent, bird: &Bird, expect: bool) -> bool {
    let (a, b) = (agent.cfg.ip, bird_ip(agent));
    let up = || Ok(agent.established(b)? && bird.established(a)?);
    if expect {
        wait_until(T, "the agent's session with BIRD", up).is_ok()
    } else {
        std::thread::sleep(NEVER);
        up().unwrap_or(false)
    }
}

fn bird_ip(agent: &Agent) -> std::net::Ipv4Addr {
    agent.cfg.peers[0].addr
}

fn agent_with_bird(
    name: &str,
    agent_args: &[String],
    peer_opts: &str,
    bird_neighbor: impl Fn(Neighbor) -> Neighbor,
) -> (Underlay, TestDir, Agent, Bird) {
    let dir = TestDir::new(name).unwrap();
    let u = Underlay::new("gsec", "172.18.0.0/16".parse().unwrap(), 2).unwrap();
    let (n0, n1) = (u.node(0), u.node(1));
    let bird = Bird::start(
        &n1.ns,
        &dir.sub("bird").unwrap(),
        PeerConfig::new(65001, n1.ip).neighbor(bird_neighbor(Neighbor::new(n0.ip, 64512))),
    )
    .unwrap();
    let mut cfg = AgentConfig::new("node-0", n0.ip, 64512).peer(AgentPeer::new(n1.ip, 65001));
    cfg.extra_args.extend(agent_args.iter().cloned());
    cfg.peer_options = peer_opts.to_string();
    let agent = Agent::start(&n0.ns, &dir.sub("agent").unwrap(), cfg).unwrap();
    (u, dir, agent, bird)
}

#[test]
fn md5_with_bird_same_password_peers_wrong_or_missing_does_not() {
    // Same password: a session.
    let (_u, _d, agent, bird) = agent_with_bird(
        "md5-bird-ok",
        &["--bgp-password".into(), "s3cret-key".into()],
        "",
        |n| n.password("s3cret-key"),
    );
    assert!(session(&agent, &bird, true), "{}", agent.log_tail(20));
    drop((agent, bird));

    // A wrong one: none, and the agent's log says why it might be.
    let (_u, _d, agent, bird) = agent_with_bird(
        "md5-bird-wrong",
        &["--bgp-password".into(), "not-the-key".into()],
        "",
        |n| n.password("s3cret-key"),
    );
    assert!(
        !session(&agent, &bird, false),
        "a wrong password must not peer"
    );
    wait_until(T, "the agent to log the MD5 failure", || {
        Ok(agent.log_tail(200).contains("TCP MD5"))
    })
    .unwrap();
    drop((agent, bird));

    // None on our side, one on BIRD's: none, and the kernel's count of signed segments
    // nobody expected shows in the log.
    let (_u, _d, agent, bird) =
        agent_with_bird("md5-bird-missing", &[], "", |n| n.password("s3cret-key"));
    assert!(
        !session(&agent, &bird, false),
        "a missing password must not peer"
    );
    wait_until(T, "the agent to log the unexpected signatures", || {
        Ok(agent
            .log_tail(200)
            .contains("TCP MD5: the kernel dropped segments from BGP peers"))
    })
    .unwrap();
    drop((agent, bird));

    // A peer's own password-file wins over the global password.
    let keys = TestDir::new("md5-peer-file").unwrap();
    let file = keys.path().join("bird-key");
    std::fs::write(&file, "per-peer-key\n").unwrap();
    let (_u, _d, agent, bird) = agent_with_bird(
        "md5-bird-peer-file",
        &["--bgp-password".into(), "mesh-wide".into()],
        &format!(",password-file={}", file.display()),
        |n| n.password("per-peer-key"),
    );
    assert!(session(&agent, &bird, true), "{}", agent.log_tail(20));
}

#[test]
fn md5_between_agents_and_a_password_file() {
    let dir = TestDir::new("md5-mesh").unwrap();
    let u = Underlay::new("gsem", "172.18.0.0/16".parse().unwrap(), 3).unwrap();
    let store = dir.sub("datastore").unwrap();
    let pw = dir.path().join("bgp-password");
    // As a Kubernetes Secret is mounted: a file, with a trailing newline.
    std::fs::write(&pw, "mesh-secret\n").unwrap();
    let start = |i: usize, args: Vec<String>| {
        let node = u.node(i);
        let mut cfg = AgentConfig::new(&format!("node{i}"), node.ip, 64512);
        cfg.mesh = true;
        cfg.datastore = Some(store.clone());
        cfg.extra_args = args;
        Agent::start(&node.ns, &dir.sub(&format!("agent{i}")).unwrap(), cfg).unwrap()
    };
    let a0 = start(
        0,
        vec!["--bgp-password-file".into(), pw.display().to_string()],
    );
    let a1 = start(1, vec!["--bgp-password".into(), "mesh-secret".into()]);
    let a2 = start(2, vec!["--bgp-password".into(), "intruder".into()]);
    let (ip0, ip1, ip2) = (u.node(0).ip, u.node(1).ip, u.node(2).ip);
    wait_until(T, "node0 and node1 to peer with the same password", || {
        Ok(a0.established(ip1)? && a1.established(ip0)?)
    })
    .unwrap();
    std::thread::sleep(NEVER);
    assert!(!a0.established(ip2).unwrap() && !a2.established(ip0).unwrap());
    assert!(!a1.established(ip2).unwrap() && !a2.established(ip1).unwrap());
}

#[test]
fn the_mesh_speaks_gtsm_by_default() {
    // Mesh peers in the node's own subnet: every BGP segment either way carries TTL 255.
    let dir = TestDir::new("gtsm-mesh").unwrap();
    let u = Underlay::new("gsgm", "172.18.0.0/16".parse().unwrap(), 2).unwrap();
    let store = dir.sub("datastore").unwrap();
    let capture = interop_tests::probe::Capture::start(
        &u.node(0).ns,
        dir.path(),
        "bgp",
        "eth0",
        "tcp port 179",
    )
    .unwrap();
    let agents: Vec<Agent> = (0..2)
        .map(|i| {
            let node = u.node(i);
            let mut cfg = AgentConfig::new(&format!("node{i}"), node.ip, 64512);
            cfg.mesh = true;
            cfg.datastore = Some(store.clone());
            Agent::start(&node.ns, &dir.sub(&format!("agent{i}")).unwrap(), cfg).unwrap()
        })
        .collect();
    let (ip0, ip1) = (u.node(0).ip, u.node(1).ip);
    wait_until(T, "the mesh session", || {
        Ok(agents[0].established(ip1)? && agents[1].established(ip0)?)
    })
    .unwrap();
    let packets = capture.stop().unwrap();
    let ttls: Vec<&str> = packets
        .lines()
        .filter_map(|l| l.split("ttl ").nth(1))
        .filter_map(|t| t.split([',', ' ']).next())
        .collect();
    assert!(
        ttls.len() >= 6,
        "a handshake and OPENs both ways:\n{packets}"
    );
    assert!(ttls.iter().all(|t| *t == "255"), "{packets}");
}

#[test]
fn a_stranger_is_closed_at_once_and_counted() {
    let dir = TestDir::new("stranger").unwrap();
    let u = Underlay::new("gsst", "172.18.0.0/16".parse().unwrap(), 2).unwrap();
    let (n0, n1) = (u.node(0), u.node(1));
    // No mesh, one configured peer that is not node 1.
    let cfg = AgentConfig::new("node-0", n0.ip, 64512)
        .peer(AgentPeer::new("172.18.0.200".parse().unwrap(), 65001));
    let agent = Agent::start(&n0.ns, &dir.sub("agent").unwrap(), cfg).unwrap();
    let counted = |m: &String| {
        m.lines()
            .find(|l| l.starts_with("gingham_bgp_rejected_connections_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(counted(&agent.metrics().unwrap()), Some(0));
    // Node 1 connects to port 179: the agent answers with a NOTIFICATION Cease / Connection
    // Rejected (RFC 4486) and closes the connection at once.
    let script = format!(
        "exec 3<>/dev/tcp/{}/179 && timeout 5 cat <&3 | od -An -tu1 -v",
        n0.ip
    );
    let got: Vec<u8> = n1
        .ns
        .run(&["bash", "-c", &script])
        .unwrap()
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    assert_eq!(got.len(), 21, "one NOTIFICATION, then end of file: {got:?}");
    assert_eq!(&got[..16], &[0xff; 16], "{got:?}");
    assert_eq!(
        &got[18..],
        &[3, 6, 5],
        "NOTIFICATION Cease/Connection Rejected"
    );
    interop_tests::wait_for(
        T,
        "the refusal to be counted",
        || agent.metrics(),
        |m| counted(m) == Some(1),
    )
    .unwrap();
}

#[test]
fn gtsm_with_bird_ttl_security() {
    // BIRD with `ttl security on`, the agent with ttl-security=on: a session.
    let (_u, _d, agent, bird) =
        agent_with_bird("gtsm-ok", &[], ",ttl-security=on", Neighbor::ttl_security);
    assert!(session(&agent, &bird, true), "{}", agent.log_tail(20));
    drop((agent, bird));
    // BIRD insists, the agent sends the default TTL of 64: BIRD drops it all.
    let (_u, _d, agent, bird) = agent_with_bird("gtsm-missing", &[], "", Neighbor::ttl_security);
    assert!(!session(&agent, &bird, false), "TTL 64 must not pass GTSM");
    drop((agent, bird));
    // The agent insists, BIRD sends 64: the agent drops it all.
    let (_u, _d, agent, bird) = agent_with_bird("gtsm-ours", &[], ",ttl-security=on", |n| n);
    assert!(
        !session(&agent, &bird, false),
        "the agent's GTSM must drop TTL 64"
    );
}

#[test]
fn a_peer_over_its_prefix_limit_is_cut_and_strangers_are_counted() {
    let (u, _d, agent, mut bird) = agent_with_bird("limit", &[], ",max-prefixes=3", |n| n);
    assert!(session(&agent, &bird, true), "{}", agent.log_tail(20));
    for i in 0..4 {
        bird.announce(format!("10.77.{i}.0/24").parse().unwrap())
            .unwrap();
    }
    let bird_ip = u.node(1).ip;
    wait_until(T, "the agent to cut the session over its limit", || {
        let peers = agent.peers()?;
        Ok(peers.iter().any(|p| {
            p.last_error
                .as_deref()
                .unwrap_or("")
                .contains("Maximum Number of Prefixes")
        }))
    })
    .unwrap();
    assert!(!agent.established(bird_ip).unwrap());
    // BIRD is held off (it reconnects after its error wait; the agent refuses it for now),
    // and each refusal is counted.
    interop_tests::wait_for(
        T,
        "a refused connection to be counted",
        || agent.metrics(),
        |m| {
            m.lines().any(|l| {
                l.starts_with("gingham_bgp_rejected_connections_total") && !l.ends_with(" 0")
            })
        },
    )
    .unwrap();
}
