//! `gingham-cni`: the CNI plugin binary. All logic is in `agent::cni`; this file reads stdin
//! and the environment, sets up logging on stderr (stdout is the result), prints and exits.

use agent::cni::{self, veth::KernelDataplane};
use std::io::{Read, Write};

fn main() {
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
