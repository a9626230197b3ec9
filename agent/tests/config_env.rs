//! Environment fallbacks, Calico's names. One test in its own binary: the environment is
//! process-wide.

use std::net::Ipv4Addr;

use agent::autodetect::AutodetectMethod;
use agent::config::{AgentConfig, Datastore, IpSetting};
use clap::Parser;

#[test]
fn environment_fallbacks_and_flag_precedence() {
    let vars = [
        ("NODENAME", "kind-worker"),
        ("IP", "172.18.0.5"),
        ("IP_AUTODETECTION_METHOD", "interface=eth.*,ens.*"),
        ("AS", "65010"),
        ("BGP_PORT", "1790"),
        ("ROUTER_ID", "9.9.9.9"),
        ("PEERS", "172.18.0.100,as=65001; 10.0.0.1:1791,as=65002"),
        ("ADVERTISE", "10.0.0.0/8,10.1.0.0/16"),
        ("CONTROL_SOCKET", "/run/g.sock"),
        ("METRICS_ADDR", "0.0.0.0:9199"),
        ("DATASTORE", "kubernetes"),
        ("IPV4POOL_CIDR", "10.244.0.0/16"),
        ("IPV4POOL_BLOCK_SIZE", "24"),
        ("HOLD_TIME", "30"),
        ("BGP_PASSWORD", "s3cret"),
    ];
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let c = AgentConfig::try_parse_from(["gingham-agent"]).unwrap();
    assert_eq!(c.node_name().unwrap(), "kind-worker");
    assert_eq!(c.ip, IpSetting::Address(Ipv4Addr::new(172, 18, 0, 5)));
    assert_eq!(
        c.ip_autodetection_method.to_string(),
        "interface=eth.*,ens.*"
    );
    assert_eq!(
        (c.asn, c.bgp_port, c.block_size, c.hold_time),
        (65010, 1790, 24, 30)
    );
    assert_eq!(c.router_id, Some(Ipv4Addr::new(9, 9, 9, 9)));
    let peers: Vec<String> = c.peers.iter().map(|p| p.to_string()).collect();
    assert_eq!(peers, ["172.18.0.100,as=65001", "10.0.0.1:1791,as=65002"]);
    assert_eq!(c.advertise.len(), 2);
    assert_eq!(c.control_socket.to_str(), Some("/run/g.sock"));
    assert_eq!(c.metrics_addr.to_string(), "0.0.0.0:9199");
    assert_eq!(c.datastore, Datastore::Kubernetes);
    assert_eq!(c.pool_cidr.to_string(), "10.244.0.0/16");
    assert_eq!(c.bgp_password.as_deref(), Some("s3cret"));

    // A flag beats its variable.
    let c = AgentConfig::try_parse_from(["gingham-agent", "--as", "65011", "--ip", "autodetect"])
        .unwrap();
    assert_eq!((c.asn, c.ip), (65011, IpSetting::Autodetect));

    // A bad variable names the variable the user set, the flag and the value, and the
    // password is never echoed.
    std::env::set_var("AS", "sixty");
    let msg = AgentConfig::try_parse_args(["gingham-agent"])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("invalid value 'sixty' for '--as <AS>' (from the environment variable AS)"),
        "{msg}"
    );
    assert!(!msg.contains("s3cret"));
    // Typed on the command line, it is the flag's error alone.
    let msg = AgentConfig::try_parse_args(["gingham-agent", "--as", "seventy"])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("invalid value 'seventy' for '--as <AS>'") && !msg.contains("environment"),
        "{msg}"
    );
    std::env::set_var("NODENAME", "");
    let msg = AgentConfig::try_parse_args(["gingham-agent"])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("(from the environment variable NODENAME): it is empty"),
        "{msg}"
    );
    std::env::set_var("NODENAME", "kind-worker");
    std::env::set_var("AS", "65010");
    std::env::set_var("IP_AUTODETECTION_METHOD", "can-reach=8.8.8.8");
    let c = AgentConfig::try_parse_from(["gingham-agent"]).unwrap();
    assert_eq!(
        c.ip_autodetection_method,
        AutodetectMethod::CanReach(Ipv4Addr::new(8, 8, 8, 8))
    );
    for (k, _) in vars {
        std::env::remove_var(k);
    }
}
