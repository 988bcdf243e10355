#!/usr/bin/env python3
"""A recording TCP proxy for Kafka traffic (Python standard library only).

    tests/capture/proxy.py --listen PORT --upstream HOST:PORT --out DIR

Listens on 127.0.0.1:PORT (0 = a free port); each accepted connection gets its own connection to
the upstream broker, and bytes are forwarded unchanged in both directions as they arrive. Every
byte is also appended to DIR/NNNNNN.c2s (client to broker) and DIR/NNNNNN.s2c (broker to client),
one pair of files per connection, numbered in accept order. The proxy does not parse frames:
splitting the streams into frames, pairing responses with requests by correlation id and picking
the corpus is done afterwards (net/tests/captured.rs, see tests/capture/README.md), so nothing the
proxy does can alter the traffic.

Clients learn broker addresses from Metadata, FindCoordinator and DescribeCluster answers; to keep
them on the proxy, start the broker with advertised.listeners pointing at the proxy's port (the
`record` script does that). The proxy prints `127.0.0.1:PORT` on stdout once it listens, and
stops on SIGTERM or SIGINT (closing every connection and file).
"""
import argparse
import itertools
import os
import signal
import socket
import sys
import threading

CHUNK = 1 << 16


def pump(src, dst, path, done):
    """Copies src to dst and to the file at path until either side closes."""
    with open(path, "wb") as f:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                f.write(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            f.flush()
            for s in (src, dst):   # one side closed: close both directions of both sockets
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            done.set()


def serve(client, upstream, out, n, conns):
    try:
        server = socket.create_connection(upstream, timeout=10)
        server.settimeout(None)
    except OSError as e:
        print(f"proxy: connection {n}: upstream {upstream}: {e}", file=sys.stderr, flush=True)
        client.close()
        return
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conns.append((client, server))
    base = os.path.join(out, f"{n:06d}")
    d1, d2 = threading.Event(), threading.Event()
    t1 = threading.Thread(target=pump, args=(client, server, base + ".c2s", d1), daemon=True)
    t2 = threading.Thread(target=pump, args=(server, client, base + ".s2c", d2), daemon=True)
    t1.start()
    t2.start()
    t1.join()
    t2.join()
    client.close()
    server.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the broker")
    ap.add_argument("--out", required=True, help="directory for the NNNNNN.c2s / .s2c files")
    a = ap.parse_args()
    host, _, port = a.upstream.rpartition(":")
    upstream = (host or "127.0.0.1", int(port))
    os.makedirs(a.out, exist_ok=True)

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", a.listen))
    lsock.listen(128)
    print(f"127.0.0.1:{lsock.getsockname()[1]}", flush=True)

    conns = []
    stopping = threading.Event()

    def stop(_sig, _frame):
        stopping.set()
        try:
            lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        lsock.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = []
    for n in itertools.count():
        try:
            client, _ = lsock.accept()
        except OSError:
            break
        if stopping.is_set():
            client.close()
            break
        t = threading.Thread(target=serve, args=(client, upstream, a.out, n, conns), daemon=True)
        t.start()
        threads.append(t)
    for c, s in conns:        # close what is still open; the pumps flush their files and end
        for x in (c, s):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    for t in threads:
        t.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
