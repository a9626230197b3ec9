//! Connection collision detection, RFC 4271 §6.8.
//!
//! Two speakers may open a TCP connection to each other at the same time. Both connections are
//! kept until the peer's BGP identifier is known (its OPEN arrived, so the connection is in
//! OpenConfirm or Established); then exactly one survives, chosen the same way on both ends.

use crate::wire::{error_code, Notification};
use std::net::Ipv4Addr;

/// Who opened a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ConnectionOrigin {
    /// We connected to the peer (active open).
    Local,
    /// The peer connected to us (passive open).
    Remote,
}

/// RFC 4271 §6.8: "If the value of the local BGP Identifier is less than the remote one, the
/// local system closes the BGP connection that already exists [...] and accepts the BGP
/// connection initiated by the remote system", i.e. the connection opened by the speaker with
/// the higher identifier survives. RFC 6286 §2.3: with equal identifiers (possible on eBGP) the
/// connection opened by the speaker with the larger AS number survives.
pub fn collision_survivor(
    local_id: Ipv4Addr,
    remote_id: Ipv4Addr,
    local_as: u32,
    remote_as: u32,
) -> ConnectionOrigin {
    let local_wins = if local_id != remote_id {
        local_id > remote_id
    } else {
        local_as > remote_as
    };
    if local_wins {
        ConnectionOrigin::Local
    } else {
        ConnectionOrigin::Remote
    }
}

/// The NOTIFICATION sent on the connection that loses (RFC 4486 §4, subcode 7).
pub fn collision_notification() -> Notification {
    Notification::new(
        error_code::CEASE,
        error_code::cease::CONNECTION_COLLISION_RESOLUTION,
        Vec::new(),
    )
}

/// One connection of a peer whose OPEN has been received (its identifier is known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedConnection<K> {
    pub key: K,
    pub origin: ConnectionOrigin,
}

/// Given every connection of one peer that has received an OPEN, returns those to close
/// (OpenCollisionDump, RFC 4271 §8.1.2 Event 23). With zero or one connection nothing is closed.
/// When both connections have the same origin (a peer reconnecting before we noticed the old
/// one died), the newest (last) one is kept.
pub fn connections_to_dump<K: Copy>(
    local_id: Ipv4Addr,
    remote_id: Ipv4Addr,
    local_as: u32,
    remote_as: u32,
    opened: &[OpenedConnection<K>],
) -> Vec<K> {
    if opened.len() < 2 {
        return Vec::new();
    }
    let survivor = collision_survivor(local_id, remote_id, local_as, remote_as);
    let keep = opened
        .iter()
        .rposition(|c| c.origin == survivor)
        .unwrap_or(opened.len() - 1);
    opened
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != keep)
        .map(|(_, c)| c.key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const HIGH: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn higher_identifier_keeps_its_own_connection() {
        assert_eq!(collision_survivor(HIGH, LOW, 1, 1), ConnectionOrigin::Local);
        assert_eq!(
            collision_survivor(LOW, HIGH, 1, 1),
            ConnectionOrigin::Remote
        );
    }

    #[test]
    fn equal_identifiers_fall_back_to_as_number() {
        assert_eq!(
            collision_survivor(LOW, LOW, 65002, 65001),
            ConnectionOrigin::Local
        );
        assert_eq!(
            collision_survivor(LOW, LOW, 65001, 65002),
            ConnectionOrigin::Remote
        );
    }

    #[test]
    fn both_ends_agree_on_the_same_tcp_connection() {
        // Connection X is opened by the low side, Y by the high side.
        let low_view = [
            OpenedConnection {
                key: 'X',
                origin: ConnectionOrigin::Local,
            },
            OpenedConnection {
                key: 'Y',
                origin: ConnectionOrigin::Remote,
            },
        ];
        let high_view = [
            OpenedConnection {
                key: 'Y',
                origin: ConnectionOrigin::Local,
            },
            OpenedConnection {
                key: 'X',
                origin: ConnectionOrigin::Remote,
            },
        ];
        assert_eq!(connections_to_dump(LOW, HIGH, 1, 1, &low_view), vec!['X']);
        assert_eq!(connections_to_dump(HIGH, LOW, 1, 1, &high_view), vec!['X']);
    }

    #[test]
    fn single_connection_is_never_dumped() {
        let one = [OpenedConnection {
            key: 1,
            origin: ConnectionOrigin::Local,
        }];
        assert!(connections_to_dump(LOW, HIGH, 1, 1, &one).is_empty());
    }

    #[test]
    fn same_origin_keeps_newest() {
        let two = [
            OpenedConnection {
                key: 1,
                origin: ConnectionOrigin::Remote,
            },
            OpenedConnection {
                key: 2,
                origin: ConnectionOrigin::Remote,
            },
        ];
        assert_eq!(connections_to_dump(HIGH, LOW, 1, 1, &two), vec![1]);
    }

    #[test]
    fn notification_is_cease_collision() {
        let n = collision_notification();
        assert_eq!((n.code, n.subcode), (6, 7));
    }
}
