//! What a watch has told its reader so far, and the events that bring the reader up to date
//! with what is read now. Shared by the file store's watches (inotify or polling).
//!
//! A record that turns unreadable is reported once as `Error` and keeps the revision it was
//! last read at: it is not gone, so no `Deleted` goes out, and a reader keeps what it knew.
//! When it reads again it is sent as `Modified` even at the old revision.

use std::collections::{BTreeMap, BTreeSet};

use super::{CorruptRecord, Kind, Listing, Record, Revision, WatchEvent};

pub(super) struct Seen {
    kind: Kind,
    revisions: BTreeMap<String, Revision>,
    /// Unreadable records already reported, by name: (path, reason).
    corrupt: BTreeMap<String, (String, String)>,
}

impl Seen {
    pub fn new(kind: Kind) -> Self {
        Seen {
            kind,
            revisions: BTreeMap::new(),
            corrupt: BTreeMap::new(),
        }
    }

    /// One record as it reads now: there (`Ok(Some)`), gone (`Ok(None)`) or unreadable.
    pub fn one(
        &mut self,
        name: &str,
        now: Result<Option<Record>, CorruptRecord>,
        out: &mut Vec<WatchEvent>,
    ) {
        match now {
            Ok(Some(rec)) => {
                let was_corrupt = self.corrupt.remove(&rec.name).is_some();
                match self
                    .revisions
                    .insert(rec.name.clone(), rec.revision.clone())
                {
                    None => out.push(WatchEvent::Added(rec)),
                    Some(old) if old != rec.revision || was_corrupt => {
                        out.push(WatchEvent::Modified(rec))
                    }
                    Some(_) => {}
                }
            }
            Ok(None) => {
                self.corrupt.remove(name);
                if self.revisions.remove(name).is_some() {
                    out.push(WatchEvent::Deleted {
                        kind: self.kind,
                        name: name.to_string(),
                    });
                }
            }
            Err(c) => {
                let key = (c.path.clone(), c.reason.clone());
                if self.corrupt.get(&c.name) != Some(&key) {
                    self.corrupt.insert(c.name.clone(), key);
                    out.push(WatchEvent::Error(c));
                }
            }
        }
    }

    /// A full listing: what is in it is read as above, what is not in it is gone.
    pub fn all(&mut self, listing: Listing, out: &mut Vec<WatchEvent>) {
        let mut present = BTreeSet::new();
        for rec in listing.records {
            present.insert(rec.name.clone());
            let name = rec.name.clone();
            self.one(&name, Ok(Some(rec)), out);
        }
        for c in listing.errors {
            present.insert(c.name.clone());
            let name = c.name.clone();
            self.one(&name, Err(c), out);
        }
        let gone: Vec<String> = self
            .revisions
            .keys()
            .chain(self.corrupt.keys())
            .filter(|n| !present.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.one(&name, Ok(None), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(name: &str, rev: &str) -> Record {
        Record {
            kind: Kind::Node,
            name: name.into(),
            revision: Revision(rev.into()),
            data: json!({}),
        }
    }

    fn bad(name: &str) -> CorruptRecord {
        CorruptRecord {
            kind: Kind::Node,
            name: name.into(),
            path: format!("Node/{name}.json"),
            reason: "junk".into(),
        }
    }

    #[test]
    fn added_modified_unreadable_readable_again_deleted() {
        let mut s = Seen::new(Kind::Node);
        let mut out = Vec::new();
        s.one("a", Ok(Some(rec("a", "1"))), &mut out);
        s.one("a", Ok(Some(rec("a", "1"))), &mut out);
        s.one("a", Ok(Some(rec("a", "2"))), &mut out);
        s.one("a", Err(bad("a")), &mut out);
        s.one("a", Err(bad("a")), &mut out);
        s.one("a", Ok(Some(rec("a", "2"))), &mut out);
        s.one("a", Ok(None), &mut out);
        s.one("a", Ok(None), &mut out);
        let kinds: Vec<&str> = out
            .iter()
            .map(|e| match e {
                WatchEvent::Added(_) => "added",
                WatchEvent::Modified(_) => "modified",
                WatchEvent::Deleted { .. } => "deleted",
                WatchEvent::Error(_) => "error",
                WatchEvent::Synced => "synced",
            })
            .collect();
        assert_eq!(kinds, ["added", "modified", "error", "modified", "deleted"]);
    }

    #[test]
    fn a_listing_deletes_what_it_lacks_but_not_what_is_unreadable() {
        let mut s = Seen::new(Kind::Node);
        let mut out = Vec::new();
        let listing =
            |records: Vec<Record>, errors: Vec<CorruptRecord>| Listing { records, errors };
        s.all(
            listing(vec![rec("a", "1"), rec("b", "1")], vec![]),
            &mut out,
        );
        out.clear();
        s.all(listing(vec![rec("b", "1")], vec![bad("a")]), &mut out);
        assert!(
            matches!(&out[..], [WatchEvent::Error(c)] if c.name == "a"),
            "{out:?}"
        );
        out.clear();
        s.all(listing(vec![], vec![]), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out.iter().all(|e| matches!(e, WatchEvent::Deleted { .. })));
    }
}
