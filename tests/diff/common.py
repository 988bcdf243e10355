"""Shared pieces of the differential suite: the transcript a scenario writes, and the registry.

A scenario is a function `fn(t, bootstrap)` registered with `@scenario(client, name)`. It drives
one client against the broker at `bootstrap` and records what the client observes with
`t.rec(kind, **fields)`; `t.check(cond, what)` states something that must hold on Apache Kafka
(a failed check ends the scenario; on Kafka that fails the run, on sluice it shows as a difference).
Every scenario uses topics of its own (named after the scenario), so scenarios can share a broker.
"""
import json
import os
import sys
import time

REGISTRY = {}          # "client.name" -> (client label, function)
CLIENT_LABELS = {}     # module prefix -> label printed in the summary


def scenario(prefix, name, label=None):
    def deco(fn):
        sid = f"{prefix}.{name}"
        if sid in REGISTRY:
            raise RuntimeError(f"duplicate scenario {sid}")
        REGISTRY[sid] = fn
        return fn
    if label:
        CLIENT_LABELS[prefix] = label
    return deco


class CheckFailed(Exception):
    pass


class Transcript:
    """JSON lines, written and flushed one by one so a scenario that hangs leaves what it saw."""

    def __init__(self, path, sid):
        self.sid = sid
        self.f = open(path, "w")

    def rec(self, kind, **fields):
        line = {"kind": kind, **fields}
        self.f.write(json.dumps(line, sort_keys=True, default=_jsonable) + "\n")
        self.f.flush()

    def check(self, cond, what, **detail):
        if not cond:
            self.rec("check-failed", what=what, **detail)
            raise CheckFailed(what)

    def topic(self, suffix=""):
        base = self.sid.replace(".", "-").replace("_", "-")
        return f"{base}-{suffix}" if suffix else base

    def close(self):
        self.f.close()


def _jsonable(o):
    if isinstance(o, bytes):
        try:
            return o.decode()
        except UnicodeDecodeError:
            return "hex:" + o.hex()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    return str(o)


def bdecode(b):
    if b is None:
        return None
    return _jsonable(b)


def deadline(seconds):
    end = time.monotonic() + seconds
    return lambda: time.monotonic() < end


# Explicit record timestamps used by scenarios: far from "now" so normalization never touches them.
TS0 = 1_000_000_000_000   # 2001-09-09T01:46:40Z in ms
