//! Network namespaces: entering them, running code inside them, and owning named ones.
//!
//! This is the one implementation used by the CNI plugin (pod namespaces), the lab (node and
//! pod namespaces that outlive any one process) and every test (namespaces that must vanish
//! even when the test panics).
//!
//! A netlink socket belongs to the namespace of the thread that opened it, and `setns` changes
//! the namespace of the calling thread only. So code that must run inside a namespace runs on a
//! fresh, dedicated OS thread that entered it: [`run_in_netns`] builds a current-thread tokio
//! runtime *on that thread* (every socket the closure opens lives in the namespace, and no
//! thread of the caller's runtime is ever moved), [`spawn_in_netns`] runs plain code there.
//! Threads and runtimes created from such a thread inherit its namespace.
//!
//! [`Netns`] creates a named namespace with iproute2 (`ip netns add`, so `ip netns exec` works
//! on it) and, on drop, kills what still runs inside and deletes it. [`Netns::keep`] hands a
//! namespace over to a later process (the lab), which removes it with [`delete`].

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Where iproute2 keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setns into {path} failed: {source}")]
    Setns { path: PathBuf, source: nix::Error },
    #[error("cannot build a tokio runtime inside {path}: {source}")]
    Runtime {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the thread running inside {path} panicked")]
    Panicked { path: PathBuf },
    #[error("cannot spawn the namespace thread: {0}")]
    Spawn(std::io::Error),
    #[error("`ip {args}` failed: {detail}")]
    Ip { args: String, detail: String },
}

/// The path of a namespace given by name (`gk-1-2` → `/run/netns/gk-1-2`) or by path
/// (`/proc/<pid>/ns/net`, `/var/run/netns/x`: anything containing a `/` is taken as a path).
pub fn netns_path(name_or_path: &str) -> PathBuf {
    if name_or_path.contains('/') {
        PathBuf::from(name_or_path)
    } else {
        Path::new(NETNS_RUN_DIR).join(name_or_path)
    }
}

/// Whether a named namespace exists.
pub fn exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Moves the calling thread into the namespace at `path`. Only for threads that are dedicated to
/// that namespace: the thread never comes back.
pub fn enter_netns(path: &Path) -> Result<(), NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Setns {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs `f` on a new thread inside the namespace `name_or_path` (see [`netns_path`]). The
/// namespace is entered before this returns, so an error to enter it is reported here and `f`
/// never runs in the wrong namespace.
pub fn spawn_in_netns<F, T>(
    name_or_path: &str,
    f: F,
) -> Result<std::thread::JoinHandle<T>, NetnsError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let path = netns_path(name_or_path);
    // Open it here, so a missing namespace is an error of the caller's, not a thread's.
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        path: path.clone(),
        source,
    })?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            let entered = nix::sched::setns(&file, CloneFlags::CLONE_NEWNET);
            let ok = entered.is_ok();
            let _ = ready_tx.send(entered);
            if !ok {
                // The caller gets the error; this thread must not run `f` anywhere else.
                std::process::abort();
            }
            f()
        })
        .map_err(NetnsError::Spawn)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(source)) => Err(NetnsError::Setns { path, source }),
        Err(_) => Err(NetnsError::Panicked { path }),
    }
}

/// Runs `f` to completion inside the network namespace `name_or_path` (see [`netns_path`]) on a
/// dedicated thread with its own current-thread runtime, and returns its output.
///
/// Blocking: call it from synchronous code, or from async code via `spawn_blocking`.
pub fn run_in_netns<F, Fut, T>(name_or_path: &str, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let path = netns_path(name_or_path);
    let thread_path = path.clone();
    let handle = spawn_in_netns(name_or_path, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| NetnsError::Runtime {
                path: thread_path,
                source,
            })?;
        Ok(runtime.block_on(f()))
    })?;
    handle.join().map_err(|_| NetnsError::Panicked { path })?
}

/// Pids of the processes whose network namespace is `name` (`ip netns pids`).
pub fn pids(name: &str) -> Result<Vec<i32>, NetnsError> {
    let out = ip(&["netns", "pids", name])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// SIGKILL to everything running inside `name`: a process left inside would keep the namespace
/// alive after `ip netns del`.
pub fn kill_processes(name: &str) {
    for pid in pids(name).unwrap_or_default() {
        // ESRCH (it exited meanwhile) is what we wanted anyway.
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Kills what runs inside `name` and deletes it; `Ok(false)` when there was no such namespace.
/// Deleting a namespace also destroys every interface still inside it.
pub fn delete(name: &str) -> Result<bool, NetnsError> {
    if !exists(name) {
        return Ok(false);
    }
    kill_processes(name);
    ip(&["netns", "del", name])?;
    Ok(true)
}

/// A named network namespace that exists as long as this value does.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// Dropped without deleting (handed over with [`Netns::keep`]).
    kept: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates `<prefix>-<pid>-<n>`, unique in this process and across processes, with `lo` up.
    pub fn create(prefix: &str) -> Result<Self, NetnsError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Netns::named(&format!("{prefix}-{}-{n}", std::process::id()))
    }

    /// Creates the namespace `name` with `lo` up. Fails if it already exists rather than adopt
    /// somebody else's namespace.
    pub fn named(name: &str) -> Result<Self, NetnsError> {
        ip(&["netns", "add", name])?;
        // Owned from here on, so a failure below still deletes it.
        let ns = Netns {
            name: name.to_string(),
            kept: false,
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    /// Runs async `f` inside this namespace (see [`run_in_netns`]).
    pub fn run<F, Fut, T>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        run_in_netns(&self.name, f)
    }

    /// Runs `f` on a new thread inside this namespace (see [`spawn_in_netns`]).
    pub fn spawn_thread<F, T>(&self, f: F) -> Result<std::thread::JoinHandle<T>, NetnsError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn_in_netns(&self.name, f)
    }

    /// Pids of the processes inside.
    pub fn pids(&self) -> Result<Vec<i32>, NetnsError> {
        pids(&self.name)
    }

    /// Leaves the namespace in place when this value goes (its name is returned): for the lab,
    /// whose `down` runs in a later process and removes it with [`delete`].
    pub fn keep(mut self) -> String {
        self.kept = true;
        std::mem::take(&mut self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if let Err(e) = delete(&self.name) {
            eprintln!("warning: deleting namespace {}: {e}", self.name);
        }
    }
}

/// Runs `ip <args>` in the caller's namespace (only namespace management and `ip -n` commands
/// go through here: nothing adds addresses or routes to the host).
pub fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let fail = |detail: String| NetnsError::Ip {
        args: args.join(" "),
        detail,
    };
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(netns_path("x"), PathBuf::from("/run/netns/x"));
        assert_eq!(
            netns_path("/proc/1/ns/net"),
            PathBuf::from("/proc/1/ns/net")
        );
    }

    #[test]
    fn missing_namespace_is_an_error_not_a_panic() {
        let err = run_in_netns("gk-does-not-exist-0", || async {}).unwrap_err();
        assert!(matches!(err, NetnsError::Open { .. }), "{err}");
        let err = spawn_in_netns("gk-does-not-exist-0", || ()).unwrap_err();
        assert!(matches!(err, NetnsError::Open { .. }), "{err}");
        assert!(!delete("gk-does-not-exist-0").unwrap());
    }
}
