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


def timed(cmd, ok=(0,)):
    """Run `cmd`; return (seconds, completed process). Any exit code not in
    `ok` stops the benchmark with the command's stderr."""
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - t
    if out.returncode not in ok:
        raise SystemExit(f"{cmd[0]} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return took, out


def write_pairs(d, n, up, down):
    """A golang-migrate directory of `n` pairs: `up(i)` and `down(i)` give
    the SQL of migration i (from 1)."""
    os.makedirs(d)
    width = len(str(n)) + 1
    for i in range(1, n + 1):
        with open(os.path.join(d, f"{i:0{width}d}_m{i}.up.sql"), "w") as f:
            f.write(up(i))
        with open(os.path.join(d, f"{i:0{width}d}_m{i}.down.sql"), "w") as f:
            f.write(down(i))


def spread(pairs):
    """Per-pair differences of (measured, reference) times, in percent:
    (median, lower quartile, upper quartile, lowest, highest). On a noisy
    machine the median of many interleaved pairs is the figure, and its
    quartiles say how far to trust it."""
    import statistics
    ratios = sorted((x / y - 1) * 100 for x, y in pairs)
    q = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return statistics.median(ratios), q[0], q[2], ratios[0], ratios[-1]


def said(pairs):
    """`spread` as text: `+1.2% (quartiles -3.0% .. +4.1%, range ...; 20 pairs)`."""
    m, lo, hi, least, most = spread(pairs)
    return (f"{m:+.1f}% (quartiles {lo:+.1f}% .. {hi:+.1f}%, range {least:+.1f}% .. {most:+.1f}%; "
            f"{len(pairs)} pair{'s' if len(pairs) != 1 else ''})")


def figure(name, value, unit, target=None, better="lower"):
    """One figure of a benchmark, with its target and whether it is met:
    `better` says which way is good ("lower" or "higher")."""
    met = None
    if target is not None:
        met = value <= target if better == "lower" else value >= target
    return {"name": name, "value": round(value, 3), "unit": unit,
            "target": target, "better": better, "met": met}


def write_json(path, bench, figures, **context):
    """Write a benchmark's figures to `path` (for scripts/bench/all.py)."""
    if not path:
        return
    import json
    with open(path, "w") as f:
        json.dump({"bench": bench, "figures": figures, **context}, f, indent=2)
