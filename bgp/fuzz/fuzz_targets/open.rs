#![no_main]
//! Message type 1 bodies under every session context.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&c, body)) = data.split_first() else { return };
    if let Some(msg) = bgp_fuzz::message(1, body) {
        bgp_fuzz::check(&msg, &bgp_fuzz::ctx(c));
    }
});
