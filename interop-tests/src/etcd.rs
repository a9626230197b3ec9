//! Real etcd members (Debian's `etcd-server`) in network namespaces, for the etcd datastore's
//! tests and the lab's `--datastore etcd`. Each member has its own data directory and log; a
//! member can be stopped, killed (SIGKILL, as a crash) and started again with its data, as
//! `etcd` is on a real node. `etcdctl` (Debian's `etcd-client`) reads the cluster's status.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::Daemon;
use crate::wait::wait_until;

/// Where one member runs: its namespace, address and ports.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub client_port: u16,
    pub peer_port: u16,
    /// Clients must come over TLS with a certificate this CA signed.
    pub tls: Option<MemberTls>,
}

/// PEM files of a member that serves clients over TLS and asks for their certificates.
#[derive(Debug, Clone)]
pub struct MemberTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// A client certificate and key that CA signed, for `etcdctl`.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl MemberSpec {
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.ip, self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.peer_port)
    }
}

/// One etcd process (or none, while stopped).
pub struct Member {
    pub spec: MemberSpec,
    pub data_dir: PathBuf,
    log_dir: PathBuf,
    daemon: Option<Daemon>,
}

/// A cluster of members that know each other from the start (`--initial-cluster`).
pub struct EtcdCluster {
    pub members: Vec<Member>,
    initial_cluster: String,
    token: String,
}

impl EtcdCluster {
    /// Describes the cluster; nothing runs until [`EtcdCluster::start`]. Data and logs go
    /// under `dir/<member>`.
    pub fn new(specs: Vec<MemberSpec>, dir: &Path, token: &str) -> Result<Self> {
        let initial_cluster = initial_cluster(&specs);
        let mut members = Vec::new();
        for spec in specs {
            let log_dir = dir.join(&spec.name);
            std::fs::create_dir_all(&log_dir)
                .with_context(|| format!("creating {}", log_dir.display()))?;
            members.push(Member {
                data_dir: log_dir.join("data"),
                log_dir,
                spec,
                daemon: None,
            });
        }
        Ok(EtcdCluster {
            members,
            initial_cluster,
            token: token.to_string(),
        })
    }

    /// Three members on one namespace's loopback (distinct ports): the tests' cluster.
    pub fn on_loopback(netns: &str, n: usize, dir: &Path) -> Result<Self> {
        let specs = (0..n)
            .map(|i| MemberSpec {
                name: format!("etcd{i}"),
                netns: netns.to_string(),
                ip: Ipv4Addr::LOCALHOST,
                client_port: 2379 + 10 * i as u16,
                peer_port: 2380 + 10 * i as u16,
                tls: None,
            })
            .collect();
        EtcdCluster::new(specs, dir, netns)
    }

    /// Starts every member and waits until the cluster has a leader and answers.
    pub fn start(&mut self) -> Result<()> {
        for i in 0..self.members.len() {
            self.spawn(i)?;
        }
        self.wait_healthy(Duration::from_secs(30))
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let (initial_cluster, token) = (self.initial_cluster.clone(), self.token.clone());
        let m = &mut self.members[i];
        if m.daemon.as_mut().is_some_and(|d| d.is_running()) {
            return Ok(());
        }
        let argv = member_argv(&m.spec, &m.data_dir, &initial_cluster, &token);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        m.daemon = Some(Daemon::spawn(
            Some(&m.spec.netns),
            &m.log_dir,
            "etcd",
            &argv,
            &[],
        )?);
        Ok(())
    }

    /// The client URLs of every member, for `--etcd-endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.spec.client_url()).collect()
    }

    /// Starts member `i` again (with its data: it rejoins the cluster).
    pub fn start_member(&mut self, i: usize) -> Result<()> {
        self.spawn(i)
    }

    /// SIGTERM, as `systemctl stop` would.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut d) = self.members[i].daemon.take() {
            d.stop_with(Duration::from_secs(5));
        }
    }

    /// SIGKILL: a member that crashes.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut d) = self.members[i].daemon.take() {
            d.kill();
        }
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.members[i]
            .daemon
            .as_mut()
            .is_some_and(|d| d.is_running())
    }

    /// `etcdctl <args>` against the running members, from the first running member's namespace.
    pub fn etcdctl(&mut self, args: &[&str]) -> Result<String> {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|i| self.is_running(*i))
            .collect();
        let Some(&first) = running.first() else {
            bail!("no etcd member is running");
        };
        let endpoints = running
            .iter()
            .map(|i| self.members[*i].spec.client_url())
            .collect::<Vec<_>>()
            .join(",");
        etcdctl(&self.members[first].spec.netns, &endpoints, args)
    }

    /// The index of the member that is leader now, if the running members have one.
    pub fn leader(&mut self) -> Result<Option<usize>> {
        let statuses = self.status()?;
        Ok(statuses.iter().position(|s| s.is_leader))
    }

    /// One line per member: running or not, and for a running one its raft state.
    pub fn status(&mut self) -> Result<Vec<MemberStatus>> {
        let mut out = Vec::new();
        for i in 0..self.members.len() {
            let running = self.is_running(i);
            let spec = self.members[i].spec.clone();
            let status = if running {
                member_status(&spec).ok()
            } else {
                None
            };
            out.push(MemberStatus {
                name: spec.name.clone(),
                endpoint: spec.client_url(),
                running,
                is_leader: status.as_ref().is_some_and(|s| s.0),
                revision: status.map(|s| s.1),
            });
        }
        Ok(out)
    }

    /// Waits until a leader is elected among the running members and they answer.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        wait_until(timeout, "etcd to elect a leader", || {
            for i in 0..self.members.len() {
                if self.members[i]
                    .daemon
                    .as_ref()
                    .is_some_and(|d| d.has_exited())
                {
                    bail!(
                        "etcd member {} exited:\n{}",
                        self.members[i].spec.name,
                        self.members[i]
                            .daemon
                            .as_ref()
                            .map(|d| d.log_tail(20))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(self.leader().ok().flatten().is_some())
        })
    }
}

/// `--initial-cluster` for these members.
pub fn initial_cluster(specs: &[MemberSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("{}={}", s.name, s.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The command line of one member of a cluster of `initial_cluster`.
pub fn member_argv(
    s: &MemberSpec,
    data_dir: &Path,
    initial_cluster: &str,
    token: &str,
) -> Vec<String> {
    let tls = s.tls.iter().flat_map(|t| {
        [
            format!("--cert-file={}", t.cert.display()),
            format!("--key-file={}", t.key.display()),
            format!("--trusted-ca-file={}", t.ca.display()),
            "--client-cert-auth".to_string(),
        ]
    });
    let mut argv = vec![
        "etcd".to_string(),
        format!("--name={}", s.name),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={}", s.client_url()),
        format!("--advertise-client-urls={}", s.client_url()),
        format!("--listen-peer-urls={}", s.peer_url()),
        format!("--initial-advertise-peer-urls={}", s.peer_url()),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-token={token}"),
        // Restarted with its data, a member rejoins: the state flag is only read on the first
        // start.
        "--initial-cluster-state=new".to_string(),
        "--logger=zap".to_string(),
        "--log-outputs=stderr".to_string(),
    ];
    argv.extend(tls);
    argv
}

/// What `gingham-lab status` shows of a member.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub name: String,
    pub endpoint: String,
    pub running: bool,
    pub is_leader: bool,
    pub revision: Option<i64>,
}

/// (is it the leader, its revision), from `etcdctl endpoint status` against this member alone.
pub fn member_status(spec: &MemberSpec) -> Result<(bool, i64)> {
    let mut args: Vec<String> = Vec::new();
    if let Some(t) = &spec.tls {
        args.push(format!("--cacert={}", t.ca.display()));
        args.push(format!("--cert={}", t.client_cert.display()));
        args.push(format!("--key={}", t.client_key.display()));
    }
    args.extend(["endpoint", "status", "-w", "json"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = etcdctl(&spec.netns, &spec.client_url(), &args)?;
    let v: serde_json::Value = serde_json::from_str(&out).context("etcdctl endpoint status")?;
    let s = &v[0]["Status"];
    let member = s["header"]["member_id"].as_u64().context("member_id")?;
    let leader = s["leader"].as_u64().unwrap_or(0);
    let revision = s["header"]["revision"].as_i64().unwrap_or(0);
    Ok((leader != 0 && leader == member, revision))
}

/// `etcdctl` (API v3) inside `netns`, with a short deadline so a dead cluster answers fast.
pub fn etcdctl(netns: &str, endpoints: &str, args: &[&str]) -> Result<String> {
    crate::process::find_program("etcdctl")?;
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "etcdctl"])
        .arg(format!("--endpoints={endpoints}"))
        .args(["--dial-timeout=2s", "--command-timeout=3s"])
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()
        .context("running etcdctl")?;
    if !out.status.success() {
        bail!(
            "etcdctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
