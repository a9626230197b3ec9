#![no_main]
//! A byte stream cut into messages as the session does: frame_length, then decode_message on
//! each whole frame, until an error or the end.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&c, mut rest)) = data.split_first() else { return };
    let c = bgp_fuzz::ctx(c);
    loop {
        match bgp::wire::frame_length(rest, &c) {
            Ok(Some(len)) if len <= rest.len() => {
                let (msg, tail) = rest.split_at(len);
                if bgp::wire::decode_message(msg, &c).is_err() {
                    return;
                }
                rest = tail;
            }
            Ok(_) => return,
            Err(e) => {
                let _ = e.notification();
                return;
            }
        }
    }
});
