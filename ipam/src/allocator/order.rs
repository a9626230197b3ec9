//! The order in which a node tries the blocks of a pool (Calico's `randomBlockGenerator`).
//!
//! Each node starts at a pseudo-random block chosen from a hash of its name and walks the pool
//! from there, wrapping around. The start depends only on the node name, so a node retrying after
//! a conflict sees the same order, while different nodes start far apart and rarely contend for
//! the same block.

use ipnet::Ipv4Net;

use crate::resources::IpPool;

/// FNV-1 32-bit hash (the `hash/fnv` `New32` Calico seeds with).
pub fn fnv32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(b);
    }
    h
}

/// splitmix64: spreads the 32-bit seed over the block range so that similar node names
/// (`node-1`, `node-2`) do not get neighbouring start blocks.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Every block of `pool`, in `node`'s order.
pub fn block_order<'a>(pool: &'a IpPool, node: &str) -> impl Iterator<Item = Ipv4Net> + 'a {
    let count = pool.block_count();
    let start = mix(u64::from(fnv32(node))) % count;
    (0..count).filter_map(move |i| pool.block((start + i) % count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn fnv32_known_values() {
        // FNV-1 32 test vectors.
        assert_eq!(fnv32(""), 0x811c_9dc5);
        assert_eq!(fnv32("a"), 0x050c_5d7e);
        assert_eq!(fnv32("foobar"), 0x31f0_b262);
    }

    #[test]
    fn order_visits_every_block_once_and_differs_by_node() {
        let pool = IpPool::new(IpPool::DEFAULT_CIDR, 26).unwrap();
        let a: Vec<_> = block_order(&pool, "node-a").collect();
        assert_eq!(a.len(), 1024);
        assert_eq!(a.iter().collect::<HashSet<_>>().len(), 1024);
        assert_eq!(a, block_order(&pool, "node-a").collect::<Vec<_>>());
        let firsts: HashSet<_> = ["node-a", "node-b", "node-c", "node-1", "node-2"]
            .iter()
            .map(|n| block_order(&pool, n).next().unwrap())
            .collect();
        assert_eq!(firsts.len(), 5);
    }
}
