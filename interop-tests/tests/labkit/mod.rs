//! Driving `gingham-lab` from the lab tests: a lab in a directory and with a prefix of its own,
//! taken down when the test ends (also when it panics).
#![allow(dead_code)] // each lab test uses a different part

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const LAB: &str = env!("CARGO_BIN_EXE_gingham-lab");

pub struct Lab {
    pub dir: PathBuf,
    pub prefix: String,
}

impl Lab {
    /// A lab named `<tag><pid>` in a temporary directory of its own.
    pub fn new(tag: &str) -> Lab {
        Lab {
            dir: std::env::temp_dir().join(format!("gingham-{tag}-{}", std::process::id())),
            prefix: format!("{tag}{}", std::process::id()),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new(LAB)
            .arg("--dir")
            .arg(&self.dir)
            .args(["--prefix", &self.prefix])
            .args(args)
            .output()
            .expect("run gingham-lab")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "gingham-lab {args:?} failed:\n{text}\n{}",
            self.logs()
        );
        text
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "-o", "json"])).expect("status json")
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let log = e.path().join("agent.log");
                if let Ok(text) = std::fs::read_to_string(&log) {
                    let tail: Vec<&str> = text.lines().rev().take(30).collect();
                    s.push_str(&format!("--- {}\n", log.display()));
                    for l in tail.into_iter().rev() {
                        s.push_str(l);
                        s.push('\n');
                    }
                }
            }
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.cmd(&["down"]);
    }
}

pub fn in_ns(ns: &str, argv: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .expect("ip netns exec")
}

pub fn routes(ns: &str) -> Vec<Value> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "route", "show"])
        .output()
        .expect("ip route");
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

pub fn routectl(socket: &str, args: &[&str]) -> Value {
    let bin = Path::new(LAB).with_file_name("routectl");
    let out = Command::new(bin)
        .args(["--socket", socket])
        .args(args)
        .args(["-o", "json"])
        .output()
        .expect("routectl");
    assert!(
        out.status.success(),
        "routectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("routectl json")
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}
