#!/usr/bin/env python3
"""One confluent-kafka group member in its own process, for tests/clients/test_groups.py.

Usage: group_member.py BOOTSTRAP GROUP TOPIC [key=value ...]   (librdkafka settings)

Subscribes to TOPIC in GROUP and prints one JSON object per line on stdout:
  {"ev": "assigned", "parts": [...], "gen": G, "member": M}   after each assignment change
  {"ev": "revoked", "parts": [...]}                            when partitions are taken away
  {"ev": "msg", "p": P, "o": O, "k": KEY}                      for every record, before its commit
  {"ev": "commit_error", "err": "..."}                         a synchronous commit that failed
  {"ev": "closed"}                                             after close()
After each batch the records are printed (and flushed) first, then committed synchronously, so a
record counted as seen may be delivered again after a crash, but a committed one was printed.
Closing stdin (or writing "stop") makes it close() the consumer and exit 0.
Defaults: enable.auto.commit=false, auto.offset.reset=earliest.
"""
import json
import struct
import sys
import threading

from confluent_kafka import Consumer, KafkaException


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def group_generation(consumer):
    """(generation, member id) from librdkafka's serialized consumer group metadata
    ("CGMDv2:" + int32 generation, native order + NUL-terminated group id, member id, ...)."""
    raw = bytes(consumer.consumer_group_metadata())
    if not raw.startswith(b"CGMDv2:"):
        return None, None
    (gen,) = struct.unpack("<i", raw[7:11])
    fields = raw[11:].split(b"\0")
    member = fields[1].decode() if len(fields) > 1 else None
    return gen, member


def main():
    bootstrap, group, topic, *settings = sys.argv[1:]
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest"}
    for kv in settings:
        k, _, v = kv.partition("=")
        conf[k] = v
    c = Consumer(conf)
    current = set()
    cooperative = "cooperative" in str(conf.get("partition.assignment.strategy", ""))

    def on_assign(cons, parts):
        ps = {p.partition for p in parts}
        if cooperative:
            current.update(ps)
        else:
            current.clear()
            current.update(ps)
        gen, member = group_generation(cons)
        out({"ev": "assigned", "parts": sorted(current), "gen": gen, "member": member})

    def on_revoke(cons, parts):
        ps = {p.partition for p in parts}
        if cooperative:
            current.difference_update(ps)
        else:
            current.clear()
        out({"ev": "revoked", "parts": sorted(ps)})

    def on_lost(cons, parts):
        current.difference_update({p.partition for p in parts})
        out({"ev": "lost", "parts": sorted(p.partition for p in parts)})

    stop = threading.Event()

    def watch_stdin():
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()
    threading.Thread(target=watch_stdin, daemon=True).start()

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    while not stop.is_set():
        msgs = c.consume(500, 0.1)
        got = False
        for m in msgs:
            if m.error():
                out({"ev": "error", "err": str(m.error())})
                continue
            out({"ev": "msg", "p": m.partition(), "o": m.offset(),
                 "k": m.key().decode() if m.key() is not None else None})
            got = True
        if got:
            try:
                c.commit(asynchronous=False)
            except KafkaException as e:
                out({"ev": "commit_error", "err": str(e)})
    c.close()
    out({"ev": "closed"})


if __name__ == "__main__":
    main()
