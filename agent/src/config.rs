//! `gingham-agent`'s configuration: flags with environment fallbacks, Calico's variable names
//! where they exist (the README's flag table lists them).
//!
//! Every value is checked while parsing, so a bad one stops the agent at once with clap's
//! message naming the flag and the value, e.g.
//! `invalid value '0' for '--as <AS>': 0 is not in 1..=4294967295`.
//! [`AgentConfig::validate`] then checks what involves more than one field.
//!
//! Lists in the environment: `PEERS` is separated by `;` (a peer spec contains a comma:
//! `PEERS="172.18.0.3,as=64512;10.0.0.1:1790,as=65001"`), `ADVERTISE` by `,`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;
use ipnet::Ipv4Net;

use crate::autodetect::AutodetectMethod;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gingham-agent",
    version,
    about = "Gingham node agent: IPAM, BGP full mesh, kernel routes",
    // `--as -1` is a bad AS number, not an unknown flag.
    allow_negative_numbers = true
)]
pub struct AgentConfig {
    /// This node's name in the cluster, a Kubernetes node name (RFC 1123 subdomain)
    /// [default: the hostname].
    #[arg(long, env = "NODENAME", value_parser = parse_node_name)]
    pub node_name: Option<String>,

    /// The node's BGP address: an IPv4 address, or `autodetect`.
    #[arg(long, env = "IP", default_value = "autodetect")]
    pub ip: IpSetting,

    /// How to find the address when `--ip autodetect`: `first-found`, `interface=<regex>`,
    /// `can-reach=<ip>`.
    #[arg(long, env = "IP_AUTODETECTION_METHOD", default_value = "first-found")]
    pub ip_autodetection_method: AutodetectMethod,

    /// This node's AS number.
    #[arg(long = "as", env = "AS", value_name = "AS", default_value_t = 64512,
          value_parser = clap::value_parser!(u32).range(1..=4_294_967_295))]
    pub asn: u32,

    /// TCP port the BGP speaker listens on and dials.
    #[arg(long, env = "BGP_PORT", default_value_t = 179,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub bgp_port: u16,

    /// BGP router ID [default: the node IP].
    #[arg(long, env = "ROUTER_ID")]
    pub router_id: Option<Ipv4Addr>,

    /// TCP MD5 password (RFC 2385) for every BGP session: mesh and `--peer`s (unless a peer
    /// has its own `password-file=`).
    #[arg(
        long,
        env = "BGP_PASSWORD",
        hide_env_values = true,
        conflicts_with = "bgp_password_file"
    )]
    pub bgp_password: Option<String>,

    /// The TCP MD5 password in a file (as a Kubernetes Secret is mounted); a trailing newline is
    /// not part of it.
    #[arg(long, env = "BGP_PASSWORD_FILE")]
    pub bgp_password_file: Option<PathBuf>,

    /// An extra BGP peer, `<ip>[:<port>],as=<n>[,password-file=<path>][,ttl-security=on|off]
    /// [,max-prefixes=<n>]`; repeatable (env `PEERS`, `;`-separated).
    #[arg(long = "peer", env = "PEERS", value_delimiter = ';')]
    pub peers: Vec<PeerSpec>,

    /// Graceful restart (RFC 4724): how long peers keep this node's routes while its agent
    /// restarts, in seconds (at most 4095); 0 turns graceful restart off.
    #[arg(long, env = "GRACEFUL_RESTART_TIME", default_value_t = 120,
          value_parser = clap::value_parser!(u16).range(0..=4095))]
    pub graceful_restart_time: u16,

    /// An extra prefix to announce; repeatable (env `ADVERTISE`, `,`-separated).
    #[arg(long = "advertise", env = "ADVERTISE", value_delimiter = ',')]
    pub advertise: Vec<Ipv4Net>,

    /// The local API socket used by routectl and the CNI plugin.
    #[arg(
        long,
        env = "CONTROL_SOCKET",
        default_value = "/var/run/gingham/agent.sock"
    )]
    pub control_socket: PathBuf,

    /// Prometheus metrics and /liveness, /readiness.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9099")]
    pub metrics_addr: SocketAddr,

    /// Where IPAM state lives: `file:<dir>` (the directory is created if its parent exists),
    /// `kubernetes` (custom resources, Node objects and Leases on the Kubernetes API, from the
    /// pod's service account or KUBECONFIG), or `etcd` (etcd v3, at `--etcd-endpoints`).
    #[arg(long, env = "DATASTORE", default_value = "file:/var/lib/gingham")]
    pub datastore: Datastore,

    /// The etcd members, `http(s)://<host>:<port>`, comma-separated (with `--datastore etcd`).
    #[arg(long, env = "ETCD_ENDPOINTS", value_delimiter = ',', value_parser = parse_etcd_endpoint)]
    pub etcd_endpoints: Vec<String>,

    /// The etcd key prefix Gingham's records live under.
    #[arg(long, env = "ETCD_PREFIX", default_value = ipam::store::DEFAULT_ETCD_PREFIX,
          value_parser = parse_etcd_prefix)]
    pub etcd_prefix: String,

    /// The CA certificate (PEM) that signed the etcd members' certificates; turns TLS on.
    #[arg(long, env = "ETCD_CA_CERT_FILE")]
    pub etcd_ca_file: Option<PathBuf>,

    /// This agent's client certificate (PEM) for etcd, with `--etcd-key-file`.
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub etcd_cert_file: Option<PathBuf>,

    /// The private key (PEM) of `--etcd-cert-file`.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub etcd_key_file: Option<PathBuf>,

    /// With `--datastore etcd`: seconds a node stays in the mesh after its agent's last
    /// heartbeat (its records live under an etcd lease of this TTL).
    #[arg(long, env = "NODE_LEASE_TTL", default_value_t = 40,
          value_parser = clap::value_parser!(u64).range(15..=3600))]
    pub node_lease_ttl: u64,

    /// With `--datastore etcd` or `kubernetes`: seconds after a node left the mesh (its lease
    /// expired, its Node object was deleted) before its blocks, affinities and addresses are
    /// released, by the one agent that holds the node-collector lease.
    #[arg(long, env = "NODE_RELEASE_GRACE", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub node_release_grace: u64,

    /// Do not peer with every other node (only with `--peer`s).
    #[arg(long)]
    pub no_mesh: bool,

    /// The IPv4 pool pod addresses come from (a network address: no host bits).
    #[arg(long, env = "IPV4POOL_CIDR", default_value = "192.168.0.0/16", value_parser = parse_pool)]
    pub pool_cidr: Ipv4Net,

    /// Prefix length of the blocks a node claims from the pool.
    #[arg(long, env = "IPV4POOL_BLOCK_SIZE", default_value_t = 26,
          value_parser = clap::value_parser!(u8).range(20..=32))]
    pub block_size: u8,

    /// BGP hold time offered in OPEN, seconds: 0 (no keepalives) or at least 3 (RFC 4271 §4.2).
    /// 240 is BIRD's default and so what Calico's node mesh runs with: a keepalive every 80 s
    /// on each of a full mesh's N² sessions, where RFC 4271's suggested 90 would be one every
    /// 30 s. Failures are found faster by other means: a link that goes down, a peer's
    /// NOTIFICATION or closed connection, a node removed from the registry.
    #[arg(long, env = "HOLD_TIME", default_value_t = 240, value_parser = parse_hold_time)]
    pub hold_time: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value '{value}' for '--block-size': blocks of /{value} do not fit in pool {pool} (--pool-cidr)")]
    BlockLargerThanPool { value: u8, pool: Ipv4Net },
    #[error("'--node-name' (env NODENAME) is not set and the hostname cannot be read")]
    NoNodeName,
    #[error("'--node-name' (env NODENAME) is not set and the hostname {hostname:?} is not a valid node name ({reason}): set --node-name")]
    BadHostname { hostname: String, reason: String },
    #[error("invalid value '{spec}' for '--datastore': the parent directory {parent} does not exist (only the datastore directory itself is created)")]
    DatastoreParentMissing { spec: String, parent: PathBuf },
    #[error("'--datastore etcd' needs '--etcd-endpoints' (env ETCD_ENDPOINTS), e.g. http://10.0.0.5:2379")]
    EtcdWithoutEndpoints,
    #[error("'{flag}' is only used with '--datastore etcd'")]
    EtcdFlagWithoutEtcd { flag: &'static str },
    #[error("invalid value '{endpoint}' for '--etcd-endpoints': an https endpoint needs '--etcd-ca-file'")]
    EtcdHttpsWithoutCa { endpoint: String },
    #[error("invalid value '{endpoint}' for '--etcd-endpoints': TLS is on ('--etcd-ca-file'), so every endpoint must be https")]
    EtcdHttpWithTls { endpoint: String },
    #[error("'{given}' needs '{missing}' too")]
    EtcdCertWithoutKey {
        given: &'static str,
        missing: &'static str,
    },
    #[error("invalid value '{}' for '{flag}': {reason}", path.display())]
    EtcdFile {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl AgentConfig {
    /// Checks that involve more than one field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.block_size < self.pool_cidr.prefix_len() {
            return Err(ConfigError::BlockLargerThanPool {
                value: self.block_size,
                pool: self.pool_cidr,
            });
        }
        if let Datastore::File(dir) = &self.datastore {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !parent.is_dir() {
                    return Err(ConfigError::DatastoreParentMissing {
                        spec: format!("file:{}", dir.display()),
                        parent: parent.to_path_buf(),
                    });
                }
            }
        }
        self.validate_etcd()
    }

    fn validate_etcd(&self) -> Result<(), ConfigError> {
        let files = [
            ("--etcd-ca-file", &self.etcd_ca_file),
            ("--etcd-cert-file", &self.etcd_cert_file),
            ("--etcd-key-file", &self.etcd_key_file),
        ];
        if self.datastore != Datastore::Etcd {
            if !self.etcd_endpoints.is_empty() {
                return Err(ConfigError::EtcdFlagWithoutEtcd {
                    flag: "--etcd-endpoints",
                });
            }
            if let Some((flag, _)) = files.iter().find(|(_, f)| f.is_some()) {
                return Err(ConfigError::EtcdFlagWithoutEtcd { flag });
            }
            return Ok(());
        }
        if self.etcd_endpoints.is_empty() {
            return Err(ConfigError::EtcdWithoutEndpoints);
        }
        let tls = self.etcd_ca_file.is_some();
        for e in &self.etcd_endpoints {
            let https = e.starts_with("https://");
            if https && !tls {
                return Err(ConfigError::EtcdHttpsWithoutCa {
                    endpoint: e.clone(),
                });
            }
            if !https && tls {
                return Err(ConfigError::EtcdHttpWithTls {
                    endpoint: e.clone(),
                });
            }
        }
        match (&self.etcd_cert_file, &self.etcd_key_file) {
            (Some(_), None) => {
                return Err(ConfigError::EtcdCertWithoutKey {
                    given: "--etcd-cert-file",
                    missing: "--etcd-key-file",
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::EtcdCertWithoutKey {
                    given: "--etcd-key-file",
                    missing: "--etcd-cert-file",
                })
            }
            _ => {}
        }
        if !tls && self.etcd_cert_file.is_some() {
            return Err(ConfigError::EtcdFlagWithoutEtcd {
                flag: "--etcd-cert-file (without --etcd-ca-file)",
            });
        }
        for (flag, file) in files {
            if let Some(path) = file {
                if let Err(e) = std::fs::metadata(path) {
                    return Err(ConfigError::EtcdFile {
                        flag,
                        path: path.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The etcd client's settings, with `--datastore etcd`.
    pub fn etcd_config(&self) -> ipam::store::EtcdConfig {
        let mut cfg = ipam::store::EtcdConfig::new(self.etcd_endpoints.clone());
        cfg.prefix = self.etcd_prefix.clone();
        cfg.ca_file = self.etcd_ca_file.clone();
        cfg.cert_file = self.etcd_cert_file.clone();
        cfg.key_file = self.etcd_key_file.clone();
        cfg.node_ttl = std::time::Duration::from_secs(self.node_lease_ttl);
        cfg
    }

    /// `--node-name`, else the hostname (as Calico's NODENAME falls back to it).
    pub fn node_name(&self) -> Result<String, ConfigError> {
        if let Some(name) = &self.node_name {
            return Ok(name.clone());
        }
        let hostname = hostname().ok_or(ConfigError::NoNodeName)?;
        validate_node_name(&hostname).map_err(|reason| ConfigError::BadHostname {
            hostname: hostname.clone(),
            reason,
        })?;
        Ok(hostname)
    }

    /// Parses the command line and the environment like `try_parse_from`, but an error about a
    /// value the user set through an environment variable names that variable too: `AS=sixty`
    /// is reported as `invalid value 'sixty' for '--as <AS>' (from the environment variable
    /// AS)`, not as if `--as` had been typed.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        AgentConfig::try_parse_from(&args).map_err(|e| name_the_variable(e, &args))
    }
}

/// Rewrites a value error for an argument that came from its environment variable.
fn name_the_variable(e: clap::Error, args: &[std::ffi::OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::CommandFactory;
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let Some(long) = arg
        .split_whitespace()
        .next()
        .and_then(|f| f.strip_prefix("--"))
    else {
        return e;
    };
    let cmd = AgentConfig::command();
    let Some(env) = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
    else {
        return e;
    };
    let on_command_line = args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a == format!("--{long}") || a.starts_with(&format!("--{long}="))
    });
    if on_command_line || std::env::var_os(env).is_none() {
        return e;
    }
    let env = env.to_string_lossy();
    let text = e.to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let text = text.replacen(
        &format!("for '{arg}'"),
        &format!("for '{arg}' (from the environment variable {env})"),
        1,
    );
    clap::Error::raw(e.kind(), text).with_cmd(&cmd)
}

/// A Kubernetes node name: an RFC 1123 subdomain (lowercase letters, digits, `-` and `.`, at
/// most 253 characters, each dot-separated label 1–63 characters starting and ending with a
/// letter or digit).
pub fn validate_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 253 {
        return Err(format!("{} characters, at most 253", name.len()));
    }
    for label in name.split('.') {
        let ok_chars = label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let ok_ends = label
            .chars()
            .next()
            .zip(label.chars().last())
            .is_some_and(|(a, b)| a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric());
        if label.is_empty() || label.len() > 63 || !ok_chars || !ok_ends {
            return Err(format!("label {label:?}: a Kubernetes node name is lowercase letters, digits, '-' and '.', each part 1-63 characters starting and ending with a letter or digit"));
        }
    }
    Ok(())
}

fn parse_node_name(s: &str) -> Result<String, String> {
    validate_node_name(s).map(|()| s.to_string())
}

/// `--pool-cidr`: a network, not an address inside one.
fn parse_pool(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| "expected an IPv4 CIDR such as 192.168.0.0/16".to_string())?;
    if net.addr() != net.network() {
        return Err(format!("host bits are set; did you mean {}?", net.trunc()));
    }
    Ok(net)
}

fn hostname() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?;
    let name = name.to_string_lossy().trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// `--ip`: a fixed address or autodetection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpSetting {
    Autodetect,
    Address(Ipv4Addr),
}

impl FromStr for IpSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("autodetect") {
            return Ok(IpSetting::Autodetect);
        }
        s.parse()
            .map(IpSetting::Address)
            .map_err(|_| "expected an IPv4 address or 'autodetect'".to_string())
    }
}

/// `--datastore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// A directory on this machine (the embedded default).
    File(PathBuf),
    /// CRDs on the Kubernetes API.
    Kubernetes,
    /// etcd v3 at `--etcd-endpoints` (Calico's `DATASTORE_TYPE=etcdv3` is accepted too).
    Etcd,
}

impl FromStr for Datastore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kubernetes" => return Ok(Datastore::Kubernetes),
            "etcd" | "etcdv3" => return Ok(Datastore::Etcd),
            _ => {}
        }
        match s.strip_prefix("file:") {
            Some(dir) if !dir.is_empty() => Ok(Datastore::File(PathBuf::from(dir))),
            _ => Err("expected 'file:<dir>' or 'etcd'".to_string()),
        }
    }
}

/// One `--etcd-endpoints` entry: `http://host:port` or `https://host:port`.
fn parse_etcd_endpoint(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| "expected http://<host>:<port> or https://<host>:<port>".to_string())?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| "the endpoint needs a port, e.g. http://10.0.0.5:2379".to_string())?;
    if host.is_empty() || authority.contains('/') {
        return Err("expected http://<host>:<port> or https://<host>:<port>".to_string());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.trim_end_matches('/').to_string()),
        _ => Err(format!("'{port}' is not a port (1..=65535)")),
    }
}

/// `--etcd-prefix`: an absolute key prefix; a trailing `/` is added.
fn parse_etcd_prefix(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err("the prefix must start with '/', e.g. /gingham/v1/".to_string());
    }
    Ok(if s.ends_with('/') {
        s.to_string()
    } else {
        format!("{s}/")
    })
}

fn parse_hold_time(s: &str) -> Result<u16, String> {
    let v: u16 = s
        .parse()
        .map_err(|_| "expected a number of seconds (0 or 3..=65535)".to_string())?;
    if v == 1 || v == 2 {
        return Err("a hold time must be 0 or at least 3 seconds (RFC 4271 §4.2)".to_string());
    }
    Ok(v)
}

/// An explicit BGP peer: `--peer 172.18.0.100:1790,as=65001,max-prefixes=1000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub address: Ipv4Addr,
    pub port: u16,
    pub asn: u32,
    /// This peer's TCP MD5 password, in a file (instead of `--bgp-password`).
    pub password_file: Option<PathBuf>,
    /// GTSM (RFC 5082) for this peer: `on` for a directly connected one; off by default.
    pub ttl_security: bool,
    /// The most prefixes it may send.
    pub max_prefixes: Option<u32>,
}

impl Default for PeerSpec {
    fn default() -> Self {
        PeerSpec {
            address: Ipv4Addr::UNSPECIFIED,
            port: 179,
            asn: 0,
            password_file: None,
            ttl_security: false,
            max_prefixes: None,
        }
    }
}

impl FromStr for PeerSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',').map(str::trim);
        let addr = parts.next().unwrap_or_default();
        let (ip, port) = match addr.split_once(':') {
            Some((ip, port)) => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("bad port '{port}' (expected 1..=65535)"))?;
                (ip, port)
            }
            None => (addr, 179),
        };
        let address: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("bad peer address '{ip}' (expected an IPv4 address)"))?;
        let mut spec = PeerSpec {
            address,
            port,
            ..PeerSpec::default()
        };
        let mut asn = None;
        for part in parts {
            match part.split_once('=') {
                Some(("as", v)) => {
                    let n: u32 =
                        v.parse().ok().filter(|n| *n != 0).ok_or_else(|| {
                            format!("bad AS number '{v}' (expected 1..=4294967295)")
                        })?;
                    asn = Some(n);
                }
                Some(("password-file", v)) if !v.is_empty() => {
                    spec.password_file = Some(PathBuf::from(v));
                }
                Some(("ttl-security", "on")) => spec.ttl_security = true,
                Some(("ttl-security", "off")) => spec.ttl_security = false,
                Some(("ttl-security", v)) => {
                    return Err(format!("bad ttl-security '{v}' (expected on or off)"))
                }
                Some(("max-prefixes", v)) => {
                    let n: u32 = v.parse().ok().filter(|n| *n != 0).ok_or_else(|| {
                        format!("bad max-prefixes '{v}' (expected 1..=4294967295)")
                    })?;
                    spec.max_prefixes = Some(n);
                }
                _ => return Err(format!("unknown peer option '{part}' (expected as=<n>, password-file=<path>, ttl-security=on|off or max-prefixes=<n>)")),
            }
        }
        spec.asn =
            asn.ok_or_else(|| "missing ',as=<n>' (format: <ip>[:<port>],as=<n>)".to_string())?;
        Ok(spec)
    }
}

impl fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port == 179 {
            write!(f, "{},as={}", self.address, self.asn)?;
        } else {
            write!(f, "{}:{},as={}", self.address, self.port, self.asn)?;
        }
        if let Some(p) = &self.password_file {
            write!(f, ",password-file={}", p.display())?;
        }
        if self.ttl_security {
            f.write_str(",ttl-security=on")?;
        }
        if let Some(n) = self.max_prefixes {
            write!(f, ",max-prefixes={n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_specs() {
        let p: PeerSpec = "172.18.0.4:1790,as=65001".parse().unwrap();
        assert_eq!(
            (p.address, p.port, p.asn),
            (Ipv4Addr::new(172, 18, 0, 4), 1790, 65001)
        );
        let p: PeerSpec = "172.18.0.3,as=4200000001".parse().unwrap();
        assert_eq!((p.port, p.asn), (179, 4_200_000_001));
        assert_eq!(p.to_string(), "172.18.0.3,as=4200000001");
        let p: PeerSpec =
            "172.18.0.9,as=65001,password-file=/etc/gingham/tor,ttl-security=on,max-prefixes=500"
                .parse()
                .unwrap();
        assert_eq!(
            (p.password_file.clone(), p.ttl_security, p.max_prefixes),
            (Some(PathBuf::from("/etc/gingham/tor")), true, Some(500))
        );
        assert_eq!(
            p.to_string(),
            "172.18.0.9,as=65001,password-file=/etc/gingham/tor,ttl-security=on,max-prefixes=500"
        );
        for (bad, needle) in [
            ("172.18.0.3", "missing ',as=<n>'"),
            ("172.18.0.300,as=1", "bad peer address '172.18.0.300'"),
            ("172.18.0.3:0,as=1", "bad port '0'"),
            ("172.18.0.3:x,as=1", "bad port 'x'"),
            ("172.18.0.3,as=0", "bad AS number '0'"),
            ("172.18.0.3,as=4294967296", "bad AS number '4294967296'"),
            ("172.18.0.3,as=1,ttl=2", "unknown peer option 'ttl=2'"),
            ("172.18.0.3,as=1,ttl-security=yes", "bad ttl-security 'yes'"),
            ("172.18.0.3,as=1,max-prefixes=0", "bad max-prefixes '0'"),
        ] {
            let err = bad.parse::<PeerSpec>().unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn hold_time_values() {
        assert_eq!(parse_hold_time("0"), Ok(0));
        assert_eq!(parse_hold_time("3"), Ok(3));
        assert!(parse_hold_time("1").is_err());
        assert!(parse_hold_time("2").is_err());
        assert!(parse_hold_time("-1").is_err());
    }
}
