//! Agents on the `kubernetes` datastore, end to end: three agents in node namespaces with
//! `--datastore kubernetes` and a KUBECONFIG, and an API server in memory
//! (`gingham-fake-apiserver`, the store's own test API over HTTP) in a namespace of its own on
//! the underlay. There is no real API server on these machines; this one speaks the same HTTP
//! for everything the agent uses.
//!
//! - An agent started before the API server answers waits, saying so, and does not exit.
//! - The mesh comes from the Node objects' `gingham.io/*` annotations, the routes from the
//!   IPAMBlock custom resources.
//! - A Node deleted (its machine gone) leaves every mesh; after the grace its blocks are
//!   released, once, by the holder of the `node-collector` Lease.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use interop_tests::agent::{binary, Agent, AgentConfig};
use interop_tests::{wait_until, Daemon, TestDir, Underlay};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

struct Api<'a> {
    ns: &'a interop_tests::Netns,
    base: String,
}

impl Api<'_> {
    /// `curl` from the API server's own namespace: the objects as Kubernetes holds them.
    fn get(&self, path: &str) -> Result<Value> {
        let out = self.ns.run(&[
            "curl",
            "-sf",
            "--max-time",
            "5",
            &format!("{}{path}", self.base),
        ])?;
        Ok(serde_json::from_str(&out)?)
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.ns.run(&[
            "curl",
            "-sf",
            "--max-time",
            "5",
            "-X",
            "DELETE",
            &format!("{}{path}", self.base),
        ])?;
        Ok(())
    }
}

fn blocks_of(api: &Api, node: &str) -> Result<Vec<String>> {
    let list = api.get("/apis/gingham.io/v1/ipamblocks")?;
    Ok(list["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter(|b| b["spec"]["affinity"] == format!("host:{node}").as_str())
        .map(|b| b["spec"]["cidr"].as_str().unwrap_or_default().to_string())
        .collect())
}

#[test]
fn agents_on_the_kubernetes_datastore_mesh_route_and_release_a_deleted_node() -> Result<()> {
    let dir = TestDir::new("kube")?;
    // Nodes 0..2 run agents; the fourth address is the API server's.
    let u = Underlay::new("gkb", "172.18.0.0/16".parse()?, 4)?;
    let api_node = u.node(3);
    let base = format!("http://{}:6443", api_node.ip);
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {base}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: kube-system\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )?;
    let names: Vec<String> = (0..3).map(|i| format!("node{i}")).collect();
    let config = |i: usize| {
        let mut cfg = AgentConfig::new(&names[i], u.node(i).ip, 64512);
        cfg.mesh = true;
        cfg.datastore_spec = Some("kubernetes".into());
        cfg.env
            .push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
        cfg.env.push(("NODE_RELEASE_GRACE".into(), "3".into()));
        cfg
    };

    // Agent 0 comes up before the API server does: it waits, and says so.
    let a0 = Agent::launch(&u.node(0).ns, &dir.sub("node0")?, config(0))?;
    wait_until(T, "node0 to say it waits for the API", || {
        Ok(a0.log_tail(20).contains("waiting for the datastore"))
    })
    .with_context(|| a0.log_tail(20))?;

    let bin = binary("GINGHAM_FAKE_APISERVER_BIN", "gingham-fake-apiserver")?;
    let listen = format!("{}:6443", api_node.ip);
    let mut argv = vec![bin.to_str().context("path")?, "--listen", &listen];
    for n in &names {
        argv.extend(["--node", n]);
    }
    let _apiserver: Daemon = api_node.ns.spawn(dir.path(), "apiserver", &argv)?;
    let api = Api {
        ns: &api_node.ns,
        base,
    };
    a0.wait_ready(T)?;
    let agents: Vec<Agent> = std::iter::once(Ok(a0))
        .chain((1..3).map(|i| Agent::start(&u.node(i).ns, &dir.sub(&names[i])?, config(i))))
        .collect::<Result<_>>()?;
    let ips: Vec<Ipv4Addr> = (0..3).map(|i| u.node(i).ip).collect();

    // The mesh, from the Node objects.
    for (i, a) in agents.iter().enumerate() {
        wait_until(T, &format!("{}'s mesh", names[i]), || {
            Ok((0..3)
                .filter(|j| *j != i)
                .all(|j| a.established(ips[j]).unwrap_or(false)))
        })
        .with_context(|| a.log_tail(30))?;
    }
    let node1 = api.get("/api/v1/nodes/node1")?;
    assert_eq!(
        node1["metadata"]["annotations"]["gingham.io/ipv4-address"],
        ips[1].to_string()
    );
    assert_eq!(node1["metadata"]["annotations"]["gingham.io/as"], "64512");

    // Addresses from blocks that are IPAMBlock objects; every node routes the others'.
    for (i, a) in agents.iter().enumerate() {
        a.assign(&format!("pod-on-{i}"))?;
    }
    for i in 0..3 {
        let mine = blocks_of(&api, &names[i])?;
        assert_eq!(mine.len(), 1, "{}: {mine:?}", names[i]);
        for (j, other) in u.nodes.iter().enumerate().take(3) {
            if j == i {
                continue;
            }
            wait_until(
                T,
                &format!("{} to route {}'s block", names[j], names[i]),
                || {
                    Ok(other
                        .ns
                        .routes_proto("bird")?
                        .iter()
                        .any(|r| r.dst == mine[0] && r.gateway == Some(ips[i])))
                },
            )?;
        }
    }
    let handles = api.get("/apis/gingham.io/v1/ipamhandles")?;
    assert_eq!(handles["items"].as_array().map(Vec::len), Some(3));

    // node2's machine is gone: its agent dies with it, and the cluster deletes the Node.
    let block2 = blocks_of(&api, "node2")?;
    let mut agents = agents;
    agents[2].kill();
    api.delete("/api/v1/nodes/node2")?;
    for i in 0..2 {
        let n = &u.node(i).ns;
        wait_until(T, &format!("{} to drop node2", names[i]), || {
            Ok(!agents[i].peers()?.iter().any(|p| p.address == ips[2])
                && !n.routes_proto("bird")?.iter().any(|r| r.dst == block2[0]))
        })
        .with_context(|| agents[i].log_tail(30))?;
    }
    // After the grace, its block goes, released by one agent: the lease's holder.
    wait_until(T, "node2's block to be released", || {
        Ok(blocks_of(&api, "node2")?.is_empty())
    })
    .with_context(|| agents[0].log_tail(30))?;
    std::thread::sleep(Duration::from_secs(2));
    let released: Vec<usize> = (0..2)
        .filter(|i| {
            agents[*i]
                .log_tail(500)
                .contains("node collector: node node2 left the mesh")
        })
        .collect();
    assert_eq!(released.len(), 1, "released once: {released:?}");
    let lease = api.get(
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/gingham-leader-node-collector",
    )?;
    assert_eq!(
        lease["spec"]["holderIdentity"],
        names[released[0]].as_str(),
        "{lease}"
    );
    Ok(())
}
