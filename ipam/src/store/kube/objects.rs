//! Which Kubernetes object holds a record of each kind, and the conversions both ways.
//!
//! - IPAM records and pods' endpoints: custom resources of group `gingham.io`, version `v1`,
//!   cluster-scoped, the record's data as the object's `spec`.
//! - `Node`: the Kubernetes Node object itself. Its kubelet creates it; the agent only adds
//!   `gingham.io/ipv4-address` and `gingham.io/as` annotations, and a Node without them is no
//!   member of the mesh.
//! - `NodeLease` and `LeaderLease`: `coordination.k8s.io/v1` Leases in the agents' namespace,
//!   labelled `gingham.io/lease=node|leader`.
//!
//! A record's revision is `<uid>/<resourceVersion>`: an update carries both (the API server
//! refuses a stale resourceVersion with 409, and an object deleted and created again under the
//! same name with another UID), and a delete sends both as preconditions.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::core::{ApiResource, DynamicObject};
use serde_json::{json, Value};

use super::names::object_name;
use crate::resources::{LeaderLease, NodeLease, NodeRecord};
use crate::store::{CorruptRecord, Kind, Record, Revision, StoreError};

pub const GROUP: &str = "gingham.io";
pub const VERSION: &str = "v1";
/// The record's own name, on every object the store writes.
pub const NAME: &str = "gingham.io/name";
/// On a Node: its BGP address and AS, as Calico keeps `projectcalico.org/IPv4Address` and
/// `projectcalico.org/ASNumber`.
pub const ADDRESS: &str = "gingham.io/ipv4-address";
pub const AS: &str = "gingham.io/as";
/// On a Lease: which kind of lease record it is.
pub const LEASE_LABEL: &str = "gingham.io/lease";

/// Where records of a kind live.
#[derive(Debug, Clone)]
pub enum Target {
    Custom(ApiResource),
    Node,
    Lease(LeaseRole),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRole {
    Node,
    Leader,
}

impl LeaseRole {
    pub fn label(self) -> &'static str {
        match self {
            LeaseRole::Node => "node",
            LeaseRole::Leader => "leader",
        }
    }

    pub fn selector(self) -> String {
        format!("{LEASE_LABEL}={}", self.label())
    }
}

/// The custom resource of a kind: its API coordinates.
pub fn custom(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub fn target(kind: Kind) -> Target {
    match kind {
        Kind::IPPool => Target::Custom(custom("IPPool", "ippools")),
        Kind::IPAMBlock => Target::Custom(custom("IPAMBlock", "ipamblocks")),
        Kind::BlockAffinity => Target::Custom(custom("BlockAffinity", "blockaffinities")),
        Kind::IPAMHandle => Target::Custom(custom("IPAMHandle", "ipamhandles")),
        Kind::IPAMConfig => Target::Custom(custom("IPAMConfig", "ipamconfigs")),
        Kind::WorkloadEndpoint => Target::Custom(custom("WorkloadEndpoint", "workloadendpoints")),
        Kind::Node => Target::Node,
        Kind::NodeLease => Target::Lease(LeaseRole::Node),
        Kind::LeaderLease => Target::Lease(LeaseRole::Leader),
    }
}

/// The object name of a record.
pub fn object_name_of(kind: Kind, name: &str) -> Result<String, StoreError> {
    match target(kind) {
        Target::Custom(_) => object_name(name),
        // A Node's name is the node's: nothing to encode, and nothing else would find it.
        Target::Node => {
            if super::names::is_subdomain(name) {
                Ok(name.to_string())
            } else {
                Err(StoreError::InvalidName {
                    name: name.into(),
                    reason: "not a Kubernetes node name (RFC 1123 subdomain)".into(),
                })
            }
        }
        Target::Lease(role) => {
            if name.is_empty() {
                return Err(StoreError::InvalidName {
                    name: name.into(),
                    reason: "empty".into(),
                });
            }
            object_name(&format!("gingham-{}-{name}", role.label()))
        }
    }
}

pub fn revision(meta: &ObjectMeta) -> Revision {
    Revision(format!(
        "{}/{}",
        meta.uid.as_deref().unwrap_or(""),
        meta.resource_version.as_deref().unwrap_or("")
    ))
}

/// `(uid, resourceVersion)` of a revision this store gave out.
pub fn split_revision(r: &Revision) -> Option<(String, String)> {
    let (uid, rv) = r.0.split_once('/')?;
    (!rv.is_empty()).then(|| (uid.to_string(), rv.to_string()))
}

/// The record's name: the annotation, or the object's name for objects made by hand.
pub fn record_name(meta: &ObjectMeta) -> String {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(NAME))
        .or(meta.name.as_ref())
        .cloned()
        .unwrap_or_default()
}

fn corrupt(kind: Kind, name: &str, object: &str, reason: String) -> CorruptRecord {
    CorruptRecord {
        kind,
        name: name.to_string(),
        path: object.to_string(),
        reason,
    }
}

/// Metadata of an object about to be written: its name, the record's name, and, for an
/// update, the revision it replaces.
pub fn meta(object: &str, name: &str, rev: Option<&Revision>) -> ObjectMeta {
    let (uid, rv) = rev
        .and_then(split_revision)
        .map(|(u, r)| (Some(u).filter(|u| !u.is_empty()), Some(r)))
        .unwrap_or((None, None));
    ObjectMeta {
        name: Some(object.to_string()),
        annotations: Some(BTreeMap::from([(NAME.to_string(), name.to_string())])),
        uid,
        resource_version: rv,
        ..ObjectMeta::default()
    }
}

// --- custom resources ---------------------------------------------------------------------

pub fn custom_object(
    ar: &ApiResource,
    object: &str,
    name: &str,
    data: Value,
    rev: Option<&Revision>,
) -> DynamicObject {
    let mut o = DynamicObject::new(object, ar).data(json!({ "spec": data }));
    o.metadata = meta(object, name, rev);
    o
}

pub fn custom_record(kind: Kind, o: &DynamicObject) -> Result<Record, CorruptRecord> {
    let name = record_name(&o.metadata);
    let object = format!("{kind}/{}", o.metadata.name.as_deref().unwrap_or_default());
    let Some(spec) = o.data.get("spec") else {
        return Err(corrupt(kind, &name, &object, "no spec".into()));
    };
    Ok(Record {
        kind,
        name,
        revision: revision(&o.metadata),
        data: spec.clone(),
    })
}

// --- Node objects ------------------------------------------------------------------------

/// The record a Node object carries (its metadata is all it takes): `None` when it has no
/// Gingham annotations (its agent has not registered it), an error when they do not read.
pub fn node_record(m: &ObjectMeta) -> Option<Result<Record, CorruptRecord>> {
    let name = m.name.clone().unwrap_or_default();
    let ann = m.annotations.as_ref()?;
    let address = ann.get(ADDRESS)?;
    let object = format!("Node/{name}");
    let read = || -> Result<Record, String> {
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("{ADDRESS} {address:?} is not an IPv4 address"))?;
        let asn: u32 = match ann.get(AS) {
            Some(a) => a
                .parse()
                .map_err(|_| format!("{AS} {a:?} is not an AS number"))?,
            None => return Err(format!("{AS} is missing")),
        };
        let rec = NodeRecord {
            name: name.clone(),
            address,
            asn,
            last_heartbeat: 0,
        };
        Ok(Record {
            kind: Kind::Node,
            name: name.clone(),
            revision: revision(m),
            data: serde_json::to_value(rec).map_err(|e| e.to_string())?,
        })
    };
    Some(read().map_err(|reason| corrupt(Kind::Node, &name, &object, reason)))
}

/// The annotations a Node record is written as (`None` values remove them).
pub fn node_annotations(
    name: &str,
    data: Option<&Value>,
) -> Result<BTreeMap<String, Option<String>>, StoreError> {
    let Some(data) = data else {
        return Ok(BTreeMap::from([
            (ADDRESS.to_string(), None),
            (AS.to_string(), None),
        ]));
    };
    let rec: NodeRecord =
        serde_json::from_value(data.clone()).map_err(|e| StoreError::Refused {
            kind: Kind::Node,
            name: name.into(),
            reason: format!("not a node record: {e}"),
        })?;
    Ok(BTreeMap::from([
        (ADDRESS.to_string(), Some(rec.address.to_string())),
        (AS.to_string(), Some(rec.asn.to_string())),
    ]))
}

/// A JSON merge patch of a Node's annotations, conditional on the revision it was read at.
pub fn node_patch(annotations: BTreeMap<String, Option<String>>, rev: &Revision) -> Value {
    let (uid, rv) = split_revision(rev).unwrap_or_default();
    let mut metadata = json!({ "annotations": annotations, "resourceVersion": rv });
    if !uid.is_empty() {
        metadata["uid"] = json!(uid);
    }
    json!({ "metadata": metadata })
}

// --- Leases ------------------------------------------------------------------------------

fn micro_time(secs: u64) -> Option<MicroTime> {
    Timestamp::from_second(secs as i64).ok().map(MicroTime)
}

fn secs(t: &Option<MicroTime>) -> u64 {
    t.as_ref()
        .map(|t| t.0.as_second().max(0) as u64)
        .unwrap_or(0)
}

/// A node's heartbeat Lease is owned by its Node, so Kubernetes' garbage collector removes it
/// with the Node (as it does the kubelet's own node leases).
pub fn owned_by_node(node: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.into(),
        uid: uid.into(),
        ..OwnerReference::default()
    }
}

pub fn lease_object(
    role: LeaseRole,
    object: &str,
    name: &str,
    data: &Value,
    rev: Option<&Revision>,
) -> Result<Lease, StoreError> {
    let kind = match role {
        LeaseRole::Node => Kind::NodeLease,
        LeaseRole::Leader => Kind::LeaderLease,
    };
    let refused = |e: serde_json::Error| StoreError::Refused {
        kind,
        name: name.into(),
        reason: format!("not a {kind} record: {e}"),
    };
    let spec = match role {
        LeaseRole::Node => {
            let l: NodeLease = serde_json::from_value(data.clone()).map_err(refused)?;
            LeaseSpec {
                holder_identity: Some(l.node),
                renew_time: micro_time(l.renew_time),
                ..LeaseSpec::default()
            }
        }
        LeaseRole::Leader => {
            let l: LeaderLease = serde_json::from_value(data.clone()).map_err(refused)?;
            LeaseSpec {
                holder_identity: Some(l.holder),
                renew_time: micro_time(l.renew_time),
                lease_duration_seconds: Some(l.duration_secs.min(i32::MAX as u64) as i32),
                ..LeaseSpec::default()
            }
        }
    };
    let mut metadata = meta(object, name, rev);
    metadata.labels = Some(BTreeMap::from([(
        LEASE_LABEL.to_string(),
        role.label().to_string(),
    )]));
    Ok(Lease {
        metadata,
        spec: Some(spec),
    })
}

pub fn lease_record(role: LeaseRole, l: &Lease) -> Result<Record, CorruptRecord> {
    let kind = match role {
        LeaseRole::Node => Kind::NodeLease,
        LeaseRole::Leader => Kind::LeaderLease,
    };
    let name = record_name(&l.metadata);
    let object = format!("Lease/{}", l.metadata.name.as_deref().unwrap_or_default());
    let spec = l.spec.clone().unwrap_or_default();
    let Some(holder) = spec.holder_identity.filter(|h| !h.is_empty()) else {
        return Err(corrupt(kind, &name, &object, "no holderIdentity".into()));
    };
    let data = match role {
        LeaseRole::Node => serde_json::to_value(NodeLease {
            node: holder,
            renew_time: secs(&spec.renew_time),
        }),
        LeaseRole::Leader => serde_json::to_value(LeaderLease {
            holder,
            renew_time: secs(&spec.renew_time),
            duration_secs: spec.lease_duration_seconds.unwrap_or(0).max(0) as u64,
        }),
    }
    .map_err(|e| corrupt(kind, &name, &object, e.to_string()))?;
    Ok(Record {
        kind,
        name,
        revision: revision(&l.metadata),
        data,
    })
}

/// What others put on an object besides the record (labels, annotations, owners,
/// finalizers): an update, a PUT of the whole object, must carry it over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
}

/// The foreign metadata of an object; `None` when there is none.
pub fn extras(m: &ObjectMeta) -> Option<Extras> {
    let e = Extras {
        labels: m
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != LEASE_LABEL)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        annotations: m
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != NAME)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        owners: m.owner_references.clone().unwrap_or_default(),
        finalizers: m.finalizers.clone().unwrap_or_default(),
    };
    (e != Extras::default()).then_some(e)
}

pub fn apply_extras(m: &mut ObjectMeta, e: &Extras) {
    let labels = m.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in &e.labels {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let annotations = m.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in &e.annotations {
        annotations.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if !e.owners.is_empty() {
        m.owner_references = Some(e.owners.clone());
    }
    if !e.finalizers.is_empty() {
        m.finalizers = Some(e.finalizers.clone());
    }
    if m.labels.as_ref().is_some_and(BTreeMap::is_empty) {
        m.labels = None;
    }
}
