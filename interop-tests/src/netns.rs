//! `Netns`: the agent's namespace guard ([`agent::netns::Netns`]: deleted, with every process
//! inside it, on drop) with the command-line helpers tests use inside a namespace.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

use crate::process::Daemon;
use crate::routes::{self, Route};

/// A network namespace owned by this process. Dropping it kills what still runs inside and
/// deletes it; its veth ends vanish with it.
#[derive(Debug)]
pub struct Netns {
    inner: agent::netns::Netns,
    name: String,
}

impl Netns {
    /// A namespace named `<prefix>-<pid>-<counter>`: unique across parallel tests and across
    /// test binaries running at the same time.
    pub fn new(prefix: &str) -> Result<Netns> {
        Ok(Netns::wrap(agent::netns::Netns::create(prefix)?))
    }

    /// A namespace with a caller-given name (the lab wants stable names like `gingham-node1`).
    /// Fails if it already exists rather than adopting somebody else's namespace.
    pub fn named(name: &str) -> Result<Netns> {
        Ok(Netns::wrap(agent::netns::Netns::named(name)?))
    }

    fn wrap(inner: agent::netns::Netns) -> Netns {
        let name = inner.name().to_string();
        Netns { inner, name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `argv` inside the namespace and returns its output whatever the exit status.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .with_context(|| format!("running {argv:?} in {}", self.name))?;
        Ok(out)
    }

    /// Runs `argv` inside the namespace; fails unless it exits 0. Returns stdout.
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        let out = self.exec(argv)?;
        check(&format!("{argv:?} in {}", self.name), out)
    }

    /// `ip -n <ns> <args>`: cheaper than `ip netns exec` (no mount namespace).
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        run_host(&argv)
    }

    /// Starts a long-running process inside the namespace, its output going to `<dir>/<log>.log`.
    pub fn spawn(&self, dir: &Path, log: &str, argv: &[&str]) -> Result<Daemon> {
        Daemon::spawn(Some(&self.name), dir, log, argv, &[])
    }

    /// Like `spawn`, with extra environment variables.
    pub fn spawn_env(
        &self,
        dir: &Path,
        log: &str,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        Daemon::spawn(Some(&self.name), dir, log, argv, env)
    }

    /// Sets an IPv4/IPv6 sysctl of this namespace, e.g. `("net/ipv4/ip_forward", "1")`.
    /// /proc/sys/net shows the namespace of the process that opens it, hence the shell inside.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let key = key.replace('.', "/");
        let script = format!("echo {value} > /proc/sys/{key}");
        self.run(&["sh", "-c", &script])?;
        Ok(())
    }

    pub fn set_ip_forward(&self, on: bool) -> Result<()> {
        self.sysctl("net/ipv4/ip_forward", if on { "1" } else { "0" })
    }

    /// The main routing table (`ip -j route show`).
    pub fn routes(&self) -> Result<Vec<Route>> {
        routes::parse(&self.ip(&["-j", "route", "show"])?)
    }

    /// Routes of one protocol, e.g. `"bird"` (protocol 12, what Gingham installs).
    pub fn routes_proto(&self, proto: &str) -> Result<Vec<Route>> {
        routes::parse(&self.ip(&["-j", "route", "show", "proto", proto])?)
    }

    /// Runs `f` on a new thread that has entered this namespace (setns(2) on that thread
    /// only; the rest of the process stays in the host namespace). Threads `f` creates, such as
    /// a tokio runtime's workers, inherit the namespace, so sockets they open live in it.
    pub fn spawn_thread<T, F>(&self, f: F) -> Result<std::thread::JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Ok(self.inner.spawn_thread(f)?)
    }

    /// Pids of the processes whose network namespace is this one.
    pub fn pids(&self) -> Result<Vec<i32>> {
        Ok(self.inner.pids()?)
    }
}

/// Runs a command in the host namespace (only `ip` management commands go through here: the
/// harness never adds addresses or routes to the host).
pub(crate) fn run_host(argv: &[&str]) -> Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| format!("running {argv:?}"))?;
    check(&format!("{argv:?}"), out)
}

pub(crate) fn check(what: &str, out: Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Names of all namespaces on the host (`ip netns list`), for leak checks.
pub fn list_all() -> Result<Vec<String>> {
    let out = run_host(&["ip", "netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}
