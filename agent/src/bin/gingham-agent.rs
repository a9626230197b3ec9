//! `gingham-agent`: the node daemon. Flags and their checks live in `agent::config`.

use agent::autodetect::autodetect;
use agent::config::{AgentConfig, Datastore, IpSetting};
use agent::daemon::{run, DaemonSettings};
use anyhow::{bail, Context, Result};
use std::net::IpAddr;

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
    // Refuse what is accepted on the command line but not built yet, rather than run without
    // it: a session a user believes authenticated must not run in the clear.
    if cfg.bgp_password.is_some() {
        bail!("'--bgp-password' (BGP_PASSWORD): TCP MD5 (RFC 2385) is not supported yet; remove it to run unauthenticated sessions");
    }
    let datastore = match cfg.datastore {
        Datastore::File(dir) => format!("file:{}", dir.display()),
        Datastore::Kubernetes => {
            bail!("'--datastore kubernetes' is not supported yet; use 'file:<dir>'")
        }
    };
    Ok(DaemonSettings {
        router_id: cfg.router_id.unwrap_or(ip),
        node,
        ip,
        asn: cfg.asn,
        bgp_port: cfg.bgp_port,
        hold_time: cfg.hold_time,
        peers: cfg
            .peers
            .iter()
            .map(|p| (IpAddr::V4(p.address), p.port, p.asn))
            .collect(),
        advertise: cfg.advertise,
        control_socket: cfg.control_socket,
        metrics_addr: cfg.metrics_addr,
        datastore,
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
    let rt = match tokio::runtime::Runtime::new() {
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
        assert_eq!(s.peers, vec![("172.18.0.9".parse().unwrap(), 179, 65001)]);
        assert_eq!(s.datastore, "file:/var/lib/gingham");
        assert!(s.mesh);
    }

    #[test]
    fn refuses_what_is_not_built_naming_the_flag() {
        let e = resolve(parse(&[
            "--node-name",
            "n",
            "--ip",
            "10.0.0.1",
            "--bgp-password",
            "s3cret",
        ]))
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("--bgp-password") && !format!("{e:#}").contains("s3cret")
        );
        let e = resolve(parse(&[
            "--node-name",
            "n",
            "--ip",
            "10.0.0.1",
            "--datastore",
            "kubernetes",
        ]))
        .unwrap_err();
        assert!(format!("{e:#}").contains("--datastore kubernetes"));
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
