//! `gingham-agent`: the node daemon. Flags and their checks live in `agent::config`.

use agent::autodetect::{autodetect, interfaces};
use agent::config::{AgentConfig, Datastore, IpSetting};
use agent::daemon::{run, DaemonSettings, PeerSettings};
use anyhow::{Context, Result};
use bgp::Password;
use ipnet::Ipv4Net;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

/// A TCP MD5 password read from a file: a trailing newline (as `echo` or a Secret writes it)
/// is not part of it.
fn password_file(flag: &str, path: &Path) -> Result<Password> {
    let bytes = std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))?;
    let key = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let key = key.strip_suffix(b"\r").unwrap_or(key);
    Password::new(key).with_context(|| format!("{flag} {}", path.display()))
}

/// The subnet of `ip` on this node's interfaces: a mesh peer inside it is directly connected.
fn connected_subnet(ip: Ipv4Addr) -> Option<Ipv4Net> {
    interfaces().ok()?.into_iter().find_map(|i| {
        i.addresses
            .iter()
            .find(|(a, _)| *a == ip)
            .and_then(|(a, len)| Ipv4Net::new(*a, *len).ok())
            .map(|n| n.trunc())
    })
}

fn resolve(cfg: AgentConfig) -> Result<DaemonSettings> {
    cfg.validate()?;
    let node = cfg.node_name()?;
    let ip = match cfg.ip {
        IpSetting::Address(ip) => ip,
        IpSetting::Autodetect => {
            let found = autodetect(&cfg.ip_autodetection_method).context("--ip autodetect")?;
            tracing::info!(
                "autodetected {}/{} on {}",
                found.address,
                found.prefix_len,
                found.ifname
            );
            found.address
        }
    };
    let password = match (&cfg.bgp_password, &cfg.bgp_password_file) {
        (Some(p), _) => Some(
            Password::new(p.as_bytes())
                .map_err(|e| anyhow::anyhow!("'--bgp-password' (BGP_PASSWORD): {e}"))?,
        ),
        (None, Some(path)) => Some(password_file("--bgp-password-file", path)?),
        (None, None) => None,
    };
    let mut peers = Vec::new();
    for p in &cfg.peers {
        let own = match &p.password_file {
            Some(path) => Some(password_file(&format!("--peer {p}: password-file"), path)?),
            None => None,
        };
        peers.push(PeerSettings {
            address: IpAddr::V4(p.address),
            port: p.port,
            asn: p.asn,
            password: own.or_else(|| password.clone()),
            ttl_security: p.ttl_security,
            max_prefixes: p.max_prefixes,
        });
    }
    let datastore = match &cfg.datastore {
        Datastore::File(dir) => ipam::store::Backend::File(dir.clone()),
        Datastore::Etcd => ipam::store::Backend::Etcd(cfg.etcd_config()),
        Datastore::Kubernetes => {
            ipam::store::Backend::Kubernetes(ipam::store::KubeConfig::default())
        }
    };
    Ok(DaemonSettings {
        router_id: cfg.router_id.unwrap_or(ip),
        subnet: connected_subnet(ip),
        node,
        ip,
        asn: cfg.asn,
        bgp_port: cfg.bgp_port,
        hold_time: cfg.hold_time,
        password,
        graceful_restart_time: cfg.graceful_restart_time,
        peers,
        advertise: cfg.advertise,
        control_socket: cfg.control_socket,
        metrics_addr: cfg.metrics_addr,
        datastore,
        node_release_grace: Duration::from_secs(cfg.node_release_grace),
        mesh: !cfg.no_mesh,
        pool: cfg.pool_cidr,
        block_size: cfg.block_size,
    })
}

fn main() {
    let cfg = AgentConfig::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("LOG_LEVEL").map(|l| l.to_lowercase()))
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let settings = match resolve(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gingham-agent: {e:#}");
            std::process::exit(2);
        }
    };
    // Two workers whatever the node's size: the agent's work is a few sessions and a datastore,
    // and a worker per core of a 64-core node is 64 idle threads. Blocking-pool threads (store
    // reads, heartbeats) stay a minute, past the 10 s heartbeat, so they are not made afresh
    // on every beat.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(Duration::from_secs(60))
        .enable_all()
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gingham-agent: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(settings)) {
        eprintln!("gingham-agent: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> AgentConfig {
        AgentConfig::try_parse_args(std::iter::once("gingham-agent").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn resolves_fixed_ip_and_defaults() {
        let s = resolve(parse(&[
            "--node-name",
            "n1",
            "--ip",
            "172.18.0.2",
            "--peer",
            "172.18.0.9,as=65001",
        ]))
        .unwrap();
        assert_eq!(
            s.router_id,
            "172.18.0.2".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(
            s.peers
                .iter()
                .map(|p| (p.address, p.port, p.asn))
                .collect::<Vec<_>>(),
            vec![("172.18.0.9".parse().unwrap(), 179, 65001)]
        );
        assert_eq!(s.graceful_restart_time, 120);
        assert_eq!(s.datastore.to_string(), "file:/var/lib/gingham");
        assert!(s.mesh);
    }

    #[test]
    fn passwords_from_flags_and_files() {
        let s = resolve(parse(&[
            "--node-name",
            "n",
            "--ip",
            "10.0.0.1",
            "--bgp-password",
            "s3cret",
            "--peer",
            "10.0.0.9,as=65001",
        ]))
        .unwrap();
        assert_eq!(s.password.as_ref().map(|p| p.key()), Some(&b"s3cret"[..]));
        assert_eq!(
            s.peers[0].password, s.password,
            "the agent's password applies to --peers"
        );
        assert!(!format!("{s:?}").contains("s3cret"), "never printed");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tor");
        std::fs::write(&f, "per-peer\n").unwrap();
        let s = resolve(parse(&[
            "--node-name",
            "n",
            "--ip",
            "10.0.0.1",
            "--peer",
            &format!("10.0.0.9,as=65001,password-file={}", f.display()),
        ]))
        .unwrap();
        assert_eq!(
            s.peers[0].password.as_ref().map(|p| p.key()),
            Some(&b"per-peer"[..])
        );
        let e = resolve(parse(&[
            "--node-name",
            "n",
            "--ip",
            "10.0.0.1",
            "--bgp-password-file",
            "/nonexistent/pw",
        ]))
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("--bgp-password-file /nonexistent/pw"),
            "{e:#}"
        );
        let e = resolve(parse(&[
            "--node-name",
            "n",
            "--ip",
            "10.0.0.1",
            "--bgp-password",
            &"x".repeat(81),
        ]))
        .unwrap_err();
        assert!(format!("{e:#}").contains("--bgp-password"), "{e:#}");
    }

    #[test]
    fn kubernetes_is_a_datastore_and_bad_sizes_name_the_flag() {
        let s = resolve(parse(&[
            "--node-name",
            "n",
            "--ip",
            "10.0.0.1",
            "--datastore",
            "kubernetes",
        ]))
        .unwrap();
        assert!(matches!(s.datastore, ipam::store::Backend::Kubernetes(_)));
        let e = resolve(parse(&[
            "--node-name",
            "n",
            "--ip",
            "10.0.0.1",
            "--pool-cidr",
            "10.0.0.0/24",
            "--block-size",
            "20",
        ]))
        .unwrap_err();
        assert!(format!("{e:#}").contains("--block-size"));
    }
}
