//! gingham-agent against gobgp: iBGP and eBGP, 2- and 4-octet AS (scenario in `common`).
//! Needs the agent binaries: `cargo build -p agent --bins` first.

mod common;

use common::{agent_against, gobgp};

#[test]
fn ibgp_2octet_peer_passive() {
    agent_against("agent-gobgp-ibgp", gobgp, 64512, 64512, true);
}

#[test]
fn ibgp_4octet() {
    agent_against("agent-gobgp-ibgp4", gobgp, 4200000001, 4200000001, false);
}

#[test]
fn ebgp_4octet_peer() {
    agent_against("agent-gobgp-ebgp4", gobgp, 64512, 4200000002, false);
}
