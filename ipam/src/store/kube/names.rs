//! Record names as Kubernetes object names.
//!
//! An object's name must be a DNS subdomain (RFC 1123: lower-case letters, digits, `-` and `.`,
//! labels that start and end with a letter or digit, at most 253 characters). Most record names
//! already are one (`192-168-0-0-26`, `k8s-pod-network.<container ID>`) and are kept as they are,
//! so `kubectl get ipamblocks` shows them. Any other name (an affinity's `<node>-<cidr>` with its
//! `/`, a handle an operator chose) becomes a readable form of it plus a hash of the whole name,
//! so two names never share an object. The record's own name always travels with the object in
//! the `gingham.io/name` annotation, which is what a read gives back.

use crate::store::StoreError;

/// The longest object name.
const MAX: usize = 253;
/// How much of a name the readable part keeps (the rest is `-` and 16 hex digits).
const KEEP: usize = 200;

/// Whether `name` is a DNS subdomain as Kubernetes checks it.
pub fn is_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
        })
}

/// The object name for a record name.
pub fn object_name(name: &str) -> Result<String, StoreError> {
    if name.is_empty() {
        return Err(StoreError::InvalidName {
            name: name.into(),
            reason: "empty".into(),
        });
    }
    // Kept as it is, unless it looks like another name's encoding (`…-<16 hex>`), which
    // could then be two records' object.
    if is_subdomain(name) && !looks_encoded(name) {
        return Ok(name.to_string());
    }
    let mut readable = String::with_capacity(KEEP);
    for c in name.chars().flat_map(char::to_lowercase) {
        if readable.len() >= KEEP {
            break;
        }
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        // One `-` for a run of anything else, so `a/b` and `a//b` read alike (the hash tells
        // them apart).
        if !(c == '-' && readable.ends_with('-')) {
            readable.push(c);
        }
    }
    let readable = readable.trim_matches('-');
    let hash = fnv64(name.as_bytes());
    Ok(if readable.is_empty() {
        format!("x-{hash:016x}")
    } else {
        format!("{readable}-{hash:016x}")
    })
}

fn looks_encoded(name: &str) -> bool {
    name.len() > 17
        && name.as_bytes()[name.len() - 17] == b'-'
        && name[name.len() - 16..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// FNV-1a, 64 bits: stable across builds and platforms, which a name must be.
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_names_that_are_subdomains_stay() {
        for n in [
            "192-168-0-0-26",
            "k8s-pod-network.0123abcd",
            "default",
            "node-1",
        ] {
            assert_eq!(object_name(n).unwrap(), n);
        }
    }

    #[test]
    fn kube_other_names_become_subdomains_of_their_own() {
        let a = object_name("node1-192.168.0.0/26").unwrap();
        assert_eq!(
            a,
            format!(
                "node1-192-168-0-0-26-{:016x}",
                fnv64(b"node1-192.168.0.0/26")
            )
        );
        let names = [
            "node1-192.168.0.0/26",
            "node1-192.168.0.0//26",
            "My_VM",
            "my-vm_",
            "-x",
            "a..b",
            // A valid name that looks like the encoding of another is encoded in its turn.
            "node1-192-168-0-0-26-0123456789abcdef",
            ".",
            &"y".repeat(400),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for n in names {
            let o = object_name(n).unwrap();
            assert!(is_subdomain(&o), "{n} -> {o}");
            assert!(seen.insert(o), "two names share an object");
        }
        assert!(object_name("").is_err());
        let lookalike = object_name("node1-0123456789abcdef").unwrap();
        assert_ne!(lookalike, "node1-0123456789abcdef");
    }
}
