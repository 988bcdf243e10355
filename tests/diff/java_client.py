"""The Java kafka-clients scenarios (tests/diff/java): built once per run with Maven (offline when
~/.m2 already has everything), then run in one JVM per target."""
import os
import re
import subprocess
import time

import common

HERE = os.path.dirname(os.path.abspath(__file__))
JDIR = os.path.join(HERE, "java")
SRC = os.path.join(JDIR, "src", "main", "java", "sluice", "diff", "Main.java")


common.CLIENT_LABELS["java"] = "java-kafka-clients"


class JavaBuildError(Exception):
    pass


class JavaClient:
    label = "java-kafka-clients"

    def scenario_ids(self):
        """Read from Main.java's registrations, so listing needs no build."""
        with open(SRC) as f:
            src = f.read()
        ids = [f"java.{m}" for m in re.findall(r'scenario\("(\w+)",', src)]
        for m in re.findall(r'for \(String c : new String\[\] \{([^}]*)\}\) \{\s*scenario\("(\w+)" \+ c', src):
            for c in re.findall(r'"(\w+)"', m[0]):
                ids.append(f"java.{m[1]}{c}")
        return sorted(ids)

    def build(self):
        if not shutil_which("mvn") or not shutil_which("java"):
            raise JavaBuildError("java and mvn are needed (tests/setup checks them)")
        args = ["compile", "dependency:copy-dependencies", "-DoutputDirectory=target/libs", "-DincludeScope=runtime"]
        r = subprocess.run(["mvn", "-B", "-q", "-o", *args], cwd=JDIR, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:   # first run on this machine: resolve online once
            r = subprocess.run(["mvn", "-B", "-q", *args], cwd=JDIR, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise JavaBuildError((r.stdout + r.stderr)[-3000:])

    def run(self, ids, bootstrap, outdir, timeout):
        cp = os.path.join(JDIR, "target", "classes") + os.pathsep + os.path.join(JDIR, "target", "libs", "*")
        t0 = time.monotonic()
        errpath = os.path.join(outdir, "java.stderr")
        results = {}
        with open(errpath, "w") as err:
            p = subprocess.Popen(["java", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", cp,
                                  "sluice.diff.Main", bootstrap, outdir, *ids],
                                 stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
            try:
                out, _ = p.communicate(timeout=min(300, timeout * max(1, len(ids)) / 2))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)   # the JVM's own process group, started above
                out, _ = p.communicate(timeout=10)
        for line in (out or "").splitlines():
            f = line.split()
            if len(f) == 4 and f[0] == "RESULT":
                results[f[1]] = (f[2], float(f[3]))
        rows = []
        for sid in ids:
            status, secs = results.get(sid, ("timeout", time.monotonic() - t0))
            rows.append((sid, status, secs))
        return rows


def shutil_which(name):
    import shutil
    return shutil.which(name)
