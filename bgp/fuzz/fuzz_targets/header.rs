#![no_main]
//! Headers (and KEEPALIVE): arbitrary bytes through frame_length and decode_message.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&c, rest)) = data.split_first() else { return };
    let c = bgp_fuzz::ctx(c);
    // Half the inputs get a valid marker so the length and type checks are reached.
    let buf = if c.peer_type == bgp::wire::PeerType::External {
        let mut b = bgp::wire::MARKER.to_vec();
        b.extend_from_slice(rest);
        b
    } else {
        rest.to_vec()
    };
    if let Ok(Some(len)) = bgp::wire::frame_length(&buf, &c) {
        assert!((19..=c.max_message_len()).contains(&len));
    }
    bgp_fuzz::check(&buf, &c);
});
