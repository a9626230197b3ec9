//! Thin wrappers over `ip`, `ip netns exec` and process control. The lab outlives any one
//! process (`up` returns, `down` runs later), so unlike the test harness it cannot hold `Drop`
//! guards: it records what it made in its state file and removes exactly that.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn run(argv: &[&str]) -> Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", argv[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn ip(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["ip", "-n", ns];
    full.extend_from_slice(args);
    run(&full)
}

pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

pub fn netns_add(name: &str) -> Result<()> {
    run(&["ip", "netns", "add", name])?;
    ip(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Kills what still runs inside the namespace, then deletes it.
pub fn netns_del(name: &str) -> Result<bool> {
    if !netns_exists(name) {
        return Ok(false);
    }
    if let Ok(pids) = run(&["ip", "netns", "pids", name]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) with a pid read from the kernel; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    run(&["ip", "netns", "del", name])?;
    Ok(true)
}

pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// SIGTERM, then SIGKILL after a short grace: the agent leaves its routes in place on SIGTERM,
/// which does not matter here because its namespace goes next.
pub fn stop_pid(pid: i32) {
    if !pid_alive(pid) {
        return;
    }
    // SAFETY: plain signals to a pid we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..30 {
        if !pid_alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}
