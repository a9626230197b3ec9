#!/usr/bin/env python3
"""Seeds the `session` target's corpus with real messages (the golden vectors of
bgp/tests/data/golden) behind each setting byte that opens a session, so that the fuzzer starts
from UPDATEs in Established instead of having to find a valid message by chance."""
import binascii
import os

here = os.path.dirname(os.path.abspath(__file__))
golden = os.path.join(here, "..", "tests", "data", "golden")
out = os.path.join(here, "corpus", "session")
os.makedirs(out, exist_ok=True)


def load(name):
    text = "".join(line.split("#")[0] for line in open(os.path.join(golden, name)))
    return binascii.unhexlify("".join(c for c in text if c in "0123456789abcdefABCDEF"))


names = ["update-ibgp.hex", "update-as2.hex", "update-mp-ipv6.hex", "end-of-rib.hex",
         "keepalive.hex", "route-refresh.hex"]
messages = [load(n) for n in names]
# Bit 4: a valid OPEN and KEEPALIVE come first; 2: we offer graceful restart; 16: the peer
# does too; 1: eBGP (see fuzz_targets/session.rs).
for flags in (0x04, 0x06, 0x16, 0x05, 0x17):
    for i, m in enumerate(messages):
        with open(os.path.join(out, f"seed-{flags:02x}-{i}"), "wb") as f:
            f.write(bytes([flags]) + m)
    with open(os.path.join(out, f"seed-{flags:02x}-all"), "wb") as f:
        f.write(bytes([flags]) + b"".join(messages))
