//! The `etcd` datastore against real etcd (Debian's `etcd-server`) in network namespaces: the
//! store conformance suite every backend passes, a watch that resumes after a disconnect during
//! which etcd compacted its history, a node whose lease runs out, and a call to a cluster without
//! quorum that fails fast and clearly instead of hanging.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use interop_tests::etcd::{etcdctl, EtcdCluster, MemberSpec, MemberTls};
use interop_tests::{veth_pair, Netns, TestDir};
use ipam::store::{EtcdConfig, EtcdStore, Kind, Store, StoreError, WatchEvent};
use ipam::{NodeRecord, NodeRegistry};
use serde_json::json;

/// A store whose client lives in `ns` (its runtime's thread is created there, so its sockets
/// are too), under a prefix of its own.
fn store_in(ns: &Netns, cfg: EtcdConfig) -> Result<Arc<dyn Store>> {
    let s = ns
        .spawn_thread(move || EtcdStore::connect(&cfg))?
        .join()
        .map_err(|_| anyhow::anyhow!("connect panicked"))??;
    Ok(Arc::new(s))
}

fn config(endpoints: Vec<String>, prefix: &str) -> EtcdConfig {
    let mut cfg = EtcdConfig::new(endpoints);
    cfg.prefix = prefix.to_string();
    cfg
}

#[test]
fn etcd_store_passes_the_store_conformance_suite() -> Result<()> {
    let dir = TestDir::new("etcdconf")?;
    let ns = Netns::new("getcd")?;
    let mut cluster = EtcdCluster::on_loopback(ns.name(), 1, dir.path())?;
    cluster.start()?;
    let endpoints = cluster.endpoints();
    let n = std::sync::atomic::AtomicUsize::new(0);
    ipam::conformance::run_all(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        store_in(
            &ns,
            config(endpoints.clone(), &format!("/conformance/{i}/")),
        )
        .unwrap()
    });
    // Every record is a key of its own under the prefix, its value the record's JSON.
    let out = etcdctl(
        ns.name(),
        &endpoints[0],
        &["get", "--prefix", "/conformance/0/IPAMConfig/a"],
    )?;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["/conformance/0/IPAMConfig/a", "{}"]
    );
    Ok(())
}

/// The state a reader of a watch has built: name → data.
fn apply(state: &mut BTreeMap<String, serde_json::Value>, ev: WatchEvent) {
    match ev {
        WatchEvent::Added(r) | WatchEvent::Modified(r) => {
            state.insert(r.name, r.data);
        }
        WatchEvent::Deleted { name, .. } => {
            state.remove(&name);
        }
        WatchEvent::Synced | WatchEvent::Error(_) => {}
    }
}

#[test]
fn a_watch_resumes_after_a_disconnect_and_relists_past_a_compaction() -> Result<()> {
    let dir = TestDir::new("etcdwatch")?;
    // etcd in one namespace, the client in another, a veth between them that the test cuts.
    let server = Netns::new("getcds")?;
    let client = Netns::new("getcdc")?;
    veth_pair(
        &server,
        "eth0",
        Some("10.77.0.1/24".parse()?),
        &client,
        "eth0",
        Some("10.77.0.2/24".parse()?),
    )?;
    let spec = MemberSpec {
        name: "etcd0".into(),
        netns: server.name().into(),
        ip: "10.77.0.1".parse()?,
        client_port: 2379,
        peer_port: 2380,
        tls: None,
    };
    let mut cluster = EtcdCluster::new(vec![spec], dir.path(), server.name())?;
    cluster.start()?;
    let endpoint = cluster.endpoints()[0].clone();
    let store = store_in(&client, config(vec![endpoint.clone()], "/w/"))?;
    store.create(Kind::Node, "a", json!(1))?;
    store.create(Kind::Node, "b", json!(1))?;
    let watch = store.watch(Kind::Node)?;
    let mut state = BTreeMap::new();
    let t = Duration::from_secs(10);
    for _ in 0..3 {
        apply(&mut state, watch.recv_timeout(t).context("initial events")?);
    }
    assert_eq!(state.len(), 2);

    // Cut: the client cannot see what happens now.
    client.ip(&["link", "set", "eth0", "down"])?;
    let put = |k: &str, v: &str| etcdctl(server.name(), &endpoint, &["put", k, v]);
    put("/w/Node/c", "3")?;
    put("/w/Node/b", "2")?;
    put("/w/Node/b", "22")?;
    etcdctl(server.name(), &endpoint, &["del", "/w/Node/a"])?;
    // Compact everything up to now: a watch resuming from before the cut cannot be served.
    let status = etcdctl(
        server.name(),
        &endpoint,
        &["endpoint", "status", "-w", "json"],
    )?;
    let v: serde_json::Value = serde_json::from_str(&status)?;
    let rev = v[0]["Status"]["header"]["revision"]
        .as_i64()
        .context("revision")?;
    etcdctl(
        server.name(),
        &endpoint,
        &["compact", &rev.to_string(), "--physical"],
    )?;
    // A restart drops the client's connection for good, so when the link is back its next
    // packet meets a reset (and not a connection that simply resumes).
    cluster.stop_member(0);
    cluster.start_member(0)?;
    cluster.wait_healthy(Duration::from_secs(20))?;
    assert_eq!(watch.try_recv(), None, "nothing can arrive while cut off");
    client.ip(&["link", "set", "eth0", "up"])?;

    let want: BTreeMap<String, serde_json::Value> =
        [("b".to_string(), json!(22)), ("c".to_string(), json!(3))].into();
    let deadline = Instant::now() + Duration::from_secs(60);
    while state != want && Instant::now() < deadline {
        if let Some(ev) = watch.recv_timeout(Duration::from_millis(500)) {
            apply(&mut state, ev);
        }
    }
    assert_eq!(state, want, "the watch converged after the cut");
    // And it follows live changes again.
    let c = store.get(Kind::Node, "c")?;
    store.update(Kind::Node, "c", &c.revision, json!(4))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while state.get("c") != Some(&json!(4)) && Instant::now() < deadline {
        if let Some(ev) = watch.recv_timeout(Duration::from_millis(500)) {
            apply(&mut state, ev);
        }
    }
    assert_eq!(state.get("c"), Some(&json!(4)));
    Ok(())
}

#[test]
fn a_node_whose_heartbeats_stop_leaves_the_registry_after_its_ttl() -> Result<()> {
    let dir = TestDir::new("etcdlease")?;
    let ns = Netns::new("getcdl")?;
    let mut cluster = EtcdCluster::on_loopback(ns.name(), 1, dir.path())?;
    cluster.start()?;
    let mut cfg = config(cluster.endpoints(), "/lease/");
    cfg.node_ttl = Duration::from_secs(3);
    let store = store_in(&ns, cfg.clone())?;
    assert_eq!(store.node_ttl(), Some(Duration::from_secs(3)));
    let reg = NodeRegistry::new(store.clone());
    let node = |name: &str| NodeRecord {
        name: name.into(),
        address: "172.18.0.2".parse().unwrap(),
        asn: 64512,
        last_heartbeat: 0,
    };
    reg.register(&node("alive"))?;
    reg.register(&node("stops"))?;
    let watch = reg.watch()?;
    // Heartbeats keep `alive` for 3 TTLs; `stops` has none after its registration.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(9) {
        reg.heartbeat("alive", 1)?;
        std::thread::sleep(Duration::from_millis(500));
    }
    let names: Vec<String> = reg.list()?.into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["alive"], "the node without heartbeats expired");
    let mut deleted = Vec::new();
    while let Some(ev) = watch.recv_timeout(Duration::from_millis(200)) {
        if let ipam::resources::TypedEvent::Deleted(n) = ev {
            deleted.push(n);
        }
    }
    assert_eq!(deleted, ["stops"], "the mesh's watch saw it leave");
    // Another process's store (a restarted agent) takes the node over with a lease of its own.
    let other = store_in(&ns, cfg)?;
    let reg2 = NodeRegistry::new(other);
    reg2.register(&node("alive"))?;
    drop(reg);
    drop(store);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        reg2.heartbeat("alive", 2)?;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(reg2.get("alive")?.is_some(), "renewed by its new owner");
    Ok(())
}

#[test]
fn without_quorum_a_call_fails_fast_with_unavailable_and_recovers() -> Result<()> {
    let dir = TestDir::new("etcdquorum")?;
    let ns = Netns::new("getcdq")?;
    let mut cluster = EtcdCluster::on_loopback(ns.name(), 3, dir.path())?;
    cluster.start()?;
    let mut cfg = config(cluster.endpoints(), "/q/");
    cfg.timeout = Duration::from_secs(2);
    let store = store_in(&ns, cfg)?;
    store.create(Kind::IPPool, "p", json!(1))?;
    // One member down: the other two are a majority, everything works.
    cluster.stop_member(2);
    store.create(Kind::IPPool, "q", json!(1))?;
    // Two down: no quorum. A write fails within its deadline, clearly, and loses nothing.
    cluster.stop_member(1);
    let t = Instant::now();
    let err = store.create(Kind::IPPool, "r", json!(1)).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the call did not hang: {:?}",
        t.elapsed()
    );
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("etcd"), "{err}");
    cluster.start_member(1)?;
    cluster.start_member(2)?;
    cluster.wait_healthy(Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let res = loop {
        match store.create(Kind::IPPool, "r", json!(1)) {
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            // The failed attempt may have been committed after all: then it is there.
            Err(StoreError::AlreadyExists { .. }) => break Ok(()),
            r => break r.map(|_| ()),
        }
    };
    res?;
    let names: Vec<String> = store
        .list(Kind::IPPool)?
        .records
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["p", "q", "r"]);
    Ok(())
}

/// `openssl` run for its side effects, failing with its message.
fn openssl(dir: &std::path::Path, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("openssl is not installed")?;
    anyhow::ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A CA, and a certificate it signed for `name` with `ext` (subjectAltName, key usage).
fn issue(dir: &std::path::Path, name: &str, ext: &str) -> Result<()> {
    std::fs::write(dir.join(format!("{name}.ext")), ext)?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    )
}

#[test]
fn tls_with_client_certificates_works_and_a_client_without_one_is_refused_clearly() -> Result<()> {
    let dir = TestDir::new("etcdtls")?;
    let ns = Netns::new("getcdt")?;
    let pki = dir.sub("pki")?;
    openssl(
        &pki,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=gingham-test-ca",
        ],
    )?;
    issue(
        &pki,
        "etcd0",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )?;
    issue(&pki, "agent", "extendedKeyUsage=clientAuth\n")?;
    let tls = MemberTls {
        cert: pki.join("etcd0.pem"),
        key: pki.join("etcd0.key"),
        ca: pki.join("ca.pem"),
        client_cert: pki.join("agent.pem"),
        client_key: pki.join("agent.key"),
    };
    let spec = MemberSpec {
        name: "etcd0".into(),
        netns: ns.name().into(),
        ip: "127.0.0.1".parse()?,
        client_port: 2379,
        peer_port: 2380,
        tls: Some(tls.clone()),
    };
    let mut cluster = EtcdCluster::new(vec![spec], dir.path(), ns.name())?;
    cluster.start()?;
    let endpoints = cluster.endpoints();
    assert!(endpoints[0].starts_with("https://"));
    let mut cfg = config(endpoints, "/tls/");
    cfg.ca_file = Some(tls.ca.clone());
    cfg.cert_file = Some(tls.client_cert.clone());
    cfg.key_file = Some(tls.client_key.clone());
    let store = store_in(&ns, cfg.clone())?;
    ipam::conformance::crud_and_cas(&*store);

    // No client certificate: etcd ends the handshake; the error says etcd is unavailable.
    cfg.cert_file = None;
    cfg.key_file = None;
    cfg.timeout = Duration::from_secs(2);
    let anonymous = store_in(&ns, cfg)?;
    let err = anonymous.get(Kind::Node, "a").unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("etcd did not answer"), "{err}");
    Ok(())
}
