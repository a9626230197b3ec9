//! `gingham-cni`, the CNI plugin (spec 1.0.0, plus STATUS and GC from 1.1.0).
//!
//! The runtime execs the binary with `CNI_*` variables and the network configuration on stdin;
//! the plugin prints a result (ADD), nothing (DEL, CHECK, STATUS) or an error object on stdout
//! and logs to stderr only. Addresses and host routes are the agent's: ADD asks it for an
//! address (`EndpointAssign`), builds the veth, then has it install the host route
//! (`EndpointAttach`); DEL undoes both. [`run`] is the whole plugin minus process plumbing.

pub mod config;
pub mod env;
pub mod error;
pub mod plugin;
pub mod result;
pub mod veth;

pub use config::NetConf;
pub use env::{CniCommand, CniEnv};
pub use error::{code, CniError};
pub use plugin::{host_ifname, Dataplane, DataplaneError, VethSpec};
pub use result::CniResult;

use serde_json::json;

/// What the process prints on stdout and exits with.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub stdout: Option<serde_json::Value>,
    pub exit_code: i32,
}

/// Runs one invocation. `get` reads the environment.
pub fn run(get: &dyn Fn(&str) -> Option<String>, stdin: &[u8], dp: &dyn Dataplane) -> Outcome {
    match dispatch(get, stdin, dp) {
        Ok(stdout) => Outcome {
            stdout,
            exit_code: 0,
        },
        Err(e) => {
            tracing::error!("{e}");
            let version = config::version_hint(stdin);
            Outcome {
                stdout: Some(e.to_json(version.as_deref().unwrap_or(config::DEFAULT_VERSION))),
                exit_code: 1,
            }
        }
    }
}

fn dispatch(
    get: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
    dp: &dyn Dataplane,
) -> Result<Option<serde_json::Value>, CniError> {
    let command = env::command(get)?;
    match command {
        CniCommand::Version => Ok(Some(version_info(stdin))),
        CniCommand::Status | CniCommand::Gc => {
            let conf = NetConf::parse(stdin)?;
            if conf.version < (1, 1, 0) {
                return Err(CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!("{command:?} needs cniVersion 1.1.0"),
                    format!("config has cniVersion {}", conf.cni_version),
                ));
            }
            if command == CniCommand::Gc {
                plugin::gc(&conf, dp).map(|()| None)
            } else {
                plugin::status(&conf).map(|()| None)
            }
        }
        CniCommand::Add | CniCommand::Del | CniCommand::Check => {
            let env = CniEnv::read(command, get)?;
            let conf = NetConf::parse(stdin)?;
            tracing::debug!(?env, ?conf, "invoked");
            match command {
                CniCommand::Add => {
                    let result = plugin::add(&conf, &env, dp)?;
                    serde_json::to_value(&result).map(Some).map_err(|e| {
                        CniError::new(
                            code::AGENT_REFUSED,
                            "cannot encode the result",
                            e.to_string(),
                        )
                    })
                }
                CniCommand::Del => plugin::del(&conf, &env, dp).map(|()| None),
                _ => plugin::check(&conf, &env, dp).map(|()| None),
            }
        }
    }
}

/// VERSION answers in the caller's version when we speak it, so an old runtime can decode it.
fn version_info(stdin: &[u8]) -> serde_json::Value {
    let asked = config::version_hint(stdin)
        .filter(|v| config::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| config::DEFAULT_VERSION.to_string());
    json!({"cniVersion": asked, "supportedVersions": config::SUPPORTED_VERSIONS})
}

/// The configured `log_level`, read before validation so even config errors are logged at the
/// level asked for.
pub fn log_level_hint(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("log_level")?.as_str().map(str::to_ascii_lowercase))
        .unwrap_or_else(|| "info".into())
}
