//! The candidate paths of one prefix, stored inline when there is only one (the usual case:
//! in a full mesh each block has exactly one origin), so a full table costs no heap
//! allocation per prefix.

use super::Path;
use std::ops::{Deref, DerefMut};

/// 16 bytes: `Many` boxes its vector so that the enum is no larger than one path.
#[derive(Debug, Default)]
pub(crate) enum Paths {
    #[default]
    Empty,
    One(Path),
    // Boxed on purpose: a `Vec` inline would make every prefix 24 bytes, and `Box<[Path]>` has
    // no spare bits for the tag either; the extra allocation is paid only by prefixes with
    // several paths.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Path>>),
}

impl Paths {
    pub fn push(&mut self, path: Path) {
        *self = match std::mem::take(self) {
            Paths::Empty => Paths::One(path),
            Paths::One(first) => Paths::Many(Box::new(vec![first, path])),
            Paths::Many(mut v) => {
                v.push(path);
                Paths::Many(v)
            }
        };
    }

    pub fn retain(&mut self, keep: impl FnMut(&Path) -> bool) {
        let mut keep = keep;
        *self = match std::mem::take(self) {
            Paths::One(p) if keep(&p) => Paths::One(p),
            Paths::Empty | Paths::One(_) => Paths::Empty,
            Paths::Many(mut v) => {
                v.retain(|p| keep(p));
                match v.len() {
                    0 => Paths::Empty,
                    1 => Paths::One(v.remove(0)),
                    _ => Paths::Many(v),
                }
            }
        };
    }
}

impl Deref for Paths {
    type Target = [Path];

    fn deref(&self) -> &[Path] {
        match self {
            Paths::Empty => &[],
            Paths::One(p) => std::slice::from_ref(p),
            Paths::Many(v) => v,
        }
    }
}

impl DerefMut for Paths {
    fn deref_mut(&mut self) -> &mut [Path] {
        match self {
            Paths::Empty => &mut [],
            Paths::One(p) => std::slice::from_mut(p),
            Paths::Many(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rib::Src;
    use std::sync::Arc;

    fn path(last: u8) -> Path {
        Path {
            src: Src(u32::from(last)),
            attrs: Arc::default(),
            stale: false,
            reason: None,
        }
    }

    #[test]
    fn a_path_and_a_destination_are_small() {
        // A full table holds a million of them.
        assert_eq!(std::mem::size_of::<Path>(), 16);
        assert_eq!(std::mem::size_of::<Paths>(), 16);
    }

    #[test]
    fn grows_and_shrinks_between_inline_and_vector() {
        let mut p = Paths::default();
        assert!(p.is_empty());
        p.push(path(1));
        assert!(matches!(p, Paths::One(_)));
        p.push(path(2));
        p.push(path(3));
        assert_eq!(p.len(), 3);
        p.swap(0, 2);
        assert_eq!(p[0], path(3));
        p.retain(|x| *x != path(3) && *x != path(2));
        assert!(matches!(&p, Paths::One(x) if *x == path(1)));
        p.retain(|_| false);
        assert!(matches!(p, Paths::Empty));
    }
}
