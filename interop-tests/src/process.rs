//! `Daemon`: a child process (usually inside a namespace) that is stopped and reaped on drop.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::wait::wait_until;
use crate::workdir::tail;

/// A running child. Its stdout and stderr go to one log file; when a test panics the tail of
/// that log is printed, which is usually all one needs to see why a peer misbehaved.
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    reaped: bool,
    /// How it ended, once reaped by [`Daemon::is_running`] or [`Daemon::exit_status`].
    status: Option<std::process::ExitStatus>,
}

impl Daemon {
    /// Starts `argv` (inside namespace `ns` when given) with output to `<dir>/<log>.log`.
    pub fn spawn(
        ns: Option<&str>,
        dir: &Path,
        log: &str,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        // `ip netns exec` itself would start fine and only then fail to exec a missing program,
        // which would surface much later as a timeout: check up front instead.
        find_program(argv[0])?;
        let log_path = dir.join(format!("{log}.log"));
        let out =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let err = out.try_clone()?;
        let mut cmd = match ns {
            // `ip netns exec` execs the program in place, so the child pid is the daemon's pid.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(argv);
                c
            }
            None => {
                let mut c = Command::new(argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Own process group: stopping the daemon also stops the helpers it forked.
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {argv:?} (is it installed?)"))?;
        Ok(Daemon {
            name: log.to_string(),
            child,
            log: log_path,
            reaped: false,
            status: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Whether the process is still alive (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        if self.reaped {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.reaped = true;
                self.status = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// How the process ended, or `None` while it runs (reaps it if it exited).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.is_running();
        self.status
    }

    /// Whether the process has exited, without reaping it (so `&self` suffices).
    pub fn has_exited(&self) -> bool {
        if self.reaped {
            return true;
        }
        // WNOWAIT leaves the child waitable for `Child::wait` later.
        use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(nix::unistd::Pid::from_raw(self.pid())), flags) {
            Ok(WaitStatus::StillAlive) | Err(_) => false,
            Ok(_) => true,
        }
    }

    /// Polls `ready` like `wait_until`, but fails at once, with the log tail, if the daemon
    /// exits meanwhile (a bad config should not look like a slow start).
    pub fn wait_ready(
        &self,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let mut died = false;
        wait_until(timeout, what, || {
            if self.has_exited() {
                died = true;
                return Ok(true);
            }
            ready()
        })?;
        if died {
            bail!(
                "{} exited while waiting for {what}; last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(20)
            );
        }
        Ok(())
    }

    /// Sends `signal` to the daemon's whole process group (it is the group's leader).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if !self.reaped {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid()), signal);
        }
    }

    /// SIGTERM, then SIGKILL if it is still alive after `grace`; always reaps.
    pub fn stop_with(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    pub fn stop(&mut self) {
        self.stop_with(Duration::from_secs(2));
    }

    /// SIGKILL and reap: the abrupt end a crashed peer would have.
    pub fn kill(&mut self) {
        if self.reaped {
            return;
        }
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.status = self.child.wait().ok();
        self.reaped = true;
    }
}

/// Resolves `program` like execvp does; fails with a message naming the program.
pub fn find_program(program: &str) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|d| d.join(program))
            .collect()
    };
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("{program} is not installed (not found in PATH)"))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of {} ({}) ----\n{}\n----",
                self.name,
                self.log.display(),
                self.log_tail(30)
            );
        }
        self.kill();
    }
}
