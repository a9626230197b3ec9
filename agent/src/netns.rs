//! Running async code inside another network namespace.
//!
//! A netlink socket belongs to the namespace of the thread that opened it, and `setns` changes
//! the namespace of the calling thread only. So [`run_in_netns`] enters the namespace on a fresh,
//! dedicated OS thread and builds a current-thread tokio runtime *on that thread*: every socket
//! the closure opens (rtnetlink, UDP, TCP) lives in the target namespace, and no thread of the
//! caller's runtime is ever moved. The CNI plugin, the lab and the tests all use this.
//!
//! [`NetnsGuard`] creates a named namespace with iproute2 (`ip netns add`) and deletes it on drop,
//! so tests leave nothing behind even when they panic.

use std::fs::File;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

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
    Setns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot build a tokio runtime inside {path}: {source}")]
    Runtime {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the thread running inside {path} panicked")]
    Panicked { path: PathBuf },
    #[error("cannot spawn the namespace thread: {0}")]
    Spawn(std::io::Error),
    #[error("`ip netns {action} {name}` failed: {detail}")]
    Ip {
        action: &'static str,
        name: String,
        detail: String,
    },
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
    let handle = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || -> Result<T, NetnsError> {
            enter_netns(&thread_path)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| NetnsError::Runtime {
                    path: thread_path.clone(),
                    source,
                })?;
            Ok(runtime.block_on(f()))
        })
        .map_err(NetnsError::Spawn)?;
    handle.join().map_err(|_| NetnsError::Panicked { path })?
}

/// Moves the calling thread into the namespace at `path`. Only for threads that are dedicated to
/// that namespace: the thread never comes back.
pub fn enter_netns(path: &Path) -> Result<(), NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: setns with a valid open fd; it only changes this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(NetnsError::Setns {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// A named network namespace that exists as long as this value does.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl NetnsGuard {
    /// Creates `<prefix>-<pid>-<n>`, unique in this process and across processes, with `lo` up.
    pub fn create(prefix: &str) -> Result<Self, NetnsError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name], "add", &name)?;
        let guard = NetnsGuard { name };
        ip(
            &["-n", &guard.name, "link", "set", "lo", "up"],
            "exec",
            &guard.name,
        )?;
        Ok(guard)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    /// Runs `f` inside this namespace (see [`run_in_netns`]).
    pub fn run<F, Fut, T>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        run_in_netns(&self.name, f)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // Deleting the namespace also destroys every interface still inside it.
        let _ = ip(&["netns", "del", &self.name], "del", &self.name);
    }
}

fn ip(args: &[&str], action: &'static str, name: &str) -> Result<(), NetnsError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetnsError::Ip {
            action,
            name: name.to_string(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Ip {
            action,
            name: name.to_string(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
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
    }
}
