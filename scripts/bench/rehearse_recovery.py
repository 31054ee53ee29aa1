#!/usr/bin/env python3
"""What it costs a rehearsal to recover after a failure, side by side in one
run, on a scratch database (`scratch: true`).

Three sets of N migrations (100 by default), each a table with two indexes:
  clean        every down undoes its up;
  transactional every K-th migration's down fails (DROP of a missing
               table): the down and the re-up run in the rehearsal's own
               transaction, rolled back, so recovery costs nothing;
  half-way     every K-th migration runs outside a transaction and its down
               fails on its second statement after the first committed: the
               rehearsal rebuilds the state after that up on a fresh scratch
               database, replaying every up before it.

Per round each set is rehearsed on a fresh database; printed are the
rehearse step's durations (from report.json), best and median, the extra
time per failure against the clean set, and for half-way failures each
recovery's own duration (clone plus replay) as the report records it.

Usage: python3 scripts/bench/rehearse_recovery.py [--migrations 100] [--every 10] [--runs 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

from common import Cluster, bin_dir, release_build, timed, write_pairs


def write_set(d, n, every, kind):
    def up(i):
        body = (f"CREATE TABLE t{i:04d} (id bigint PRIMARY KEY, name text NOT NULL, at timestamptz);\n"
                f"CREATE INDEX t{i:04d}_name ON t{i:04d} (name);\n")
        if kind == "half-way" and i % every == 0:
            return (f"-- runbook:no-transaction\n{body}"
                    f"CREATE INDEX CONCURRENTLY t{i:04d}_at ON t{i:04d} (at);\n")
        return body + f"CREATE INDEX t{i:04d}_at ON t{i:04d} (at);\n"

    def down(i):
        if i % every == 0 and kind == "transactional":
            return "DROP TABLE no_such_table;\n"
        if i % every == 0 and kind == "half-way":
            return (f"-- runbook:no-transaction\nDROP INDEX CONCURRENTLY t{i:04d}_at;\n"
                    "DROP INDEX CONCURRENTLY no_such_index;\n")
        return f"DROP TABLE t{i:04d};\n"

    write_pairs(d, n, up, down)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--migrations", type=int, default=100)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    exe = release_build()
    psql = os.path.join(bin_dir(), "psql")
    tmp = tempfile.mkdtemp(prefix="bench-recovery-")
    cluster = Cluster(exe, tmp)
    kinds = ["clean", "transactional", "half-way"]
    try:
        books = {}
        for kind in kinds:
            mdir = os.path.join(tmp, kind)
            write_set(mdir, args.migrations, args.every, kind)
            books[kind] = os.path.join(tmp, f"{kind}.yml")
            with open(books[kind], "w") as f:
                f.write("apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: bench, version: 1 }\n"
                        "phases:\n  - id: verify\n    kind: verify\n    steps:\n      - id: rehearse\n"
                        f"        timeout: 1h\n        rehearse:\n          dir: {mdir}\n"
                        "          scratch: true\n")
        steps = {k: [] for k in kinds}
        recoveries = []
        coverage = {}
        for r in range(args.runs):
            order = kinds if r % 2 == 0 else kinds[::-1]
            for kind in order:
                db = f"b_{kind.replace('-', '_')}_{r}"
                subprocess.run([psql, "-q", cluster.url, "-c", f"CREATE DATABASE {db}"], check=True)
                rep = os.path.join(tmp, f"report-{kind}-{r}")
                timed([exe, "exec", books[kind], "--database-url", cluster.url_of(db),
                       "--report-dir", rep, "-q"], ok=(0, 3))
                with open(os.path.join(rep, "report.json")) as f:
                    s = json.load(f)["phases"][0]["steps"][0]
                steps[kind].append(s["duration_ms"] / 1000)
                d = s["details"]
                coverage[kind] = (d["coverage"]["rehearsed"], d["coverage"]["total"])
                if kind == "half-way":
                    recoveries += [x["duration_ms"] / 1000 for x in d["recoveries"]]
        failures = args.migrations // args.every
        print(f"{args.migrations} migrations, a failure every {args.every} ({failures} in all), "
              f"{args.runs} rounds, on a scratch database")
        base = statistics.median(steps["clean"])
        for kind in kinds:
            xs = steps[kind]
            extra = (statistics.median(xs) - base) / failures if kind != "clean" else 0.0
            done, total = coverage[kind]
            print(f"  {kind:<14} best {min(xs):7.3f}s  median {statistics.median(xs):7.3f}s"
                  f"  rehearsed {done}/{total}"
                  + ("" if kind == "clean" else f"  extra per failure {extra * 1000:7.1f} ms"))
        if recoveries:
            print(f"  half-way recoveries: {len(recoveries)}, each best {min(recoveries):.3f}s, "
                  f"median {statistics.median(recoveries):.3f}s, worst {max(recoveries):.3f}s "
                  "(a fresh scratch clone, then every up before it replayed)")
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
