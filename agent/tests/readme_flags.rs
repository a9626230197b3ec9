//! The README's table of `gingham-agent` flags is the one in `--help`: every flag, its
//! environment variable and its default. A flag added, renamed or given a new default without
//! the README following fails here.

use agent::config::AgentConfig;
use clap::CommandFactory;
use std::collections::BTreeMap;

/// `| `--flag ...` | `ENV` ... | default | what |` rows of the agent's table.
fn readme_rows() -> BTreeMap<String, (String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = readme
        .split("## The agent: `gingham-agent`")
        .nth(1)
        .expect("the agent's section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let flag = cells[0]
            .trim_matches('`')
            .split([' ', '<', '`'])
            .next()
            .unwrap()
            .to_string();
        let env = cells[1].split('`').nth(1).unwrap_or_default().to_string();
        rows.insert(flag, (env, cells[2].trim_matches('`').to_string()));
    }
    rows
}

#[test]
fn the_readme_flag_table_matches_help() {
    let rows = readme_rows();
    let cmd = AgentConfig::command();
    let mut seen = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version"].contains(&long) {
            continue;
        }
        let flag = format!("--{long}");
        seen.push(flag.clone());
        let (env, default) = rows
            .get(&flag)
            .unwrap_or_else(|| panic!("{flag} is in --help but not in the README's table"));
        let want_env = arg
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert_eq!(env, &want_env, "{flag}: the README says env {env:?}");
        if let Some(d) = arg.get_default_values().first() {
            let d = d.to_string_lossy();
            assert_eq!(
                default, &d,
                "{flag}: the README's default {default:?}, --help's {d:?}"
            );
        }
    }
    for flag in rows.keys() {
        assert!(
            seen.contains(flag),
            "the README lists {flag}, which --help does not have"
        );
    }
}
