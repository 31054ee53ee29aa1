#!/usr/bin/env python3
"""One runbook over many databases: `runbook exec --targets` at --parallel 1
and --parallel 8, against the same work done by a shell loop of
`runbook exec`, one database at a time. Interleaved runs in one process,
against one throwaway cluster with a database per target; every mode
does the same 5 steps on every target.

Also the peak memory (max RSS) of each process, and what each extra
concurrent target costs: (peak at --parallel 8 - peak at --parallel 1) / 7.

Issue 22 asks for the speed-up and the memory per target.

Usage: python3 scripts/bench/fleet.py [--targets 100] [--runs 3]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from common import Cluster, release_build

RUNBOOK = """apiVersion: runbook/v1
kind: Runbook
metadata: { name: bench-fleet, version: "1" }
settings: { lock_timeout: 2s, statement_timeout: 1min }
phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE IF NOT EXISTS bench_items (id bigserial PRIMARY KEY, v text NOT NULL);
      - id: fill
        sql: INSERT INTO bench_items (v) SELECT md5(g::text) FROM generate_series(1, 1000) g;
      - id: index
        sql: CREATE INDEX IF NOT EXISTS bench_items_v ON bench_items (v);
      - id: analyze
        sql: ANALYZE bench_items;
  - id: verify
    kind: verify
    steps:
      - id: filled
        check:
          query: SELECT count(*) >= 1000 AS ok FROM bench_items
          expect: { ok: true }
"""


def run(cmd):
    """Run `cmd`; return (seconds, max RSS in KiB). A failure stops the benchmark."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    took = time.perf_counter() - t
    err = p.stderr.read().decode()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[:3]} failed:\n{err[-3000:]}")
    return took, usage.ru_maxrss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    exe = release_build()
    tmp = tempfile.mkdtemp(prefix="runbook-bench-fleet-")
    cluster = Cluster(exe, tmp)
    try:
        rb = os.path.join(tmp, "bench.yml")
        with open(rb, "w") as f:
            f.write(RUNBOOK)
        names = [f"tenant_{i:03d}" for i in range(args.targets)]
        for n in names:
            subprocess.run(["psql", cluster.url, "-XAtqc", f"CREATE DATABASE {n}"], check=True)
        targets = os.path.join(tmp, "targets.yml")
        with open(targets, "w") as f:
            f.write(f"apiVersion: runbook/v1\nkind: Targets\ndefaults: {{ url: '{cluster.url}' }}\ntargets:\n")
            for n in names:
                f.write(f"  - {{ name: {n}, database: {n} }}\n")
        one = os.path.join(tmp, "one.yml")
        with open(one, "w") as f:
            f.write(f"apiVersion: runbook/v1\nkind: Targets\ndefaults: {{ url: '{cluster.url}' }}\n"
                    f"targets:\n  - {{ name: {names[0]}, database: {names[0]} }}\n")

        def shell_loop(r):
            # What teams do today: one process per database, one after another.
            script = os.path.join(tmp, "loop.sh")
            with open(script, "w") as f:
                f.write("set -e\n")
                for n in names:
                    f.write(f"{exe} exec {rb} --database-url {cluster.url_of(n)} -q "
                            f"--report-dir {tmp}/loop-{r}/{n}\n")
            return run(["bash", script])

        def fleet(r, parallel, file=targets):
            return run([exe, "exec", rb, "--targets", file, "--parallel", str(parallel), "-q",
                        "--report-dir", f"{tmp}/fleet-{parallel}-{r}"])

        modes = {
            "shell loop of runbook exec": shell_loop,
            "exec --targets --parallel 1": lambda r: fleet(r, 1),
            "exec --targets --parallel 8": lambda r: fleet(r, 8),
        }
        times = {m: [] for m in modes}
        rss = {m: [] for m in modes}
        for r in range(args.runs):
            for m, f in modes.items():
                t, kb = f(r)
                times[m].append(t)
                rss[m].append(kb)
        single = [fleet(f"one-{r}", 1, one)[1] for r in range(args.runs)]

        print(f"{args.targets} targets x 5 steps, {args.runs} interleaved runs each")
        print(f"{'mode':<32} {'median s':>9} {'min':>7} {'max':>7} {'per target ms':>14} {'peak RSS MiB':>13}")
        for m in modes:
            ts = times[m]
            med = statistics.median(ts)
            print(f"{m:<32} {med:>9.2f} {min(ts):>7.2f} {max(ts):>7.2f} {med / args.targets * 1000:>14.1f} "
                  f"{max(rss[m]) / 1024:>13.1f}")
        loop = statistics.median(times["shell loop of runbook exec"])
        p1 = statistics.median(times["exec --targets --parallel 1"])
        p8 = statistics.median(times["exec --targets --parallel 8"])
        print(f"speed-up over the shell loop: {loop / p1:.2f}x at --parallel 1, {loop / p8:.2f}x at --parallel 8")
        base = statistics.median(single) / 1024
        peak1 = max(rss["exec --targets --parallel 1"]) / 1024
        peak8 = max(rss["exec --targets --parallel 8"]) / 1024
        print(f"memory: one target {base:.1f} MiB; {args.targets} targets at --parallel 1 {peak1:.1f} MiB, "
              f"at --parallel 8 {peak8:.1f} MiB; each extra concurrent target {(peak8 - peak1) / 7:.2f} MiB; "
              f"per target overall {(peak8 - base) / args.targets * 1024:.0f} KiB")
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
