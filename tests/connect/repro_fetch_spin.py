#!/usr/bin/env python3
"""Minimal reproduction: a Fetch long poll at the log end burns CPU on the broker.

Usage: tests/connect/repro_fetch_spin.py BOOTSTRAP BROKER_PID [--wait-ms 3000]

Produces one record to a fresh topic (Produce v3, acks=1), then sends one raw Fetch v4 at the log
end (fetch_offset 1 = the high watermark, min_bytes 1, max_wait_ms 3000) and, while it waits,
one Metadata v4 on a second connection. Prints the Fetch request bytes, the answer, how long it
and the Metadata took, and the broker's CPU time during the long poll (from /proc/PID/stat).
A long poll should cost the broker next to nothing while it waits (Kafka 4.4: ~0.0 s).
Only the Python standard library is used.
"""
import argparse, os, socket, struct, sys, threading, time, uuid, zlib

CLK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


def s16(x): return struct.pack(">h", x)
def s32(x): return struct.pack(">i", x)
def s64(x): return struct.pack(">q", x)
def kstr(s): b = s.encode(); return s16(len(b)) + b


def call(sock, api, ver, corr, body):
    req = s16(api) + s16(ver) + s32(corr) + kstr("repro") + body
    sock.sendall(s32(len(req)) + req)
    n = struct.unpack(">i", recvn(sock, 4))[0]
    resp = recvn(sock, n)
    assert struct.unpack(">i", resp[:4])[0] == corr
    return req, resp[4:]


def recvn(sock, n):
    b = b""
    while len(b) < n:
        c = sock.recv(n - len(b))
        if not c:
            raise ConnectionError("closed")
        b += c
    return b


def crc32c(data):
    # CRC-32C (Castagnoli), bitwise; fine for one small batch.
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def varint(n):
    n = (n << 1) ^ (n >> 63)
    out = b""
    while True:
        if n & ~0x7F:
            out += bytes([(n & 0x7F) | 0x80]); n >>= 7
        else:
            return out + bytes([n])


def one_record_batch(value):
    rec = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(len(value)) + value + varint(0)
    rec = varint(len(rec)) + rec
    now = int(time.time() * 1000)
    after_crc = (s16(0) + s32(0) + s64(now) + s64(now) + s64(-1) + s16(-1) + s32(-1) + s32(1) + rec)
    head = s64(0) + s32(4 + 1 + 4 + len(after_crc)) + s32(0) + b"\x02"
    return head + struct.pack(">I", crc32c(after_crc)) + after_crc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("pid", type=int)
    ap.add_argument("--wait-ms", type=int, default=3000)
    a = ap.parse_args()
    host, port = a.bootstrap.rsplit(":", 1)
    topic = f"spin-{uuid.uuid4().hex[:8]}"
    s = socket.create_connection((host, int(port)), timeout=30)
    # Metadata v4 with auto-create, until the partition has a leader.
    for i in range(50):
        _, r = call(s, 3, 4, 100 + i, s32(1) + kstr(topic) + b"\x01")
        if i > 0:
            break
        time.sleep(0.3)
    batch = one_record_batch(b"hello")
    prod = s16(-1) + s16(1) + s32(10000) + s32(1) + kstr(topic) + s32(1) + s32(0) + s32(len(batch)) + batch
    _, r = call(s, 0, 3, 2, s16(-1) + prod[2:])     # Produce v3: transactional_id null, acks 1
    err = struct.unpack(">h", r[4 + 2 + len(topic) + 4 + 4: 4 + 2 + len(topic) + 4 + 4 + 2])[0]
    print(f"produce: error_code {err}")
    body = (s32(-1) + s32(a.wait_ms) + s32(1) + s32(1 << 20) + b"\x00"
            + s32(1) + kstr(topic) + s32(1) + s32(0) + s64(1) + s32(1 << 20))
    md_time = {}

    def metadata_during():
        time.sleep(0.5)
        s2 = socket.create_connection((host, int(port)), timeout=30)
        t = time.monotonic()
        call(s2, 3, 4, 7, s32(1) + kstr(topic) + b"\x00")
        md_time["s"] = time.monotonic() - t
        s2.close()
    th = threading.Thread(target=metadata_during)
    c0, t0 = cpu_s(a.pid), time.monotonic()
    th.start()
    req, r = call(s, 1, 4, 3, body)
    t1, c1 = time.monotonic(), cpu_s(a.pid)
    th.join()
    throttle, ntopics = struct.unpack(">ii", r[:8])
    off = 8 + 2 + len(topic)
    np_ = struct.unpack(">i", r[off:off + 4])[0]
    pidx, perr, hw, lso = struct.unpack(">ihqq", r[off + 4: off + 26])
    aborted = struct.unpack(">i", r[off + 26: off + 30])[0]
    rec_len = struct.unpack(">i", r[off + 30: off + 34])[0]
    print(f"Fetch v4 request (size-prefixed frame follows the 4-byte length): {req.hex()}")
    print(f"Fetch v4 answer: partition {pidx} error_code {perr} high_watermark {hw} "
          f"last_stable_offset {lso} aborted {aborted} records {rec_len} bytes")
    print(f"long poll took {t1 - t0:.2f} s (max_wait_ms {a.wait_ms}); broker CPU during it: "
          f"{c1 - c0:.2f} s; a Metadata sent meanwhile took {md_time.get('s', -1):.3f} s")


if __name__ == "__main__":
    main()
