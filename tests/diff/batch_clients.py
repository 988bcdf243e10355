"""Clients whose scenarios run as one process per target (a JVM, a node process): the Java
kafka-clients module (tests/diff/java) and kafkajs (tests/diff/js). Each program takes
BOOTSTRAP OUTDIR SCENARIO... and prints "RESULT id status seconds" per scenario."""
import os
import re
import shutil
import subprocess
import time

import common

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildError(Exception):
    pass


class BatchClient:
    prefix = label = src = ""

    def scenario_ids(self):
        """Read from the program's registrations, so listing needs no build."""
        raise NotImplementedError

    def build(self):
        raise NotImplementedError

    def command(self, bootstrap, outdir, ids):
        raise NotImplementedError

    def run(self, ids, bootstrap, outdir, timeout, until=None):
        t0 = time.monotonic()
        limit = min(300, timeout * max(1, len(ids)) / 2)
        if until is not None:
            limit = max(1.0, min(limit, until - t0))
        results = {}
        with open(os.path.join(outdir, f"{self.prefix}.stderr"), "w") as err:
            p = subprocess.Popen(self.command(bootstrap, outdir, ids), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
            try:
                out, _ = p.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)   # the process group this call started
                out, _ = p.communicate(timeout=10)
        for line in (out or "").splitlines():
            f = line.split()
            if len(f) == 4 and f[0] == "RESULT":
                results[f[1]] = (f[2], float(f[3]))
        return [(sid, *results.get(sid, ("timeout", time.monotonic() - t0))) for sid in ids]


class JavaClient(BatchClient):
    prefix, label = "java", "java-kafka-clients"
    dir = os.path.join(HERE, "java")
    src = os.path.join(dir, "src", "main", "java", "sluice", "diff", "Main.java")

    def scenario_ids(self):
        src = ""
        for name in sorted(os.listdir(os.path.dirname(self.src))):   # Main.java, Versions.java, ...
            if name.endswith(".java"):
                with open(os.path.join(os.path.dirname(self.src), name)) as f:
                    src += f.read()
        ids = [f"java.{m}" for m in re.findall(r'scenario\("(\w+)",', src)]
        for m in re.findall(r'for \(String c : new String\[\] \{([^}]*)\}\) \{\s*scenario\("(\w+)" \+ c', src):
            for c in re.findall(r'"(\w+)"', m[0]):
                ids.append(f"java.{m[1]}{c}")
        return sorted(ids)

    def build(self):
        if not shutil.which("mvn") or not shutil.which("java"):
            raise BuildError("java and mvn are needed (tests/setup installs them)")
        args = ["compile", "dependency:copy-dependencies", "-DoutputDirectory=target/libs", "-DincludeScope=runtime"]
        r = subprocess.run(["mvn", "-B", "-q", "-o", *args], cwd=self.dir, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:   # first run on this machine: resolve online once
            r = subprocess.run(["mvn", "-B", "-q", *args], cwd=self.dir, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise BuildError((r.stdout + r.stderr)[-3000:])

    def command(self, bootstrap, outdir, ids):
        cp = os.path.join(self.dir, "target", "classes") + os.pathsep + os.path.join(self.dir, "target", "libs", "*")
        return ["java", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", cp,
                "sluice.diff.Main", bootstrap, outdir, *ids]


class JsClient(BatchClient):
    prefix, label = "js", "kafkajs"
    dir = os.path.join(HERE, "js")
    src = os.path.join(dir, "main.js")

    def scenario_ids(self):
        with open(self.src) as f:
            return sorted(f"js.{m}" for m in re.findall(r"^scenario\('(\w+)'", f.read(), re.M))

    def build(self):
        if not shutil.which("node") or not shutil.which("npm"):
            raise BuildError("node and npm are needed for the kafkajs scenarios (tests/setup checks them)")
        if os.path.isdir(os.path.join(self.dir, "node_modules", "kafkajs")):
            return
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=self.dir, capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            raise BuildError((r.stdout + r.stderr)[-3000:])

    def command(self, bootstrap, outdir, ids):
        return ["node", self.src, bootstrap, outdir, *ids]


class GoClient(BatchClient):
    prefix, label = "go", "go-franz-sarama"
    dir = os.path.join(HERE, "go")
    binary = os.path.join(dir, ".bin", "diffgo")

    def scenario_ids(self):
        ids = []
        for name in sorted(os.listdir(self.dir)):
            if not name.endswith(".go"):
                continue
            with open(os.path.join(self.dir, name)) as f:
                src = f.read()
            ids += [f"go.{m}" for m in re.findall(r'scenario\("(\w+)", func', src)]
            for codecs, stem in re.findall(r'for _, codec := range \[\]string\{([^}]*)\} \{\s*codec := codec\s*'
                                           r'scenario\("(\w+)"\+codec', src):
                ids += [f"go.{stem}{c}" for c in re.findall(r'"(\w+)"', codecs)]
        return sorted(ids)

    def build(self):
        if not shutil.which("go"):
            raise BuildError("go is needed for the franz-go/sarama scenarios")
        # go's build cache makes this a second or two after the first build (~2 min on 2 cores)
        r = subprocess.run(["go", "build", "-o", self.binary, "."], cwd=self.dir, capture_output=True,
                           text=True, timeout=900)
        if r.returncode != 0:
            raise BuildError((r.stdout + r.stderr)[-3000:])

    def command(self, bootstrap, outdir, ids):
        return [self.binary, bootstrap, outdir, *ids]


CLIENTS = [JavaClient(), JsClient(), GoClient()]
for _c in CLIENTS:
    common.CLIENT_LABELS[_c.prefix] = _c.label
