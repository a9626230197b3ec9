//! gingham-agent against exabgp: iBGP and eBGP, 2- and 4-octet AS (scenario in `common`).
//! Needs the agent binaries: `cargo build -p agent --bins` first.

mod common;

use common::{agent_against, exabgp};

#[test]
fn ibgp_2octet_peer_passive() {
    agent_against("agent-exabgp-ibgp", exabgp, 64512, 64512, true);
}

#[test]
fn ibgp_4octet() {
    agent_against("agent-exabgp-ibgp4", exabgp, 4200000001, 4200000001, false);
}

#[test]
fn ebgp_4octet_peer() {
    agent_against("agent-exabgp-ebgp4", exabgp, 64512, 4200000002, false);
}
