//! `gingham-bench`: Gingham side by side with BIRD and GoBGP, measured in one run and printed as
//! a table plus JSON. Needs root (it builds network namespaces).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use interop_tests::bench::latency;
use interop_tests::bench::mesh::{self, MeshTarget};
use interop_tests::bench::table::{self, TargetKind};

#[derive(Parser)]
#[command(
    name = "gingham-bench",
    version,
    about = "Gingham benchmarks against BIRD and GoBGP"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A full table over eBGP into each target: time to RIB and kernel, peak RSS, CPU.
    Table {
        /// Distinct IPv4 prefixes to send.
        #[arg(long, default_value_t = 100_000)]
        prefixes: usize,
        /// Targets, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "gingham,bird,gobgp,raw")]
        targets: Vec<TargetKind>,
        /// Seconds to wait for a target to take the whole table.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Write the results as JSON here too.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Working directory (logs, configs); by default a fresh one under the temporary
        /// directory, removed after a run that succeeded and kept (with its logs) after one that
        /// failed.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// A full mesh of N lab nodes, Gingham and BIRD: time until every kernel routes every
    /// block, RSS per daemon, CPU to converge and when idle, and the lab's teardown.
    Mesh {
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(2..=1000))]
        nodes: u16,
        #[arg(long, value_delimiter = ',', default_value = "gingham,bird")]
        targets: Vec<MeshTarget>,
        /// Seconds to wait for convergence.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Seconds of idle CPU measured after convergence.
        #[arg(long, default_value_t = 30)]
        idle: u64,
        /// Leave the lab up afterwards (to read the logs); it says how to remove it.
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// In a 3-node lab, from a CNI ADD that claims a new block on one node until the route is
    /// in another node's kernel; BIRD with confd's `birdc configure` as the baseline.
    Propagate {
        #[arg(long, default_value_t = 50)]
        trials: usize,
        /// Leave out the BIRD baseline.
        #[arg(long)]
        no_bird: bool,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// CNI ADD and DEL latency for K pods on one node.
    Cni {
        #[arg(long, default_value_t = 100)]
        pods: usize,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Internal: the `raw` target's netlink writer (run inside the target namespace).
    #[command(hide = true)]
    RawWriter {
        #[arg(long)]
        prefixes: usize,
        #[arg(long)]
        gateway: std::net::Ipv4Addr,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Cmd::Table {
            prefixes,
            targets,
            timeout,
            json,
            dir,
        } => {
            let dir = WorkDir::new(dir);
            let results = dir.finish(
                table::run(&targets, prefixes, &dir.path, Duration::from_secs(timeout)),
                false,
            )?;
            println!("{}", table::markdown(&results));
            write_json(&results, json)
        }
        Cmd::Mesh {
            nodes,
            targets,
            timeout,
            idle,
            keep,
            json,
            dir,
        } => {
            let dir = WorkDir::new(dir);
            let results = dir.finish(
                mesh::run(
                    &targets,
                    nodes.into(),
                    &dir.path,
                    Duration::from_secs(timeout),
                    Duration::from_secs(idle),
                    keep,
                ),
                keep,
            )?;
            println!("{}", mesh::markdown(&results));
            write_json(&results, json)
        }
        Cmd::Propagate {
            trials,
            no_bird,
            json,
            dir,
        } => {
            let dir = WorkDir::new(dir);
            let results = dir.finish(latency::propagate(trials, &dir.path, !no_bird), false)?;
            println!("{}", latency::markdown(&results));
            write_json(&results, json)
        }
        Cmd::Cni { pods, json, dir } => {
            let dir = WorkDir::new(dir);
            let results = dir.finish(latency::cni_latency(pods, &dir.path), false)?;
            println!("{}", latency::markdown(&results));
            write_json(&results, json)
        }
        Cmd::RawWriter { prefixes, gateway } => table::raw_writer(prefixes, gateway),
    }
}

/// A run's working directory: the one given, or a fresh one that only a failed run (or a kept
/// lab) leaves behind.
struct WorkDir {
    path: PathBuf,
    temporary: bool,
}

impl WorkDir {
    fn new(given: Option<PathBuf>) -> WorkDir {
        match given {
            Some(path) => WorkDir {
                path,
                temporary: false,
            },
            None => WorkDir {
                path: table::default_dir(),
                temporary: true,
            },
        }
    }

    /// Removes a temporary directory after a run that succeeded; says where the logs are
    /// after one that failed. `keep`: the run left a lab up whose files live there.
    fn finish<T>(&self, run: Result<T>, keep: bool) -> Result<T> {
        if self.temporary {
            match &run {
                Ok(_) if !keep => {
                    if let Err(e) = std::fs::remove_dir_all(&self.path) {
                        eprintln!("gingham-bench: cannot remove {}: {e}", self.path.display());
                    }
                }
                Ok(_) => {}
                Err(_) => eprintln!("gingham-bench: logs kept in {}", self.path.display()),
            }
        }
        run
    }
}

fn write_json(results: &impl serde::Serialize, to: Option<PathBuf>) -> Result<()> {
    let text = serde_json::to_string_pretty(results)?;
    match to {
        Some(p) => std::fs::write(p, text)?,
        None => println!("{text}"),
    }
    Ok(())
}
