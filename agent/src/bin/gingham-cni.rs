//! `gingham-cni`: the CNI plugin binary. All logic is in `agent::cni`; this file reads stdin
//! and the environment, sets up logging on stderr (stdout is the result), prints and exits.

use agent::cni::{self, veth::KernelDataplane};
use std::io::{Read, Write};

const HELP: &str = "gingham-cni: Gingham's CNI plugin (CNI spec 0.3.0 to 1.1.0: ADD, DEL, CHECK, VERSION, STATUS, GC).

A container runtime runs it, with CNI_COMMAND and the other CNI_* variables in the
environment and the network configuration on stdin; it asks gingham-agent (over the
configuration's control_socket, default /var/run/gingham/agent.sock) for the pod's address
and wires the pod with a veth. Install it as /opt/cni/bin/gingham-cni with a conflist whose
plugin has \"type\": \"gingham-cni\" and \"ipam\": {\"type\": \"gingham-ipam\"}.

Options:
  -h, --help     Print this
  -V, --version  Print the version
";

fn main() {
    // Flags are for people; the runtime passes none (and its stdin would block a terminal).
    match std::env::args().nth(1).as_deref() {
        Some("-h" | "--help") => {
            agent::output::print(HELP);
            return;
        }
        Some("-V" | "--version") => {
            agent::say!("gingham-cni {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Some(other) => {
            eprintln!("gingham-cni: unknown argument {other:?} (try --help); a runtime runs it with no arguments");
            std::process::exit(2);
        }
        None => {}
    }
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    init_logging(&cni::log_level_hint(&stdin));
    let get = |k: &str| std::env::var(k).ok();
    let outcome = match read {
        Ok(_) => cni::run(&get, &stdin, &KernelDataplane),
        Err(e) => cni::Outcome {
            stdout: Some(
                cni::CniError::new(cni::code::IO_FAILURE, "cannot read stdin", e.to_string())
                    .to_json(cni::config::DEFAULT_VERSION),
            ),
            exit_code: 1,
        },
    };
    if let Some(out) = outcome.stdout {
        let mut stdout = std::io::stdout().lock();
        // Nothing useful can be done if the runtime closed our stdout; the exit code still says.
        let _ = writeln!(stdout, "{out}");
        let _ = stdout.flush();
    }
    std::process::exit(outcome.exit_code);
}

fn init_logging(level: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(format!("agent={level},gingham_cni={level}"))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
