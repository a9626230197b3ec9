//! The Loc-RIB's map from prefix to paths, ordered and dense.
//!
//! A `BTreeMap<Ipv4Net, _>` left half of every node empty when prefixes arrive in order (as a
//! full table does: a node that fills up at its right end splits in the middle and the left
//! half is never touched again), which made the map twice the size of its data. Here entries
//! live in sorted leaves of up to [`LEAF`] entries, keys and values in two arrays (a 5-byte key
//! next to a 16-byte value, no padding), found through a small B-tree of leaves by their first
//! prefix. A leaf that is full takes an entry at its end by starting a new leaf, so a table
//! that arrives in order packs its leaves full; anywhere else it splits in two.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

/// Entries per leaf: an insert moves at most this many entries (a few KB), a lookup is one
/// B-tree search among a thousandth of the prefixes and a binary search of a leaf.
pub const LEAF: usize = 128;

#[derive(Debug)]
struct Leaf<V> {
    keys: Vec<Ipv4Net>,
    vals: Vec<V>,
}

#[derive(Debug)]
pub(crate) struct PrefixTable<V> {
    /// Leaves by their first key; none is empty.
    leaves: BTreeMap<Ipv4Net, Leaf<V>>,
    len: usize,
}

impl<V> Default for PrefixTable<V> {
    fn default() -> Self {
        PrefixTable {
            leaves: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<V> PrefixTable<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// The first key of the leaf that holds, or would hold, `k`.
    fn leaf_of(&self, k: &Ipv4Net) -> Option<Ipv4Net> {
        self.leaves
            .range(..=*k)
            .next_back()
            .or_else(|| self.leaves.iter().next())
            .map(|(first, _)| *first)
    }

    pub fn get(&self, k: &Ipv4Net) -> Option<&V> {
        let (_, leaf) = self.leaves.range(..=*k).next_back()?;
        let i = leaf.keys.binary_search(k).ok()?;
        Some(&leaf.vals[i])
    }

    pub fn get_mut(&mut self, k: &Ipv4Net) -> Option<&mut V> {
        let (_, leaf) = self.leaves.range_mut(..=*k).next_back()?;
        let i = leaf.keys.binary_search(k).ok()?;
        Some(&mut leaf.vals[i])
    }

    /// The value of `k`, inserted with `make` if it is not there.
    pub fn get_or_insert_with(&mut self, k: Ipv4Net, make: impl FnOnce() -> V) -> &mut V {
        let Some(first) = self.leaf_of(&k) else {
            self.len += 1;
            let leaf = self.leaves.entry(k).or_insert(Leaf {
                keys: vec![k],
                vals: vec![make()],
            });
            return &mut leaf.vals[0];
        };
        let leaf = self.leaves.get_mut(&first).expect("leaf of a known key");
        let i = match leaf.keys.binary_search(&k) {
            Ok(i) => {
                let leaf = self.leaves.get_mut(&first).expect("leaf of a known key");
                return &mut leaf.vals[i];
            }
            Err(i) => i,
        };
        self.len += 1;
        if leaf.keys.len() < LEAF {
            leaf.keys.insert(i, k);
            leaf.vals.insert(i, make());
            if i == 0 {
                // A new smallest key of the whole table: the leaf is found by it from now on.
                let leaf = self.leaves.remove(&first).expect("the leaf just written");
                return &mut self.leaves.entry(k).or_insert(leaf).vals[0];
            }
            return &mut self.leaves.get_mut(&first).expect("leaf").vals[i];
        }
        if i == LEAF {
            // Past the end of a full leaf: a leaf of its own, which the next keys fill.
            let leaf = self.leaves.entry(k).or_insert(Leaf {
                keys: Vec::with_capacity(LEAF),
                vals: Vec::with_capacity(LEAF),
            });
            leaf.keys.push(k);
            leaf.vals.push(make());
            return &mut leaf.vals[0];
        }
        // Anywhere else in a full leaf: split it in two.
        let right = Leaf {
            keys: leaf.keys.split_off(LEAF / 2),
            vals: leaf.vals.split_off(LEAF / 2),
        };
        let right_first = right.keys[0];
        self.leaves.insert(right_first, right);
        // Now there is room; the key goes where it belongs (its leaf may have changed).
        self.len -= 1;
        self.get_or_insert_with(k, make)
    }

    pub fn remove(&mut self, k: &Ipv4Net) -> Option<V> {
        let first = *self.leaves.range(..=*k).next_back()?.0;
        let leaf = self.leaves.get_mut(&first)?;
        let i = leaf.keys.binary_search(k).ok()?;
        leaf.keys.remove(i);
        let v = leaf.vals.remove(i);
        self.len -= 1;
        if leaf.keys.is_empty() {
            self.leaves.remove(&first);
        } else {
            // Give back what a shrinking leaf no longer needs (a table that lost most of its
            // routes must not keep their room).
            if leaf.keys.capacity() >= 4 * leaf.keys.len() && leaf.keys.capacity() > 8 {
                leaf.keys.shrink_to(leaf.keys.len() * 2);
                leaf.vals.shrink_to(leaf.vals.len() * 2);
            }
            if i == 0 {
                let leaf = self.leaves.remove(&first).expect("the leaf just written");
                self.leaves.insert(leaf.keys[0], leaf);
            }
        }
        Some(v)
    }

    /// Every entry, in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (&Ipv4Net, &V)> {
        self.leaves
            .values()
            .flat_map(|l| l.keys.iter().zip(l.vals.iter()))
    }

    /// The entries from `start` on, in prefix order.
    pub fn iter_from(&self, start: Ipv4Net) -> impl Iterator<Item = (&Ipv4Net, &V)> {
        let from = self
            .leaves
            .range(..=start)
            .next_back()
            .map(|(k, _)| *k)
            .unwrap_or(start);
        self.leaves
            .range(from..)
            .flat_map(|(_, l)| l.keys.iter().zip(l.vals.iter()))
            .skip_while(move |(k, _)| **k < start)
    }

    /// The entries before `end`, from the nearest back.
    pub fn iter_before(&self, end: Ipv4Net) -> impl Iterator<Item = (&Ipv4Net, &V)> {
        self.leaves
            .range(..=end)
            .rev()
            .flat_map(|(_, l)| l.keys.iter().zip(l.vals.iter()).rev())
            .skip_while(move |(k, _)| **k >= end)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.leaves.values().flat_map(|l| l.vals.iter())
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.leaves.values_mut().flat_map(|l| l.vals.iter_mut())
    }
}

impl<'a, V> IntoIterator for &'a PrefixTable<V> {
    type Item = (&'a Ipv4Net, &'a V);
    type IntoIter = Box<dyn Iterator<Item = (&'a Ipv4Net, &'a V)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn net(i: u32, len: u8) -> Ipv4Net {
        Ipv4Net::new(Ipv4Addr::from(i), len).unwrap().trunc()
    }

    #[test]
    fn a_table_that_arrives_in_order_fills_its_leaves() {
        let mut t = PrefixTable::default();
        for i in 0..10_000u32 {
            *t.get_or_insert_with(net(i << 8, 24), || 0u32) = i;
        }
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.leaves.len(), 10_000usize.div_ceil(LEAF));
        assert!(t.leaves.values().take(70).all(|l| l.keys.len() == LEAF));
        assert_eq!(t.get(&net(77 << 8, 24)), Some(&77));
        let all: Vec<u32> = t.values().copied().collect();
        assert_eq!(all, (0..10_000).collect::<Vec<_>>());
        let from: Vec<u32> = t.iter_from(net(9_998 << 8, 24)).map(|(_, v)| *v).collect();
        assert_eq!(from, [9_998, 9_999]);
    }

    #[test]
    fn a_table_that_arrives_backwards_keeps_its_leaves_found_by_their_first_key() {
        // Every insert is a new smallest key: the first leaf fills, splits, and is re-keyed.
        let mut t = PrefixTable::default();
        for i in (0..5_000u32).rev() {
            *t.get_or_insert_with(net(i << 8, 24), || 0u32) = i;
            if i % 7 == 0 && i + 3 < 5_000 {
                assert_eq!(t.remove(&net((i + 3) << 8, 24)), Some(i + 3));
            }
        }
        assert!(t.leaves.iter().all(|(k, l)| *k == l.keys[0]));
        let keys: Vec<u32> = t.values().copied().collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(t.len(), keys.len());
        assert_eq!(t.get(&net(0, 24)), Some(&0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u8, u16),
        Remove(u32, u8),
        From(u32, u8),
        Before(u32, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        // A small key space, so that inserts, removals and splits meet the same keys.
        let key = (0u32..600, 22u8..26);
        prop_oneof![
            4 => (key.clone(), any::<u16>()).prop_map(|((a, l), v)| Op::Insert(a << 8, l, v)),
            2 => key.clone().prop_map(|(a, l)| Op::Remove(a << 8, l)),
            1 => key.clone().prop_map(|(a, l)| Op::From(a << 8, l)),
            1 => key.prop_map(|(a, l)| Op::Before(a << 8, l)),
        ]
    }

    proptest! {
        /// The same answers as a `BTreeMap`, whatever the order of the operations.
        #[test]
        fn behaves_like_an_ordered_map(ops in proptest::collection::vec(op(), 1..2000)) {
            let mut t = PrefixTable::default();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(a, l, v) => {
                        *t.get_or_insert_with(net(a, l), || 0) = v;
                        model.insert(net(a, l), v);
                    }
                    Op::Remove(a, l) => {
                        prop_assert_eq!(t.remove(&net(a, l)), model.remove(&net(a, l)));
                    }
                    Op::From(a, l) => {
                        let got: Vec<_> = t.iter_from(net(a, l)).map(|(k, v)| (*k, *v)).collect();
                        let want: Vec<_> = model.range(net(a, l)..).map(|(k, v)| (*k, *v)).collect();
                        prop_assert_eq!(got, want);
                    }
                    Op::Before(a, l) => {
                        let got: Vec<_> = t.iter_before(net(a, l)).map(|(k, v)| (*k, *v)).collect();
                        let want: Vec<_> = model.range(..net(a, l)).rev().map(|(k, v)| (*k, *v)).collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(t.len(), model.len());
            }
            let got: Vec<_> = t.iter().map(|(k, v)| (*k, *v)).collect();
            let want: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(got, want);
            for (k, v) in &model {
                prop_assert_eq!(t.get(k), Some(v));
            }
            for (first, l) in &t.leaves {
                prop_assert!(!l.keys.is_empty() && l.keys.len() <= LEAF);
                prop_assert!(l.keys.windows(2).all(|w| w[0] < w[1]));
                prop_assert_eq!(*first, l.keys[0], "a leaf is found by its first key");
            }
        }
    }
}
