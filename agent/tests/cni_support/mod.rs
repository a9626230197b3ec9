//! Shared by the `cni_*` tests: throwaway network namespaces, a fake agent on a control socket,
//! and a runner that execs the real `gingham-cni` inside the node namespace as a runtime would.
#![allow(dead_code)] // each test file uses a different part

use agent::control::api::{Assignment, Command, EndpointRecord, Request, Response};
use agent::control::{serve, Handler};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::sync::{Arc, Mutex};

/// A throwaway namespace (`<prefix>-<pid>-<n>`, [`agent::netns::Netns`]: deleted on drop, also
/// when a test panics), with the JSON helpers these tests read it through.
pub struct Netns {
    pub name: String,
    _guard: agent::netns::Netns,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let guard = agent::netns::Netns::create(prefix).expect("create a network namespace");
        Netns {
            name: guard.name().to_string(),
            _guard: guard,
        }
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// `ip -j -n <ns> <args>` parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j", "-n", &self.name];
        full.extend_from_slice(args);
        let out = Proc::new("ip").args(&full).output().expect("ip runs");
        assert!(
            out.status.success(),
            "ip {full:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
    }

    pub fn link_names(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(String::from))
            .collect()
    }

    /// Routes of the main table, as `ip route` prints their `dst`.
    pub fn route_dsts(&self) -> Vec<String> {
        self.ip_json(&["route", "show"])
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["dst"].as_str().map(String::from))
            .collect()
    }

    /// `a.b.c.d/len` for every IPv4 address in the namespace.
    pub fn addresses(&self) -> Vec<String> {
        let mut out = vec![];
        for link in self.ip_json(&["-4", "addr", "show"]).as_array().unwrap() {
            for a in link["addr_info"].as_array().into_iter().flatten() {
                out.push(format!(
                    "{}/{}",
                    a["local"].as_str().unwrap(),
                    a["prefixlen"]
                ));
            }
        }
        out
    }
}

pub fn run_ip(args: &[&str]) {
    let out = Proc::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the fake agent holds, for assertions.
#[derive(Debug, Default)]
pub struct AgentState {
    pub assigned: BTreeMap<String, Ipv4Addr>,
    pub endpoints: BTreeMap<String, EndpointRecord>,
    pub next: u8,
    /// Refuse EndpointAttach, to test ADD's rollback.
    pub refuse_attach: bool,
    pub calls: Vec<String>,
}

/// The agent's endpoint API over the real control socket: addresses from 192.168.77.0/26 in
/// memory; attach and release really add and remove the host route in the node namespace.
pub struct FakeAgent {
    pub socket: PathBuf,
    pub state: Arc<Mutex<AgentState>>,
    _dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
}

struct FakeHandler {
    node: String,
    state: Arc<Mutex<AgentState>>,
}

impl Handler for FakeHandler {
    fn handle(
        &self,
        request: Request,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send + '_>> {
        let response = self.answer(request.command);
        Box::pin(async move { response })
    }
}

impl FakeHandler {
    fn answer(&self, command: Command) -> Response {
        let mut st = self.state.lock().unwrap();
        match command {
            Command::Summary => Response::ok(&serde_json::json!({"node": "fake"})),
            Command::Endpoints => Response::ok(&st.endpoints.values().cloned().collect::<Vec<_>>()),
            Command::EndpointAssign { container_id, .. } => {
                st.calls.push(format!("assign {container_id}"));
                let ip = match st.assigned.get(&container_id) {
                    Some(ip) => *ip,
                    None => {
                        st.next += 1;
                        let ip = Ipv4Addr::new(192, 168, 77, st.next);
                        st.assigned.insert(container_id.clone(), ip);
                        ip
                    }
                };
                Response::ok(&Assignment {
                    handle: container_id,
                    ip: Some(ip),
                })
            }
            Command::EndpointAttach(record) => {
                st.calls.push(format!("attach {}", record.container_id));
                if st.refuse_attach {
                    return Response::err("attach refused by the test");
                }
                let dst = format!("{}/32", record.ip);
                let ok = ip_in(
                    &self.node,
                    &[
                        "route",
                        "replace",
                        &dst,
                        "dev",
                        &record.interface,
                        "scope",
                        "link",
                    ],
                );
                if let Err(e) = ok {
                    return Response::err(e);
                }
                st.endpoints.insert(record.container_id.clone(), record);
                Response::ok(&Value::Null)
            }
            Command::EndpointRelease { container_id } => {
                st.calls.push(format!("release {container_id}"));
                if let Some(rec) = st.endpoints.remove(&container_id) {
                    let dst = format!("{}/32", rec.ip);
                    // Gone already when the veth went first: that is fine.
                    let _ = ip_in(&self.node, &["route", "del", &dst, "dev", &rec.interface]);
                }
                st.assigned.remove(&container_id);
                Response::ok(&Value::Null)
            }
            Command::EndpointCheck { container_id } => match st.endpoints.get(&container_id) {
                Some(rec) => {
                    let dst = format!("{}/32", rec.ip);
                    match ip_in(&self.node, &["route", "show", &dst, "dev", &rec.interface]) {
                        Ok(out) if !out.trim().is_empty() => Response::ok(rec),
                        _ => {
                            Response::err(format!("host route {dst} dev {} missing", rec.interface))
                        }
                    }
                }
                None => Response::err(format!("no endpoint {container_id}")),
            },
            other => Response::err(format!("fake agent does not do {other:?}")),
        }
    }
}

fn ip_in(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    let out = Proc::new("ip")
        .args(&full)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl FakeAgent {
    pub fn start(node: &Netns) -> FakeAgent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let state = Arc::new(Mutex::new(AgentState::default()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handler = Arc::new(FakeHandler {
            node: node.name.clone(),
            state: state.clone(),
        });
        {
            let _enter = runtime.enter();
            serve(&socket, handler).unwrap();
        }
        FakeAgent {
            socket,
            state,
            _dir: dir,
            runtime: Some(runtime),
        }
    }

    /// Stops serving and removes the socket: the agent is "down".
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One plugin run: exit code and stdout parsed as JSON (Null when empty).
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Value,
    pub stderr: String,
}

/// Execs `binary` in `node` (`ip netns exec`) with `env` and `stdin`.
pub fn exec_in(node: &Netns, binary: &str, env: &[(&str, String)], stdin: &str) -> Run {
    use std::io::Write;
    let mut child = Proc::new("ip")
        .args(["netns", "exec", &node.name, binary])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout not JSON ({e}): {text}"))
        },
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_gingham-cni");

/// The runtime's variables for one container.
pub fn cni_env(
    command: &str,
    container: &str,
    pod_ns: Option<&Netns>,
    pod: &str,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", container.to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_PATH", "/usr/lib/cni".to_string()),
        (
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}"),
        ),
    ];
    if let Some(ns) = pod_ns {
        env.push(("CNI_NETNS", ns.path()));
    }
    env
}

pub fn conf(socket: &Path, extra: Value) -> String {
    let mut c = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "type": "gingham-cni",
        "mtu": 1400,
        "control_socket": socket,
        "ipam": {"type": "gingham-ipam"},
        "log_level": "debug",
    });
    if let (Some(obj), Value::Object(more)) = (c.as_object_mut(), extra) {
        obj.extend(more);
    }
    c.to_string()
}
