#!/usr/bin/env python3
"""Cuts the BGP messages out of a pcap (Ethernet, IPv4, TCP port 179) into hex files.

usage: extract.py CAPTURE.pcap OUTDIR NAME=IP [NAME=IP ...]
Each message goes to OUTDIR/<sender>-<type>-<k>.hex, k counting per sender and type, sender being
the NAME whose IP sent it. TCP streams are reassembled by sequence number (retransmissions dropped).
"""
import os
import struct
import sys

TYPES = {1: "open", 2: "update", 3: "notification", 4: "keepalive", 5: "route-refresh"}


def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    assert linktype == 1, f"linktype {linktype} is not Ethernet"
    off = 24
    while off + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        yield data[off + 16:off + 16 + caplen]
        off += 16 + caplen


def tcp_segments(path):
    for frame in packets(path):
        if struct.unpack("!H", frame[12:14])[0] != 0x0800:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 6:
            continue
        src = ".".join(str(b) for b in ip[12:16])
        tcp = ip[ihl:total]
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        payload = tcp[doff:]
        if payload:
            yield src, sport, dport, seq, payload


def main():
    pcap, outdir = sys.argv[1], sys.argv[2]
    names = dict(a.split("=")[::-1] for a in sys.argv[3:])
    streams = {}
    for src, sport, dport, seq, payload in tcp_segments(pcap):
        streams.setdefault((src, sport, dport), {}).setdefault(seq, payload)
    os.makedirs(outdir, exist_ok=True)
    counts = {}
    for (src, _, _), segs in streams.items():
        data = b""
        for seq in sorted(segs):
            data += segs[seq]
        while len(data) >= 19:
            length = struct.unpack("!H", data[16:18])[0]
            msg, data = data[:length], data[length:]
            kind = TYPES.get(msg[18], f"type{msg[18]}")
            sender = names.get(src, src)
            k = counts[(sender, kind)] = counts.get((sender, kind), 0) + 1
            with open(os.path.join(outdir, f"{sender}-{kind}-{k}.hex"), "w") as f:
                f.write(f"# {sender} {kind} #{k}, {len(msg)} bytes, captured by capture.sh\n")
                for i in range(0, len(msg), 32):
                    f.write(msg[i:i + 32].hex() + "\n")


main()
