//! A supervised task that ends stops the whole agent: exit status 1, a message naming the task,
//! and the kernel routes left in place for the agent that is started next. The task ended here
//! for real: someone removes the agent's control socket, so no CNI call or routectl can reach
//! it any more, and an agent nobody can reach must not go on as if it were fine.

use anyhow::{Context, Result};
use interop_tests::agent::{mesh_member, Agent};
use interop_tests::{wait_until, TestDir, Underlay};
use std::time::Duration;

#[test]
fn a_task_that_ends_stops_the_agent_with_status_1_and_routes_stay() -> Result<()> {
    let dir = TestDir::new("supervisor")?;
    let underlay = Underlay::new("gsv", "172.18.0.0/16".parse()?, 1)?;
    let datastore = dir.sub("datastore")?;
    let n0 = &underlay.node(0).ns;
    let mut a0 = Agent::start(
        n0,
        &dir.sub("node0")?,
        mesh_member(&underlay, 0, &datastore),
    )?;

    // A block of our own, so there is a blackhole to keep.
    let ip = a0.assign("supervised")?;
    let block = ipnet::Ipv4Net::new(ip, 26)?.trunc().to_string();
    let blackhole = || -> Result<bool> {
        Ok(n0
            .routes_proto("bird")?
            .iter()
            .any(|r| r.kind == "blackhole" && r.dst == block))
    };
    wait_until(Duration::from_secs(20), "the block's blackhole", blackhole)
        .with_context(|| a0.log_tail(30))?;

    std::fs::remove_file(a0.socket())?;
    wait_until(Duration::from_secs(30), "the agent to exit", || {
        Ok(a0.exit_status().is_some())
    })
    .with_context(|| a0.log_tail(30))?;
    let status = a0.exit_status().context("exited")?;
    assert_eq!(status.code(), Some(1), "{}", a0.log_tail(30));
    let log = a0.log_tail(30);
    assert!(
        log.contains("the control socket task stopped: control socket")
            && log.contains("was removed or replaced"),
        "{log}"
    );
    assert!(
        blackhole()?,
        "routes stay in the kernel when the agent stops"
    );
    Ok(())
}
