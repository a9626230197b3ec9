//! `gingham-bench`: Gingham side by side with BIRD and GoBGP, measured in one run and printed as
//! a table plus JSON. Needs root (it builds network namespaces).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
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
        /// Working directory (logs, configs); a fresh temporary one by default.
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
            let dir = dir.unwrap_or_else(table::default_dir);
            let results = table::run(&targets, prefixes, &dir, Duration::from_secs(timeout))?;
            println!("{}", table::markdown(&results));
            let text = serde_json::to_string_pretty(&results)?;
            match json {
                Some(p) => std::fs::write(p, text)?,
                None => println!("{text}"),
            }
            Ok(())
        }
        Cmd::RawWriter { prefixes, gateway } => table::raw_writer(prefixes, gateway),
    }
}
