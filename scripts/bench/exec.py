#!/usr/bin/env python3
"""Compare `runbook exec` of 200 small DDL steps with `psql -f` of the same
200 statements, against the same local PostgreSQL, side by side in one run.
Each run gets a fresh database. runbook's time includes writing its reports.

Target (issue 3): runbook at most 1.25x psql's wall time.

Usage: python3 scripts/bench/exec.py [--runs N] [--steps N]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from common import Cluster, release_build


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    exe = release_build()
    tmp = tempfile.mkdtemp(prefix="runbook-bench-exec-")
    cluster = Cluster(exe, tmp)
    try:
        stmts = [f"CREATE TABLE bench_{i} (id bigint PRIMARY KEY, v text NOT NULL DEFAULT '')" for i in range(args.steps)]
        sql_file = os.path.join(tmp, "stmts.sql")
        with open(sql_file, "w") as f:
            f.write(";\n".join(stmts) + ";\n")
        rb = os.path.join(tmp, "bench.yml")
        with open(rb, "w") as f:
            f.write("apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: bench, version: 1 }\n"
                    "settings: { lock_timeout: 2s, statement_timeout: 1min }\n"
                    "phases:\n  - id: expand\n    kind: expand\n    steps:\n")
            for i, s in enumerate(stmts):
                f.write(f"      - id: s{i}\n        sql: \"{s};\"\n")

        n = 0

        def fresh_db():
            nonlocal n
            n += 1
            name = f"bench_{n}"
            subprocess.run(["psql", cluster.url, "-XAtqc", f"CREATE DATABASE {name}"], check=True)
            return cluster.url_of(name)

        def timed(cmd):
            t = time.perf_counter()
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            dt = time.perf_counter() - t
            if r.returncode != 0:
                raise SystemExit(f"{cmd[0]} failed:\n{r.stderr.decode()}")
            return dt

        psql_t, rb_t = [], []
        for i in range(args.runs):
            psql_t.append(timed(["psql", fresh_db(), "-Xq", "-v", "ON_ERROR_STOP=1", "-f", sql_file]))
            rb_t.append(timed([exe, "exec", rb, "--database-url", fresh_db(), "--progress", "never",
                               "--report-dir", os.path.join(tmp, f"r{i + 1}")]))
        p, r = statistics.median(psql_t), statistics.median(rb_t)
        print(f"{'command':<40} {'median s':>9} {'min':>7} {'max':>7}")
        print(f"{'psql -f (' + str(args.steps) + ' statements)':<40} {p:>9.3f} {min(psql_t):>7.3f} {max(psql_t):>7.3f}")
        print(f"{'runbook exec (' + str(args.steps) + ' sql steps)':<40} {r:>9.3f} {min(rb_t):>7.3f} {max(rb_t):>7.3f}")
        ratio = r / p
        print(f"ratio runbook/psql: {ratio:.2f}x (target <= 1.25x: {'met' if ratio <= 1.25 else 'MISSED'}); runs: {args.runs}")
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
