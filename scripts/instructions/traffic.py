#!/usr/bin/env python3
"""Pcap files for scripts/role-instructions.sh: client traffic toward the edge's VIP, and the helpers that
turn one role's output into the next role's input. Standard library only.

  traffic.py clients OUT FLOWS PER_FLOW      TCP flows to 10.10.0.100:80 (a SYN each, then data)
  traffic.py split IN TO_R1 TO_R2            overlay frames by outer destination (relay 1 or relay 2),
                                             addressed to that relay's MAC (the router between them did)
  traffic.py interleave A B OUT MAC          frames of A and B alternately (both copies for the gateway),
                                             addressed to MAC
  traffic.py count IN                        the number of frames
"""
import struct
import sys

EDGE_MAC = bytes.fromhex("020000000100")
CLIENT_MAC = bytes.fromhex("020000000199")
VIP = bytes([10, 10, 0, 100])
R1 = bytes([10, 2, 0, 1])
R2 = bytes([10, 3, 0, 1])
R1_MAC = bytes.fromhex("020000000200")
R2_MAC = bytes.fromhex("020000000300")


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return []
    frames, at = [], 24
    while at + 16 <= len(data):
        n = struct.unpack("<I", data[at + 8 : at + 12])[0]
        frames.append(data[at + 16 : at + 16 + n])
        at += 16 + n
    return frames


def write(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(fr), len(fr)))
            f.write(fr)


def tcp_frame(flow, seq, syn):
    src = bytes([10, 10, 0, 2 + flow % 250])
    sport = 20000 + flow
    payload = b"" if syn else bytes(100)
    opts = struct.pack("!BBH", 2, 4, 1460) if syn else b""
    off = (20 + len(opts)) // 4
    flags = 0x02 if syn else 0x18
    tcp = struct.pack("!HHIIBBHHH", sport, 80, seq, 0 if syn else 1, off << 4, flags, 65535, 0, 0) + opts
    pseudo = src + VIP + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    c = csum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, flow & 0xFFFF, 0x4000, 64, 6, 0, src, VIP)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return EDGE_MAC + CLIENT_MAC + b"\x08\x00" + ip + tcp + payload


def main():
    cmd = sys.argv[1]
    if cmd == "clients":
        out, flows, per = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        frames = [tcp_frame(f, 1000, True) for f in range(flows)]
        for k in range(per):
            frames += [tcp_frame(f, 1001 + 100 * k, False) for f in range(flows)]
        write(out, frames)
    elif cmd == "split":
        frames = read(sys.argv[2])
        write(sys.argv[3], [R1_MAC + f[6:] for f in frames if f[30:34] == R1])
        write(sys.argv[4], [R2_MAC + f[6:] for f in frames if f[30:34] == R2])
    elif cmd == "interleave":
        a, b, mac = read(sys.argv[2]), read(sys.argv[3]), bytes.fromhex(sys.argv[5].replace(":", ""))
        out = []
        for i in range(max(len(a), len(b))):
            out += [mac + f[6:] for f in a[i : i + 1] + b[i : i + 1]]
        write(sys.argv[4], out)
    elif cmd == "count":
        print(len(read(sys.argv[2])))
    else:
        sys.exit(__doc__)


main()
