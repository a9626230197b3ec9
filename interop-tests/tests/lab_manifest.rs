//! The lab runs what the DaemonSet runs: `gingham-lab up --from-manifest deploy/gingham.yaml`
//! starts each node's agent with exactly the container's command and environment
//! (NODENAME from spec.nodeName), after running the install-cni init container into the node's
//! own CNI directories, and wires pods with the conflist that container wrote. Only the
//! datastore is the lab's. Nothing of it lands in the machine's own directories.

mod labkit;

use labkit::{in_ns, routectl, Lab};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gingham.yaml")
}

/// The DaemonSet's agent container and the ConfigMap's conflist, read the plain way.
fn daemonset() -> (Value, String) {
    let text = std::fs::read_to_string(manifest()).unwrap();
    use serde::Deserialize;
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| v.is_object())
        .collect();
    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let agent = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gingham-agent")
        .unwrap()
        .clone();
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let conflist = cm["data"]["10-gingham.conflist"]
        .as_str()
        .unwrap()
        .to_string();
    (agent, conflist)
}

fn environ(pid: i64) -> Vec<(String, String)> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn the_lab_from_the_manifest_runs_the_daemonset_as_written() {
    // Nothing the manifest's containers write may reach the machine: these must not appear.
    let untouched = ["/host", "/etc/gingham-cni", "/run/gingham"];
    let before: Vec<bool> = untouched.iter().map(|p| Path::new(p).exists()).collect();

    let lab = Lab::new("gmf");
    let m = manifest();
    let up = lab.ok(&[
        "up",
        "--from-manifest",
        m.to_str().unwrap(),
        "--nodes",
        "2",
        "--pods-per-node",
        "1",
    ]);
    assert!(up.contains("the datastore is the lab's file store"), "{up}");
    assert!(up.contains("0% packet loss"), "{up}");
    let st = lab.status();
    assert_eq!(st["from_manifest"], m.to_str().unwrap());
    let (agent, conflist) = daemonset();

    for n in st["nodes"].as_array().unwrap() {
        let name = n["name"].as_str().unwrap();
        let pid = n["agent_pid"].as_i64().unwrap();
        // The command as written, run from the image's path.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let want: Vec<String> = agent["command"]
            .as_array()
            .unwrap()
            .iter()
            .chain(agent["args"].as_array().into_iter().flatten())
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(argv, want, "{name}");
        assert!(
            std::fs::metadata(format!("/proc/{pid}/root/usr/local/bin/gingham-agent"))
                .is_ok_and(|m| m.is_file()),
            "the image's binary is at the image's path in the container"
        );
        // Every variable as the manifest says, the fieldRef filled in; DATASTORE the lab's.
        let env = environ(pid);
        for e in agent["env"].as_array().unwrap() {
            let k = e["name"].as_str().unwrap();
            let got = env
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.as_str());
            match (k, e["value"].as_str()) {
                ("DATASTORE", _) => {
                    assert_eq!(
                        got,
                        Some(format!("file:{}", st["datastore_dir"].as_str().unwrap()).as_str())
                    )
                }
                ("NODENAME", None) => assert_eq!(got, Some(name)),
                (_, Some(v)) => assert_eq!(got, Some(v), "{k} on {name}"),
                (k, None) => panic!("{k}: an unexpected valueFrom"),
            }
        }
        // The init container wrote the node's own CNI directories.
        let root = lab.dir.join(name).join("root");
        let written =
            std::fs::read_to_string(root.join("etc/cni/net.d/10-gingham.conflist")).unwrap();
        assert_eq!(
            written, conflist,
            "the conflist is the ConfigMap's, byte for byte"
        );
        let plugin = std::fs::read(root.join("opt/cni/bin/gingham-cni")).unwrap();
        let built = std::fs::read(Path::new(labkit::LAB).with_file_name("gingham-cni")).unwrap();
        assert!(
            plugin == built,
            "the plugin installed is the build's gingham-cni"
        );
        // The socket where the DaemonSet's hostPath puts it, on this node.
        assert_eq!(
            n["control_socket"],
            root.join("var/run/gingham/agent.sock").to_str().unwrap()
        );
        let peers = routectl(n["control_socket"].as_str().unwrap(), &["show", "peers"]);
        assert!(peers
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "Established"));
    }

    // A pod added now is wired through that conflist (gingham-cni, then portmap) and pings.
    let nodes = st["nodes"].as_array().unwrap();
    let worker = nodes[1]["name"].as_str().unwrap().to_string();
    lab.ok(&["pod", "add", &worker, "late"]);
    let st = lab.status();
    let pods = st["pods"].as_array().unwrap();
    let late = pods.iter().find(|p| p["name"] == "late").unwrap();
    let far = pods.iter().find(|p| p["node"] != worker.as_str()).unwrap();
    let ping = in_ns(
        late["netns"].as_str().unwrap(),
        &["ping", "-c", "2", "-W", "2", far["ip"].as_str().unwrap()],
    );
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    // A rollout of one node: the same container again.
    lab.ok(&["restart-agent", &worker]);
    lab.ok(&["pod", "del", "late"]);

    lab.ok(&["down"]);
    let after: Vec<bool> = untouched.iter().map(|p| Path::new(p).exists()).collect();
    assert_eq!(before, after, "the machine's {untouched:?}");
}
