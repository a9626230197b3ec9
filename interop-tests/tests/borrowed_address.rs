//! Borrowing (Calico issue 3246): when the pool has no free block, a node borrows an address from
//! another node's block and advertises it as a /32, so the block owner routes that address to the
//! borrower instead of dropping it in its blackhole.

use anyhow::{Context, Result};
use interop_tests::agent::start_mesh;
use interop_tests::{wait_until, TestDir, Underlay};
use std::net::Ipv4Addr;
use std::time::Duration;

#[test]
fn borrowed_address_is_advertised_as_a_host_route_past_the_owners_blackhole() -> Result<()> {
    let dir = TestDir::new("borrow")?;
    let underlay = Underlay::new("gbr", "172.18.0.0/16".parse()?, 3)?;
    // Room for two /26 blocks only: the third node has to borrow.
    let agents = start_mesh(&underlay, &dir, &["--pool-cidr", "10.244.0.0/25"])?;
    let ips: Vec<Ipv4Addr> = (0..3).map(|i| underlay.node(i).ip).collect();

    agents[0].assign("a")?;
    agents[1].assign("b")?;
    let borrowed = agents[2].assign("c")?;
    let info = agents[2].routectl(&["ipam", "show", "--ip", &borrowed.to_string()])?;
    assert_eq!(info["node"], "node2", "{info}");
    let owner = info["block_owner"]
        .as_str()
        .context("the borrowed address's block has an owner")?
        .to_string();
    assert_ne!(owner, "node2", "{info}");
    let owner_index: usize = owner.trim_start_matches("node").parse()?;
    let block = info["block"].as_str().unwrap().to_string();
    let host = format!("{borrowed}");

    // Every other node routes the /32 to the borrower; the owner still blackholes the rest of
    // its block, and the /32, being longer, wins over that blackhole.
    for i in [0usize, 1] {
        let ns = &underlay.node(i).ns;
        wait_until(
            Duration::from_secs(20),
            &format!("node{i} to route {host}/32 via node2"),
            || {
                let routes = ns.routes_proto("bird")?;
                Ok(routes
                    .iter()
                    .any(|r| r.dst == host && r.gateway == Some(ips[2])))
            },
        )
        .with_context(|| agents[i].log_tail(30))?;
    }
    let owner_ns = &underlay.node(owner_index).ns;
    assert!(owner_ns
        .routes_proto("bird")?
        .iter()
        .any(|r| r.dst == block && r.is_blackhole()));
    let lookup = owner_ns.run(&["ip", "route", "get", &host])?;
    assert!(
        lookup.contains(&format!("via {}", ips[2])),
        "the owner's kernel sends {host} to the borrower: {lookup}"
    );

    // The borrower does not announce the whole block, and trace explains the borrowing.
    let trace = agents[owner_index].routectl(&["trace", &host])?;
    assert_eq!(trace["borrowed_by"], "node2", "{trace}");

    // Releasing the address withdraws the /32 everywhere.
    agents[2].release("c")?;
    for i in [0usize, 1] {
        let ns = &underlay.node(i).ns;
        wait_until(
            Duration::from_secs(20),
            &format!("node{i} to drop {host}/32"),
            || Ok(!ns.routes_proto("bird")?.iter().any(|r| r.dst == host)),
        )?;
    }

    // With strict affinity (set from one node, in force for all) there is no borrowing.
    let policy = agents[2].routectl(&["ipam", "configure", "--strict-affinity", "true"])?;
    assert_eq!(policy["strict_affinity"], true, "{policy}");
    let policy = agents[0].routectl(&["ipam", "configure"])?;
    assert_eq!(policy["strict_affinity"], true, "{policy}");
    assert_eq!(policy["max_blocks_per_node"], 20, "{policy}");
    let refused = agents[2].assign("d");
    assert!(
        refused.is_err(),
        "strict affinity refuses to borrow: {refused:?}"
    );
    Ok(())
}
