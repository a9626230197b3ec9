//! `routectl`: the operator's view of a node's gingham-agent, over its control socket.

use agent::control::api::{
    Assignment, BlocksReport, Command, EndpointRecord, IpInfo, IpamPolicy, IpamReport, NodeInfo,
    NodeRemoved, PeerInfo, RouteInfo, Summary, Trace,
};
use agent::control::call;
use agent::render;
use clap::{Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "routectl",
    version,
    about = "Inspect and operate a node's gingham-agent"
)]
struct Cli {
    /// The agent's control socket.
    #[arg(
        long,
        global = true,
        env = "CONTROL_SOCKET",
        default_value = "/var/run/gingham/agent.sock"
    )]
    socket: PathBuf,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value = "table"
    )]
    output: Output,
    #[command(subcommand)]
    command: Top,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Top {
    /// Node summary and BGP peers (like `calicoctl node status`); or one of the sub-views.
    Show {
        #[command(subcommand)]
        what: Option<Show>,
    },
    /// IP address management.
    Ipam {
        #[command(subcommand)]
        what: Ipam,
    },
    /// Explain the path from this node to an address: block, owner, kernel route, pod.
    Trace { ip: Ipv4Addr },
    /// Nodes of the mesh.
    Node {
        #[command(subcommand)]
        what: NodeCmd,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Remove a node gone for good: every agent drops its peer and routes; its addresses and
    /// blocks are freed. Refused while its agent still runs (a recent heartbeat, or a BGP
    /// session up with this node) unless --force.
    Remove {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// The nodes in the registry: name, IP, AS, blocks, last heartbeat.
    List,
}

#[derive(Subcommand)]
enum Show {
    /// Per peer: state, uptime, capabilities, hold time, prefixes, messages, last error.
    Peers,
    /// The Loc-RIB: prefix, next hop, AS path, origin, local pref, source, best, in kernel.
    Routes,
    /// Pool usage and blocks (like `calicoctl ipam show --show-blocks`).
    Blocks,
    /// Pods on this node.
    Endpoints,
}

#[derive(Subcommand)]
enum Ipam {
    /// List IPAM inconsistencies.
    Check,
    /// Fix the inconsistencies that can be fixed safely.
    Repair,
    /// Show or set the cluster-wide policy (like `calicoctl ipam configure`).
    Configure {
        /// Never borrow addresses from other nodes' blocks.
        #[arg(long)]
        strict_affinity: Option<bool>,
        /// Blocks a node may claim (0 = the default of 20).
        #[arg(long)]
        max_blocks_per_node: Option<u32>,
    },
    /// Pool usage per node (like `calicoctl ipam show`); with --ip, who holds an address.
    Show {
        #[arg(long)]
        ip: Option<Ipv4Addr>,
    },
    /// Assign an address outside pods (a VM, a tunnel end, a test).
    Assign {
        #[arg(long)]
        handle: String,
    },
    /// Release the address held by a handle (idempotent).
    Release {
        #[arg(long)]
        handle: String,
    },
}

fn fetch<T: DeserializeOwned + Serialize>(
    cli: &Cli,
    cmd: Command,
    render: impl Fn(&T) -> String,
) -> Result<(), String> {
    fetch_value(cli, cmd, render).map(|_| ())
}

/// `check` and `repair` print their report, then fail when something is wrong (so a script
/// or a CI job can tell), the way `fsck` does.
fn ipam_report(cli: &Cli, cmd: Command, repair: bool) -> Result<(), String> {
    let r: IpamReport = fetch_value(cli, cmd, |r| render::ipam_report(r, repair))?;
    match (repair, r.problems.len(), r.left.len()) {
        (false, 0, _) | (true, _, 0) => Ok(()),
        (false, n, _) => Err(format!("found {n} IPAM problems")),
        (true, _, n) => Err(format!("{n} IPAM problems are left for a person")),
    }
}

fn fetch_value<T: DeserializeOwned + Serialize>(
    cli: &Cli,
    cmd: Command,
    render: impl Fn(&T) -> String,
) -> Result<T, String> {
    let value: T = call(&cli.socket, cmd, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    match cli.output {
        Output::Json => agent::say!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
        ),
        Output::Table => agent::output::print(&render(&value)),
    }
    Ok(value)
}

fn run(cli: &Cli) -> Result<(), String> {
    match &cli.command {
        Top::Show { what: None } => fetch::<Summary>(cli, Command::Summary, render::summary),
        Top::Show {
            what: Some(Show::Peers),
        } => fetch::<Vec<PeerInfo>>(cli, Command::Peers, |p| render::peers(p)),
        Top::Show {
            what: Some(Show::Routes),
        } => fetch::<Vec<RouteInfo>>(cli, Command::Routes, |r| render::routes(r)),
        Top::Show {
            what: Some(Show::Blocks),
        } => fetch::<BlocksReport>(cli, Command::Blocks, render::blocks),
        Top::Show {
            what: Some(Show::Endpoints),
        } => fetch::<Vec<EndpointRecord>>(cli, Command::Endpoints, |e| render::endpoints(e)),
        Top::Ipam { what: Ipam::Check } => ipam_report(cli, Command::IpamCheck, false),
        Top::Ipam { what: Ipam::Repair } => ipam_report(cli, Command::IpamRepair, true),
        Top::Ipam {
            what:
                Ipam::Configure {
                    strict_affinity,
                    max_blocks_per_node,
                },
        } => fetch::<IpamPolicy>(
            cli,
            Command::IpamConfigure {
                strict_affinity: *strict_affinity,
                max_blocks_per_node: *max_blocks_per_node,
            },
            |p| {
                format!(
                    "StrictAffinity: {}\nMaxBlocksPerNode: {}\n",
                    p.strict_affinity, p.max_blocks_per_node
                )
            },
        ),
        Top::Ipam {
            what: Ipam::Show { ip: Some(ip) },
        } => fetch::<IpInfo>(cli, Command::IpamShow { ip: *ip }, render::ip_info),
        Top::Ipam {
            what: Ipam::Show { ip: None },
        } => fetch::<BlocksReport>(cli, Command::Blocks, render::ipam_summary),
        Top::Ipam {
            what: Ipam::Assign { handle },
        } => fetch::<Assignment>(
            cli,
            Command::IpamAssign {
                handle: handle.clone(),
                note: None,
            },
            |a| match a.ip {
                Some(ip) => format!("Assigned {ip} to handle {}\n", a.handle),
                None => format!("No address assigned to handle {}\n", a.handle),
            },
        ),
        Top::Ipam {
            what: Ipam::Release { handle },
        } => fetch::<Assignment>(
            cli,
            Command::IpamRelease {
                handle: handle.clone(),
            },
            |a| match a.ip {
                Some(ip) => format!("Released {ip} from handle {}\n", a.handle),
                None => format!("Handle {} held no address\n", a.handle),
            },
        ),
        Top::Trace { ip } => fetch::<Trace>(cli, Command::Trace { ip: *ip }, render::trace),
        Top::Node {
            what: NodeCmd::List,
        } => fetch::<Vec<NodeInfo>>(cli, Command::NodeList, |n| render::nodes(n)),
        Top::Node {
            what: NodeCmd::Remove { name, force },
        } => fetch::<NodeRemoved>(
            cli,
            Command::NodeRemove {
                name: name.clone(),
                force: *force,
            },
            |r| {
                format!(
                    "Node {} removed{}: {} addresses and {} blocks freed\n",
                    r.name,
                    if r.registered {
                        ""
                    } else {
                        " (it was not registered)"
                    },
                    r.addresses.len(),
                    r.blocks.len()
                )
            },
        ),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("routectl: {e}");
            ExitCode::FAILURE
        }
    }
}
