//! AgentConfig from the command line: defaults, good values, and bad values whose error names
//! the flag and the value. (Environment fallbacks are in config_env.rs, its own process, because
//! the environment is shared by all threads.)

use std::net::Ipv4Addr;

use agent::autodetect::AutodetectMethod;
use agent::config::{AgentConfig, ConfigError, Datastore, IpSetting, PeerSpec};
use clap::Parser;

fn parse(args: &[&str]) -> Result<AgentConfig, clap::Error> {
    AgentConfig::try_parse_from(std::iter::once("gingham-agent").chain(args.iter().copied()))
}

fn error(args: &[&str]) -> String {
    parse(args).unwrap_err().to_string()
}

#[test]
fn defaults() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.ip, IpSetting::Autodetect);
    assert_eq!(c.ip_autodetection_method, AutodetectMethod::FirstFound);
    assert_eq!(
        (c.asn, c.bgp_port, c.block_size, c.hold_time),
        (64512, 179, 26, 240)
    );
    assert_eq!(c.router_id, None);
    assert!(c.peers.is_empty() && c.advertise.is_empty() && !c.no_mesh);
    assert_eq!(
        c.control_socket.to_str(),
        Some("/var/run/gingham/agent.sock")
    );
    assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:9099");
    assert_eq!(c.datastore, Datastore::File("/var/lib/gingham".into()));
    assert_eq!(c.pool_cidr.to_string(), "192.168.0.0/16");
    c.validate().unwrap();
    // No --node-name: the hostname.
    assert!(!c.node_name().unwrap().is_empty());
}

#[test]
fn the_lab_command_line() {
    let c = parse(&[
        "--node-name",
        "node-1",
        "--ip",
        "172.18.0.2",
        "--as",
        "4200000001",
        "--peer",
        "172.18.0.3,as=64512",
        "--peer",
        "172.18.0.4:1790,as=65001",
        "--no-mesh",
        "--control-socket",
        "/tmp/x/agent.sock",
        "--metrics-addr",
        "127.0.0.1:9100",
        "--datastore",
        "file:/tmp/gingham-datastore",
        "--advertise",
        "10.0.0.0/8,10.1.0.0/16",
        "--router-id",
        "1.2.3.4",
        "--ip-autodetection-method",
        "can-reach=172.18.0.1",
        "--block-size",
        "28",
        "--pool-cidr",
        "10.244.0.0/16",
        "--hold-time",
        "0",
    ])
    .unwrap();
    assert_eq!(c.node_name().unwrap(), "node-1");
    assert_eq!(c.ip, IpSetting::Address(Ipv4Addr::new(172, 18, 0, 2)));
    assert_eq!(c.asn, 4_200_000_001);
    assert_eq!(
        c.peers,
        vec![
            PeerSpec {
                address: Ipv4Addr::new(172, 18, 0, 3),
                port: 179,
                asn: 64512,
                ..Default::default()
            },
            PeerSpec {
                address: Ipv4Addr::new(172, 18, 0, 4),
                port: 1790,
                asn: 65001,
                ..Default::default()
            },
        ]
    );
    assert!(c.no_mesh);
    assert_eq!(c.advertise.len(), 2);
    assert_eq!(c.router_id, Some(Ipv4Addr::new(1, 2, 3, 4)));
    assert_eq!(
        c.ip_autodetection_method,
        AutodetectMethod::CanReach(Ipv4Addr::new(172, 18, 0, 1))
    );
    assert_eq!((c.block_size, c.hold_time), (28, 0));
    assert_eq!(
        c.datastore,
        Datastore::File("/tmp/gingham-datastore".into())
    );
    c.validate().unwrap();
}

#[test]
fn bad_values_name_the_flag_and_the_value() {
    for (args, flag, value) in [
        (&["--as", "x"][..], "--as <AS>", "x"),
        (&["--as", "0"], "--as <AS>", "0"),
        (&["--as", "4294967296"], "--as <AS>", "4294967296"),
        (&["--ip", "300.1.1.1"], "--ip <IP>", "300.1.1.1"),
        (
            &["--ip-autodetection-method", "interface=("],
            "--ip-autodetection-method",
            "interface=(",
        ),
        (
            &["--ip-autodetection-method", "nearest"],
            "--ip-autodetection-method",
            "nearest",
        ),
        (&["--bgp-port", "0"], "--bgp-port", "0"),
        (&["--bgp-port", "70000"], "--bgp-port", "70000"),
        (&["--router-id", "r1"], "--router-id", "r1"),
        (&["--peer", "172.18.0.3"], "--peer", "172.18.0.3"),
        (&["--peer", "172.18.0.3,as=x"], "--peer", "172.18.0.3,as=x"),
        (
            &["--advertise", "10.0.0.0/33"],
            "--advertise",
            "10.0.0.0/33",
        ),
        (
            &["--metrics-addr", "localhost"],
            "--metrics-addr",
            "localhost",
        ),
        (&["--datastore", "etcd://x"], "--datastore", "etcd://x"),
        (&["--datastore", "file:"], "--datastore", "file:"),
        (
            &["--pool-cidr", "192.168.0.0"],
            "--pool-cidr",
            "192.168.0.0",
        ),
        (&["--block-size", "19"], "--block-size", "19"),
        (&["--block-size", "33"], "--block-size", "33"),
        (&["--hold-time", "1"], "--hold-time", "1"),
        (&["--hold-time", "2"], "--hold-time", "2"),
        (&["--hold-time", "65536"], "--hold-time", "65536"),
        (&["--as", "-1"], "--as <AS>", "-1"),
        (
            &["--pool-cidr", "10.0.0.1/16"],
            "--pool-cidr",
            "10.0.0.1/16",
        ),
        (&["--node-name", ""], "--node-name", ""),
        (&["--node-name", "Worker_1"], "--node-name", "Worker_1"),
        (&["--node-name=-worker"], "--node-name", "-worker"),
    ] {
        let msg = error(args);
        assert!(
            msg.contains(&format!("invalid value '{value}' for '{flag}")),
            "{args:?}: {msg}"
        );
    }
    assert!(error(&["--peer", "172.18.0.3"]).contains("missing ',as=<n>'"));
    assert!(error(&["--hold-time", "2"]).contains("0 or at least 3"));
    assert!(error(&["--bogus"]).contains("--bogus"));
    assert!(error(&["--pool-cidr", "10.0.0.1/16"]).contains("did you mean 10.0.0.0/16?"));
    assert!(error(&["--node-name", ""]).contains("it is empty"));
    // A single-valued flag given twice is a mistake, not "the last one wins".
    let twice = error(&["--datastore", "kubernetes", "--datastore", "file:/x"]);
    assert!(
        twice.contains("'--datastore <DATASTORE>' cannot be used multiple times"),
        "{twice}"
    );
}

#[test]
fn node_names_are_kubernetes_node_names() {
    for good in [
        "kind-worker",
        "gingham-control-plane",
        "node-1.example.com",
        "a",
    ] {
        assert!(agent::config::validate_node_name(good).is_ok(), "{good}");
    }
    let long = "a".repeat(64);
    for bad in ["", "UPPER", "a_b", "-a", "a-", "a..b", long.as_str()] {
        assert!(agent::config::validate_node_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_datastore_under_a_missing_directory_is_refused_before_anything_is_created() {
    let c = parse(&["--datastore", "file:/nonexistent-gk/dir"]).unwrap();
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("'--datastore'") && err.contains("/nonexistent-gk does not exist"),
        "{err}"
    );
    assert!(!std::path::Path::new("/nonexistent-gk").exists());
}

#[test]
fn every_binary_has_version_and_help() {
    for bin in [
        env!("CARGO_BIN_EXE_gingham-agent"),
        env!("CARGO_BIN_EXE_routectl"),
        env!("CARGO_BIN_EXE_gingham-cni"),
    ] {
        for flag in ["--version", "--help"] {
            let out = std::process::Command::new(bin).arg(flag).output().unwrap();
            assert!(out.status.success(), "{bin} {flag}: {out:?}");
            assert!(!out.stdout.is_empty(), "{bin} {flag}");
        }
    }
}

#[test]
fn block_size_must_fit_the_pool() {
    let c = parse(&["--pool-cidr", "10.0.0.0/24", "--block-size", "20"]).unwrap();
    let err = c.validate().unwrap_err();
    assert_eq!(
        err,
        ConfigError::BlockLargerThanPool {
            value: 20,
            pool: "10.0.0.0/24".parse().unwrap()
        }
    );
    assert!(err.to_string().contains("'--block-size'"), "{err}");
}

#[test]
fn etcd_flags_are_checked_and_name_the_flag() {
    let c = parse(&[
        "--datastore",
        "etcd",
        "--etcd-endpoints",
        "http://10.0.0.5:2379,http://10.0.0.6:2379/",
        "--etcd-prefix",
        "/calico-lab",
    ])
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.datastore, Datastore::Etcd);
    let e = c.etcd_config();
    assert_eq!(
        e.endpoints,
        ["http://10.0.0.5:2379", "http://10.0.0.6:2379"]
    );
    assert_eq!(e.prefix, "/calico-lab/");
    assert_eq!(e.node_ttl.as_secs(), 40);
    // Calico's DATASTORE_TYPE value is understood too.
    assert_eq!(
        parse(&["--datastore", "etcdv3"]).unwrap().datastore,
        Datastore::Etcd
    );
    for (args, want) in [
        (
            &["--etcd-endpoints", "10.0.0.5:2379"][..],
            "invalid value '10.0.0.5:2379' for '--etcd-endpoints <ETCD_ENDPOINTS>': expected http://",
        ),
        (
            &["--etcd-endpoints", "http://10.0.0.5"],
            "for '--etcd-endpoints <ETCD_ENDPOINTS>': the endpoint needs a port",
        ),
        (
            &["--etcd-endpoints", "http://10.0.0.5:99999"],
            "'99999' is not a port",
        ),
        (&["--etcd-prefix", "gingham"], "for '--etcd-prefix <ETCD_PREFIX>': the prefix must start with '/'"),
        (&["--node-lease-ttl", "5"], "for '--node-lease-ttl <NODE_LEASE_TTL>': 5 is not in 15..=3600"),
    ] {
        let msg = error(args);
        assert!(msg.contains(want), "{args:?}: {msg}");
    }
    let invalid = |args: &[&str]| parse(args).unwrap().validate().unwrap_err().to_string();
    assert_eq!(
        invalid(&["--datastore", "etcd"]),
        "'--datastore etcd' needs '--etcd-endpoints' (env ETCD_ENDPOINTS), e.g. http://10.0.0.5:2379"
    );
    assert_eq!(
        invalid(&["--etcd-endpoints", "http://10.0.0.5:2379"]),
        "'--etcd-endpoints' is only used with '--datastore etcd'"
    );
    assert!(invalid(&[
        "--datastore",
        "etcd",
        "--etcd-endpoints",
        "https://10.0.0.5:2379"
    ])
    .contains("an https endpoint needs '--etcd-ca-file'"));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let ca = ca.to_str().unwrap();
    let tls = [
        "--datastore",
        "etcd",
        "--etcd-endpoints",
        "https://10.0.0.5:2379",
        "--etcd-ca-file",
        ca,
    ];
    parse(&tls).unwrap().validate().unwrap();
    let with = |extra: &[&str]| invalid(&[&tls[..], extra].concat());
    assert_eq!(
        with(&["--etcd-cert-file", ca]),
        "'--etcd-cert-file' needs '--etcd-key-file' too"
    );
    assert!(with(&[
        "--etcd-cert-file",
        ca,
        "--etcd-key-file",
        "/nonexistent/key.pem"
    ])
    .starts_with("invalid value '/nonexistent/key.pem' for '--etcd-key-file':"));
    assert!(invalid(&[
        "--datastore",
        "etcd",
        "--etcd-endpoints",
        "http://10.0.0.5:2379",
        "--etcd-ca-file",
        ca
    ])
    .contains("every endpoint must be https"));
}
