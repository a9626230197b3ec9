//! Human-readable tables for `routectl`, in the style of `calicoctl node status` and
//! `birdc show protocols`: terse, aligned, one line per thing. `-o json` bypasses all of this.

use crate::control::api::{
    BlocksReport, EndpointRecord, IpInfo, IpamReport, NodeInfo, PeerInfo, RouteInfo, Summary, Trace,
};
use bgp::fsm::State;
use bgp::PeerKind;
use comfy_table::{ContentLineStyle, LineStyle, TableStyle};
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// calicoctl's table style: `+`/`-`/`|` borders, a `-` rule under the header, none between
/// rows.
const CALICOCTL_STYLE: TableStyle = TableStyle::new()
    .top_border(LineStyle::new('+', '-', '+', '+'))
    .header_lines(ContentLineStyle::new('|', '|', '|'))
    .header_separator(LineStyle::new('+', '-', '+', '+'))
    .content_lines(ContentLineStyle::new('|', '|', '|'))
    .bottom_border(LineStyle::new('+', '-', '+', '+'));

/// A bordered table like calicoctl's.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(CALICOCTL_STYLE)
        // Never wrap: an operator's terminal width must not change what a script reads.
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(headers.iter().copied());
    for row in rows {
        t.add_row(row.iter().map(String::as_str));
    }
    let mut out = t.to_string();
    out.push('\n');
    out
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `1h02m03s`-style durations, compact like BIRD's.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `2026-12-04 02:10:03 UTC` (no time zone database needed: always UTC).
pub fn utc(unix: u64) -> String {
    let (days, secs) = (unix / 86400, unix % 86400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn since(unix: u64) -> String {
    if unix == 0 {
        return "-".into();
    }
    format!("{} ago", duration(now().saturating_sub(unix)))
}

fn peer_type(t: PeerKind) -> &'static str {
    match t {
        PeerKind::Mesh => "node-to-node mesh",
        PeerKind::Explicit => "explicit",
    }
}

/// `routectl show`.
pub fn summary(s: &Summary) -> String {
    let mut out = format!(
        "Gingham agent is running.\nNode {} ({}), AS {}, router ID {}\n\nIPv4 BGP status\n",
        s.node, s.ip, s.asn, s.router_id
    );
    if s.peers.is_empty() {
        out.push_str("No IPv4 peers found.\n");
        return out;
    }
    let rows: Vec<Vec<String>> = s
        .peers
        .iter()
        .map(|p| {
            let state = if p.state == State::Established {
                "up"
            } else {
                "start"
            };
            vec![
                p.address.to_string(),
                peer_type(p.peer_type).to_string(),
                state.to_string(),
                since(p.since),
                p.info.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
        &rows,
    ));
    out
}

/// `routectl show peers`: one block per peer, like `birdc show protocols all`.
pub fn peers(peers: &[PeerInfo]) -> String {
    if peers.is_empty() {
        return "No peers.\n".into();
    }
    let mut out = String::new();
    for p in peers {
        let _ = writeln!(
            out,
            "{} port {} AS {} ({})",
            p.address,
            p.port,
            p.asn,
            peer_type(p.peer_type)
        );
        let up = p.uptime_secs.map(duration).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "  State:          {} since {} ({}), up {}",
            p.state,
            if p.since == 0 {
                "-".to_string()
            } else {
                utc(p.since)
            },
            since(p.since),
            up
        );
        let _ = writeln!(out, "  Info:           {}", p.info);
        if let Some(h) = p.hold_time {
            let ka = p
                .keepalive
                .map(|k| k.to_string())
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(out, "  Hold time:      {h} s, keepalive {ka} s");
        }
        if !p.capabilities.is_empty() {
            let _ = writeln!(out, "  Capabilities:   {}", p.capabilities.join(", "));
        }
        let _ = writeln!(
            out,
            "  Prefixes:       {} received, {} accepted, {} advertised",
            p.prefixes_received, p.prefixes_accepted, p.prefixes_advertised
        );
        let m = |c: &crate::control::api::MessageCounts| {
            format!(
                "open {} update {} notification {} keepalive {} refresh {}",
                c.open, c.update, c.notification, c.keepalive, c.route_refresh
            )
        };
        let _ = writeln!(out, "  Messages in:    {}", m(&p.messages_in));
        let _ = writeln!(out, "  Messages out:   {}", m(&p.messages_out));
        let _ = writeln!(out, "  Flaps:          {}", p.flaps);
        if let Some(t) = p.graceful_restart {
            let _ = writeln!(
                out,
                "  Graceful restart: negotiated, its restart time {t} s; End-of-RIB {}",
                if p.end_of_rib_received {
                    "received"
                } else {
                    "not yet"
                }
            );
        }
        if p.stale_routes > 0 {
            let _ = writeln!(
                out,
                "  Stale routes:   {} (kept while it restarts, RFC 4724)",
                p.stale_routes
            );
        }
        if let Some(e) = &p.last_error {
            let _ = writeln!(out, "  Last error:     {e}");
        }
    }
    out
}

/// `routectl show routes`: like `gobgp global rib`, `*>` marks the best path; `S` a stale one
/// (kept from a restarting peer, RFC 4724).
pub fn routes(routes: &[RouteInfo]) -> String {
    if routes.is_empty() {
        return "No routes.\n".into();
    }
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            vec![
                match (r.best, r.stale) {
                    (true, false) => "*>".into(),
                    (true, true) => "S>".into(),
                    (false, false) => "*".into(),
                    (false, true) => "S".into(),
                },
                r.prefix.to_string(),
                r.next_hop.to_string(),
                if r.as_path.is_empty() {
                    "-".into()
                } else {
                    r.as_path.clone()
                },
                r.origin.clone(),
                r.local_pref
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                r.source.clone(),
                if r.in_kernel {
                    "yes".into()
                } else {
                    "no".into()
                },
            ]
        })
        .collect();
    table(
        &[
            "",
            "PREFIX",
            "NEXT HOP",
            "AS PATH",
            "ORIGIN",
            "LOCAL PREF",
            "SOURCE",
            "KERNEL",
        ],
        &rows,
    )
}

fn pct(part: u64, total: u64) -> String {
    if total == 0 {
        return format!("{part}");
    }
    format!("{part} ({}%)", part * 100 / total)
}

/// `routectl show blocks`: like `calicoctl ipam show --show-blocks`.
pub fn blocks(b: &BlocksReport) -> String {
    let mut rows = vec![vec![
        "IP Pool".to_string(),
        b.pool.to_string(),
        "-".into(),
        b.total.to_string(),
        pct(b.in_use, b.total),
        pct(b.free, b.total),
    ]];
    for blk in &b.blocks {
        let total = blk.in_use + blk.free;
        rows.push(vec![
            "Block".into(),
            blk.block.to_string(),
            blk.node.clone().unwrap_or_else(|| "(none)".into()),
            total.to_string(),
            pct(blk.in_use, total),
            pct(blk.free, total),
        ]);
    }
    table(
        &[
            "GROUPING",
            "CIDR",
            "NODE",
            "IPS TOTAL",
            "IPS IN USE",
            "IPS FREE",
        ],
        &rows,
    )
}

/// `routectl ipam show`: the pool and each node's share of it, like `calicoctl ipam show`.
pub fn ipam_summary(b: &BlocksReport) -> String {
    let mut rows = vec![vec![
        "IP Pool".to_string(),
        b.pool.to_string(),
        "-".into(),
        b.total.to_string(),
        pct(b.in_use, b.total),
        pct(b.free, b.total),
    ]];
    let mut nodes: std::collections::BTreeMap<String, (usize, u64, u64)> = Default::default();
    for blk in &b.blocks {
        let e = nodes
            .entry(blk.node.clone().unwrap_or_else(|| "(none)".into()))
            .or_default();
        e.0 += 1;
        e.1 += blk.in_use;
        e.2 += blk.free;
    }
    for (node, (blocks, in_use, free)) in nodes {
        let total = in_use + free;
        rows.push(vec![
            "Node".into(),
            node,
            blocks.to_string(),
            total.to_string(),
            pct(in_use, total),
            pct(free, total),
        ]);
    }
    let mut s = table(
        &[
            "GROUPING",
            "CIDR / NODE",
            "BLOCKS",
            "IPS TOTAL",
            "IPS IN USE",
            "IPS FREE",
        ],
        &rows,
    );
    s.push_str(
        "`routectl show blocks` lists the blocks; `routectl ipam show --ip <ip>` one address.\n",
    );
    s
}

/// `routectl node list`.
pub fn nodes(nodes: &[NodeInfo]) -> String {
    if nodes.is_empty() {
        return "No nodes registered.\n".into();
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                if n.this_node {
                    format!("{} (this node)", n.name)
                } else {
                    n.name.clone()
                },
                n.ip.to_string(),
                n.asn.to_string(),
                if n.blocks.is_empty() {
                    "-".into()
                } else {
                    n.blocks
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                format!("{} ago", duration(n.heartbeat_age_secs)),
            ]
        })
        .collect();
    table(&["NAME", "IP", "AS", "BLOCKS", "LAST HEARTBEAT"], &rows)
}

/// `routectl show endpoints`.
pub fn endpoints(eps: &[EndpointRecord]) -> String {
    if eps.is_empty() {
        return "No endpoints.\n".into();
    }
    let rows: Vec<Vec<String>> = eps
        .iter()
        .map(|e| {
            let short: String = e.container_id.chars().take(12).collect();
            vec![
                format!(
                    "{}/{}",
                    e.namespace.as_deref().unwrap_or("-"),
                    e.pod.as_deref().unwrap_or("-")
                ),
                short,
                e.interface.clone(),
                e.ip.to_string(),
            ]
        })
        .collect();
    table(&["POD", "CONTAINER", "INTERFACE", "ADDRESS"], &rows)
}

/// `routectl ipam show --ip`: calicoctl's wording.
pub fn ip_info(i: &IpInfo) -> String {
    if !i.assigned {
        let mut s = format!("IP {} is not assigned\n", i.ip);
        if let Some(b) = i.block {
            let _ = writeln!(
                s,
                "Block: {b} (node {})",
                i.block_owner.as_deref().unwrap_or("(none)")
            );
        }
        return s;
    }
    let mut s = format!("IP {} is in use\n", i.ip);
    let _ = writeln!(s, "Handle ID: {}", i.handle.as_deref().unwrap_or("-"));
    if let Some(b) = i.block {
        let _ = writeln!(
            s,
            "Block: {b} (node {})",
            i.block_owner.as_deref().unwrap_or("(none)")
        );
    }
    let _ = writeln!(s, "Attributes:");
    for (k, v) in [
        ("node", &i.node),
        ("pod", &i.pod),
        ("namespace", &i.namespace),
    ] {
        if let Some(v) = v {
            let _ = writeln!(s, "  {k}: {v}");
        }
    }
    s
}

/// `routectl ipam check` / `repair`: calicoctl's wording.
pub fn ipam_report(r: &IpamReport, repair: bool) -> String {
    let mut s = String::from("Checking IPAM for inconsistencies...\n");
    for p in &r.problems {
        let _ = writeln!(s, "  {p}");
    }
    let _ = writeln!(s, "Check complete; found {} problems.", r.problems.len());
    if repair {
        for f in &r.fixed {
            let _ = writeln!(s, "  fixed: {f}");
        }
        let _ = writeln!(s, "Repair complete; fixed {} problems.", r.fixed.len());
        for l in &r.left {
            let _ = writeln!(s, "  not fixed: {l}");
        }
        if !r.left.is_empty() {
            let _ = writeln!(s, "{} problems need a person.", r.left.len());
        }
    }
    s
}

/// `routectl trace <ip>`.
pub fn trace(t: &Trace) -> String {
    let mut s = format!("Path to {} from this node:\n", t.ip);
    for (i, step) in t.steps.iter().enumerate() {
        let _ = writeln!(s, "  {}. {step}", i + 1);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_like_calicoctl() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(
            t,
            "+-----+----+\n| A   | BB |\n+-----+----+\n| xyz | 1  |\n| q   | 22 |\n+-----+----+\n"
        );
        // With no rows: the header between rules, then the bottom rule, as before.
        let empty = table(&["PEER ADDRESS"], &[]);
        assert_eq!(
            empty,
            "+--------------+\n| PEER ADDRESS |\n+--------------+\n+--------------+\n"
        );
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_351_403), "2026-12-04 02:30:03 UTC");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(3723), "1h02m03s");
        assert_eq!(duration(90000), "1d01h00m");
    }
}
