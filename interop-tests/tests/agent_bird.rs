//! gingham-agent against bird: iBGP and eBGP, 2- and 4-octet AS (scenario in `common`).
//! Needs the agent binaries: `cargo build -p agent --bins` first.

mod common;

use common::{agent_against, bird};

#[test]
fn ibgp_2octet_peer_passive() {
    agent_against("agent-bird-ibgp", bird, 64512, 64512, true);
}

#[test]
fn ibgp_4octet() {
    agent_against("agent-bird-ibgp4", bird, 4200000001, 4200000001, false);
}

#[test]
fn ebgp_4octet_peer() {
    agent_against("agent-bird-ebgp4", bird, 64512, 4200000002, false);
}
