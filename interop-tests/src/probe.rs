//! Traffic probes inside a namespace: ping and tcpdump captures.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns::Netns;
use crate::process::Daemon;
use crate::wait::wait_until;

/// One ICMP echo from `ns` to `dst`, waiting up to `timeout` (whole seconds, at least 1) for the
/// reply. `Ok(false)` means no reply; `Err` means ping itself could not run.
pub fn ping(ns: &Netns, dst: Ipv4Addr, timeout: Duration) -> Result<bool> {
    let secs = timeout.as_secs().max(1).to_string();
    let out = ns.exec(&["ping", "-n", "-c", "1", "-W", &secs, &dst.to_string()])?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => anyhow::bail!(
            "ping in {} failed: {}",
            ns.name(),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A running `tcpdump` writing to a pcap file in the test directory.
pub struct Capture {
    daemon: Daemon,
    pcap: PathBuf,
    ns_name: String,
}

impl Capture {
    /// Starts capturing on `iface` in `ns` with a BPF `filter` (e.g. `"tcp port 179"`) and returns
    /// once tcpdump says it is listening, so no packet sent afterwards is missed.
    pub fn start(ns: &Netns, dir: &Path, name: &str, iface: &str, filter: &str) -> Result<Capture> {
        let pcap = dir.join(format!("{name}.pcap"));
        let pcap_s = pcap.to_string_lossy().into_owned();
        let mut argv = vec![
            "tcpdump",
            "-i",
            iface,
            "-nn",
            "-U",
            "--immediate-mode",
            "-Z",
            "root",
            "-w",
            &pcap_s,
        ];
        argv.extend(filter.split_whitespace());
        let daemon = ns.spawn(dir, &format!("tcpdump-{name}"), &argv)?;
        let log = daemon.log_path().to_path_buf();
        wait_until(
            Duration::from_secs(5),
            &format!("tcpdump on {iface} in {} to listen", ns.name()),
            || Ok(std::fs::read_to_string(&log)?.contains("listening on")),
        )?;
        Ok(Capture {
            daemon,
            pcap,
            ns_name: ns.name().to_string(),
        })
    }

    /// Stops the capture (SIGINT flushes the file) and returns the decoded packets, as
    /// `tcpdump -nn -v -r` prints them.
    pub fn stop(mut self) -> Result<String> {
        self.daemon.signal(nix::sys::signal::Signal::SIGINT);
        self.daemon.stop_with(Duration::from_secs(2));
        let out = std::process::Command::new("tcpdump")
            .args(["-nn", "-v", "-r"])
            .arg(&self.pcap)
            .output()
            .with_context(|| format!("reading capture from {}", self.ns_name))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn pcap(&self) -> &Path {
        &self.pcap
    }
}
