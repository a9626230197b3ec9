//! Interned attribute sets: every distinct `PathAttributes` value is stored once and shared by
//! all prefixes and peers that carry it (a full table has far fewer attribute sets than prefixes).

use crate::wire::PathAttributes;
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct AttrInterner {
    sets: HashSet<Arc<PathAttributes>>,
    /// Size after the last sweep; the next sweep runs when the set has doubled.
    swept_len: usize,
}

impl AttrInterner {
    /// The shared copy of `attrs`.
    pub fn intern(&mut self, attrs: PathAttributes) -> Arc<PathAttributes> {
        if let Some(shared) = self.sets.get(&attrs) {
            return shared.clone();
        }
        if self.sets.len() >= 2 * self.swept_len.max(512) {
            self.sweep();
        }
        let shared = Arc::new(attrs);
        self.sets.insert(shared.clone());
        shared
    }

    /// Drops the sets no route refers to any more (only the interner holds them).
    pub fn sweep(&mut self) {
        self.sets.retain(|a| Arc::strong_count(a) > 1);
        self.swept_len = self.sets.len();
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sets_share_one_allocation() {
        let mut i = AttrInterner::default();
        let a = i.intern(PathAttributes {
            med: Some(5),
            ..Default::default()
        });
        let b = i.intern(PathAttributes {
            med: Some(5),
            ..Default::default()
        });
        let c = i.intern(PathAttributes {
            med: Some(6),
            ..Default::default()
        });
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn sweep_frees_unused_sets() {
        let mut i = AttrInterner::default();
        let keep = i.intern(PathAttributes {
            med: Some(1),
            ..Default::default()
        });
        drop(i.intern(PathAttributes {
            med: Some(2),
            ..Default::default()
        }));
        i.sweep();
        assert_eq!(i.len(), 1);
        assert!(Arc::ptr_eq(
            &keep,
            &i.intern(PathAttributes {
                med: Some(1),
                ..Default::default()
            })
        ));
    }
}
