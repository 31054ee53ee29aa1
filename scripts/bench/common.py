"""What the benchmark scripts share: a release build of runbook, the
PostgreSQL client programs, and a throwaway cluster started by
`runbook exec --ephemeral --keep` and removed afterwards."""
import os
import re
import shutil
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def release_build():
    """Build runbook in release mode; return the binary's path."""
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "runbook")


def bin_dir(program="pg_dump"):
    """The newest /usr/lib/postgresql/N/bin holding `program`."""
    for v in sorted(os.listdir("/usr/lib/postgresql"), key=int, reverse=True):
        d = f"/usr/lib/postgresql/{v}/bin"
        if os.path.exists(os.path.join(d, program)):
            return d
    raise SystemExit("no PostgreSQL client programs under /usr/lib/postgresql")


class Cluster:
    """runbook's throwaway PostgreSQL, kept running for the benchmark.
    `url` reaches its `postgres` database; `url_of(db)` another one."""

    def __init__(self, exe, tmp):
        noop = os.path.join(tmp, "noop.yml")
        with open(noop, "w") as f:
            f.write("apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: noop, version: 1 }\n"
                    "phases:\n  - id: p\n    kind: custom\n    steps:\n      - id: s\n        sql: SELECT 1;\n")
        out = subprocess.run([exe, "exec", noop, "--ephemeral", "--keep", "-q",
                              "--report-dir", os.path.join(tmp, "cluster-report")],
                             capture_output=True, text=True)
        m = re.search(r"kept running: (\S+) \(data in ([^;\s]+);", out.stderr)
        if not m:
            raise SystemExit(f"could not start PostgreSQL:\n{out.stderr}")
        self.url, self.data_dir = m.group(1), m.group(2)

    def url_of(self, database):
        return self.url.rsplit("/", 1)[0] + "/" + database

    def stop(self):
        """Stop the server and remove its directory."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                os.kill(int(f.readline()), signal.SIGTERM)
            time.sleep(1)
        except (OSError, ValueError):
            pass
        shutil.rmtree(os.path.dirname(self.data_dir), ignore_errors=True)
