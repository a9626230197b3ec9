//! Two agents peering with each other (the mesh, from a shared datastore) and with BIRD at the
//! same time, all iBGP in AS 64512: a full mesh of three speakers. Each agent's block reaches the
//! other agent and BIRD; BIRD's route reaches both agents' kernels; split horizon keeps every
//! route one hop (an agent never passes BIRD's route to the other agent, nor the other agent's
//! block to BIRD), so each path's source is the node that originated it.

use anyhow::{Context, Result};
use bgp::fsm::State;
use bgp::PeerKind;
use interop_tests::agent::{Agent, AgentConfig, AgentPeer};
use interop_tests::peers::{BgpPeer, Bird, Neighbor, PeerConfig};
use interop_tests::{wait_until, TestDir, Underlay};
use ipnet::Ipv4Net;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn two_agents_and_bird_in_one_ibgp_mesh() -> Result<()> {
    let dir = TestDir::new("two-agents-bird")?;
    let u = Underlay::new("g2b", "172.18.0.0/16".parse()?, 3)?;
    let (a, b, c) = (u.node(0), u.node(1), u.node(2));
    let datastore = dir.sub("datastore")?;

    let bird_cfg = PeerConfig::new(64512, c.ip)
        .neighbor(Neighbor::new(a.ip, 64512))
        .neighbor(Neighbor::new(b.ip, 64512));
    let mut bird = Bird::start(&c.ns, &dir.sub("bird")?, bird_cfg)?;

    let mut agents = Vec::new();
    for (i, n) in [a, b].iter().enumerate() {
        let mut cfg =
            AgentConfig::new(&format!("node-{i}"), n.ip, 64512).peer(AgentPeer::new(c.ip, 64512));
        cfg.mesh = true;
        cfg.datastore = Some(datastore.clone());
        agents.push(Agent::start(&n.ns, &dir.sub(&format!("agent-{i}"))?, cfg)?);
    }

    // Each agent: two Established sessions, one mesh, one explicit.
    for (i, agent) in agents.iter().enumerate() {
        wait_until(T, &format!("agent {i}: mesh and BIRD sessions"), || {
            let peers = agent.peers()?;
            let up = |t: PeerKind| {
                peers
                    .iter()
                    .any(|p| p.peer_type == t && p.state == State::Established)
            };
            Ok(peers.len() == 2 && up(PeerKind::Mesh) && up(PeerKind::Explicit))
        })
        .with_context(|| agent.log_tail(30))?;
    }
    wait_until(T, "BIRD's two sessions", || {
        Ok(bird.established(a.ip)? && bird.established(b.ip)?)
    })?;

    // Every speaker originates something.
    let block_a: Ipv4Net = Ipv4Net::new(agents[0].assign("a")?, 26)?.trunc();
    let block_b: Ipv4Net = Ipv4Net::new(agents[1].assign("b")?, 26)?.trunc();
    let from_bird: Ipv4Net = "10.100.0.0/24".parse()?;
    bird.announce(from_bird)?;

    // BIRD learns both blocks, each straight from its owner.
    wait_until(T, "BIRD to learn both blocks from their owners", || {
        let r = bird.received_routes()?;
        Ok(r.iter().any(|x| x.prefix == block_a && x.next_hop == a.ip)
            && r.iter().any(|x| x.prefix == block_b && x.next_hop == b.ip))
    })?;
    // Each agent's kernel: the other block via its owner, BIRD's prefix via BIRD, its own blackhole.
    for (i, (me, other, other_block, own_block)) in
        [(a, b, block_b, block_a), (b, a, block_a, block_b)]
            .into_iter()
            .enumerate()
    {
        wait_until(T, &format!("agent {i}'s kernel routes"), || {
            let routes = me.ns.routes_proto("bird")?;
            let via = |p: Ipv4Net, gw| {
                routes
                    .iter()
                    .any(|r| r.prefix() == Some(p) && r.gateway == Some(gw))
            };
            Ok(via(other_block, other.ip)
                && via(from_bird, c.ip)
                && routes
                    .iter()
                    .any(|r| r.prefix() == Some(own_block) && r.is_blackhole()))
        })
        .with_context(|| agents[i].log_tail(30))?;
        // Split horizon: every path has its originator as source, never the third speaker.
        let rib = agents[i].routes()?;
        let sources = |p: Ipv4Net| {
            rib.iter()
                .filter(|r| r.prefix == p)
                .map(|r| r.source.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sources(from_bird),
            vec![c.ip.to_string()],
            "agent {i}: {rib:?}"
        );
        assert_eq!(
            sources(other_block),
            vec![other.ip.to_string()],
            "agent {i}: {rib:?}"
        );
    }

    // BIRD withdraws: gone from both kernels.
    bird.withdraw(from_bird)?;
    for (i, n) in [a, b].iter().enumerate() {
        wait_until(
            T,
            &format!("agent {i} to drop BIRD's withdrawn prefix"),
            || {
                Ok(!n
                    .ns
                    .routes_proto("bird")?
                    .iter()
                    .any(|r| r.prefix() == Some(from_bird)))
            },
        )?;
    }
    // The mesh survives BIRD going away.
    bird.stop()?;
    for (i, agent) in agents.iter().enumerate() {
        wait_until(T, &format!("agent {i}: mesh up, BIRD down"), || {
            let peers = agent.peers()?;
            Ok(peers
                .iter()
                .any(|p| p.peer_type == PeerKind::Mesh && p.state == State::Established)
                && peers
                    .iter()
                    .any(|p| p.peer_type == PeerKind::Explicit && p.state != State::Established))
        })?;
    }
    let routes = a.ns.routes_proto("bird")?;
    assert!(routes
        .iter()
        .any(|r| r.prefix() == Some(block_b) && r.gateway == Some(b.ip)));
    Ok(())
}
