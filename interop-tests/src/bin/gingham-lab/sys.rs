//! Thin wrappers over `ip`, `ip netns exec` and process control. The lab outlives any one
//! process (`up` returns, `down` runs later), so unlike the test harness it cannot hold `Drop`
//! guards: it records what it made in its state file and removes exactly that.

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
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

/// `ip -n <ns> -batch -` with `commands` (one per line) on stdin: one process for many changes.
pub fn ip_batch(ns: &str, commands: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ip -batch")?;
    child
        .stdin
        .take()
        .context("ip -batch stdin")?
        .write_all(commands.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`ip -n {ns} -batch` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub fn netns_exists(name: &str) -> bool {
    agent::netns::exists(name)
}

/// Creates `name` (with `lo` up) and leaves it in place: `down` removes it later.
pub fn netns_add(name: &str) -> Result<()> {
    agent::netns::Netns::named(name)?.keep();
    Ok(())
}

/// Kills what still runs inside the namespace, then deletes it.
pub fn netns_del(name: &str) -> Result<bool> {
    Ok(agent::netns::delete(name)?)
}

/// Deletes every namespace in `names`, a few at a time in parallel; how many existed.
pub fn netns_del_all(names: &[&str]) -> Result<usize> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let chunk = names.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> Result<usize> {
                    let mut n = 0;
                    for name in part {
                        n += usize::from(netns_del(name)?);
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a deleting thread panicked"))?
            })
            .sum()
    })
}

/// SIGTERM to every pid, then up to 3 s for all of them together, then SIGKILL to the rest.
pub fn stop_all(pids: &[i32]) {
    for &pid in pids.iter().filter(|p| pid_alive(**p)) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(3) {
        if !pids.iter().any(|p| pid_alive(*p)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for &pid in pids.iter().filter(|p| pid_alive(**p)) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

pub fn pid_alive(pid: i32) -> bool {
    // Signal 0 only checks that the process exists, and a zombie exists: an agent the lab
    // started is reparented to PID 1 when the lab command exits, and a PID 1 that reaps late
    // (as in some containers and VMs) leaves a killed agent a zombie for a while. A zombie
    // runs nothing, so it counts as dead.
    pid > 0 && nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok() && !zombie(pid)
}

/// The process has exited and waits to be reaped (state Z, or X while it goes).
fn zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold any byte.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|s| s == "Z" || s == "X")
}

/// SIGTERM, and waits up to `grace` for the process to exit; false if it is still there.
pub fn terminate(pid: i32, grace: std::time::Duration) -> bool {
    if !pid_alive(pid) {
        return true;
    }
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
    let start = std::time::Instant::now();
    while start.elapsed() < grace {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// SIGTERM, then SIGKILL after a short grace: the agent leaves its routes in place on SIGTERM,
/// which does not matter here because its namespace goes next.
pub fn stop_pid(pid: i32) {
    if !pid_alive(pid) {
        return;
    }
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
    for _ in 0..30 {
        if !pid_alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: the process has exited but still exists as a zombie.
        let start = std::time::Instant::now();
        while !zombie(pid) && start.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok());
        assert!(
            !pid_alive(pid),
            "an exited, unreaped process counts as dead"
        );
        child.wait().unwrap();

        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(pid_alive(sleeper.id() as i32));
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }
}
