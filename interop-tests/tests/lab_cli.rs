//! The lab as a newcomer uses it: hints that work as printed for a lab with its own --dir and
//! --prefix, a status that survives `| head`, parallel `pod add`, logs, exec, restart-agent,
//! `pod del --force` with the agent down, `node add`/`node del`, and `down` leaving nothing.

mod labkit;

use labkit::{routes, wait_until, Lab, LAB};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_lab_for_a_newcomer() {
    let lab = Lab::new("glc");
    let up = lab.ok(&["up", "--nodes", "2", "--pods-per-node", "1"]);

    // Every hint is a full command for this lab, and the first one runs as printed.
    let hints: Vec<&str> = up
        .lines()
        .skip_while(|l| !l.starts_with("The lab is up"))
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(hints.len() >= 5, "{up}");
    let dir = lab.dir.display().to_string();
    for h in &hints {
        if h.contains("gingham-lab") {
            assert!(
                h.starts_with('/')
                    && h.contains(&format!("--dir {dir}"))
                    && h.contains(&lab.prefix),
                "not a command for this lab: {h}"
            );
        } else {
            assert!(h.starts_with('/') && h.contains("routectl --socket"), "{h}");
        }
    }
    let status_hint: Vec<&str> = hints[0].split_whitespace().collect();
    let out = Command::new(status_hint[0])
        .args(&status_hint[1..])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{}-worker", lab.prefix)));
    let routectl_hint: Vec<&str> = hints[1].split_whitespace().collect();
    let out = Command::new(routectl_hint[0])
        .args(&routectl_hint[1..])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out);

    // `status | head -1`: the reader goes away. Here it is gone before the first write (a
    // pipe whose read end is already closed), so every write meets EPIPE: no panic, no
    // backtrace, and the status of a command whose reader left, not of a crash.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let out = Command::new(LAB)
        .args(["--dir", &dir, "--prefix", &lab.prefix, "status"])
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);

    // --version, as every binary has.
    let version = lab.ok(&["--version"]);
    assert!(version.starts_with("gingham-lab "), "{version}");

    // status -o json has the datastore and the logs.
    let st = lab.status();
    assert!(
        st["datastore"].as_str().unwrap().starts_with("file:"),
        "{st}"
    );
    let node0 = st["nodes"][0].clone();
    let node1 = st["nodes"][1].clone();
    let (n0, n1) = (
        node0["name"].as_str().unwrap().to_string(),
        node1["name"].as_str().unwrap().to_string(),
    );
    assert!(std::path::Path::new(node0["log"].as_str().unwrap()).exists());

    // logs and exec.
    assert!(lab.ok(&["logs", &n0]).contains("gingham-agent"));
    let routes_out = lab.ok(&["exec", &n0, "--", "ip", "route"]);
    assert!(routes_out.contains("proto bird"), "{routes_out}");
    let pod0 = st["pods"][0]["name"].as_str().unwrap().to_string();
    assert!(lab
        .ok(&["exec", &pod0, "--", "ip", "addr"])
        .contains("eth0"));
    let code = lab.cmd(&["exec", &n0, "--", "false"]).status.code();
    assert_eq!(code, Some(1), "exec passes the command's exit status on");

    // Four pods at once: four pods, four addresses.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (dir, prefix, node) = (dir.clone(), lab.prefix.clone(), n1.clone());
            std::thread::spawn(move || {
                Command::new(LAB)
                    .args(["--dir", &dir, "--prefix", &prefix, "pod", "add", &node])
                    .arg(format!("par-{i}"))
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let st = lab.status();
    let par: Vec<&Value> = st["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with("par-"))
        .collect();
    assert_eq!(par.len(), 4, "{st}");
    let mut ips: Vec<&str> = par.iter().map(|p| p["ip"].as_str().unwrap()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 4, "four distinct addresses: {st}");

    // restart-agent: a SIGTERM and a start; the routes stay and the agent comes back.
    let before: Vec<Value> = routes(&n0)
        .into_iter()
        .filter(|r| r["protocol"] == "bird")
        .collect();
    let pid_before = node0["agent_pid"].as_i64().unwrap();
    assert!(lab.ok(&["restart-agent", &n0]).contains("Restarted"));
    let st = lab.status();
    assert_ne!(st["nodes"][0]["agent_pid"].as_i64().unwrap(), pid_before);
    assert_eq!(st["nodes"][0]["agent_running"], true);
    for r in &before {
        assert!(routes(&n0).contains(r), "{r} survived the restart");
    }

    // A pod on a node whose agent is stopped: refused with a way out, then --force.
    let agent1 = st["nodes"][1]["agent_pid"].as_i64().unwrap() as i32;
    let _ = Command::new("kill").arg(agent1.to_string()).status();
    wait_until("the agent to stop", Duration::from_secs(10), || {
        lab.status()["nodes"][1]["agent_running"] == false
    });
    let refused = lab.cmd(&["pod", "del", "par-0"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("--force") && why.contains("restart-agent"),
        "{why}"
    );
    let forced = lab.ok(&["pod", "del", "par-0", "--force"]);
    assert!(forced.contains("released"), "{forced}");
    assert!(!lab.status()["pods"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "par-0"));
    lab.ok(&["restart-agent", &n1]);

    // node add with a name of ours: the namespace carries the lab's prefix; a failed add
    // leaves no folder.
    lab.ok(&["node", "add", "extra"]);
    let st = lab.status();
    let extra = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "extra")
        .unwrap()
        .clone();
    assert_eq!(extra["netns"], format!("{}-extra", lab.prefix));
    let clash = lab.cmd(&["node", "add", "extra"]);
    assert!(!clash.status.success());
    let taken = format!("{}-taken", lab.prefix);
    let _guard = agent::netns::Netns::named(&taken).unwrap();
    let failed = lab.cmd(&["node", "add", "taken"]);
    assert!(!failed.status.success());
    assert!(
        !lab.dir.join("taken").exists(),
        "a failed node add leaves no folder"
    );

    // Names are Kubernetes names, and never one of the lab's own directories.
    for bad in ["../x", "Upper", "a_b", "x-"] {
        let out = lab.cmd(&["node", "add", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("invalid node name"),
            "{bad}: {err}"
        );
    }
    let datastore = std::path::PathBuf::from(st["datastore_dir"].as_str().unwrap());
    let name = datastore.file_name().unwrap().to_str().unwrap();
    let out = lab.cmd(&["node", "add", name]);
    assert!(!out.status.success(), "a node named like the datastore");
    assert!(
        datastore.is_dir(),
        "the datastore survives a refused node add"
    );
    let out = lab.cmd(&["pod", "add", &n0, "../p"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid pod name"));

    // node del: its agent, namespace and registry record go.
    lab.ok(&["node", "del", "extra"]);
    assert!(!agent::netns::exists(&format!("{}-extra", lab.prefix)));
    let peers = labkit::routectl(
        st["nodes"][0]["control_socket"].as_str().unwrap(),
        &["node", "list"],
    );
    assert!(
        !peers
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "extra"),
        "{peers}"
    );

    let prefix = lab.prefix.clone();
    lab.ok(&["down"]);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout)
            .lines()
            .any(|l| l.starts_with(&prefix) && !l.starts_with(&taken)),
        "namespaces left behind"
    );
    assert!(!lab.dir.exists());
}
