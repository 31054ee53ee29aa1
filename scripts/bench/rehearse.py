#!/usr/bin/env python3
"""The rehearse step against a plain forward apply, and a schema snapshot
against pg_dump --schema-only, side by side in one run.

The migration set: N migrations (200 by default), each creating a table with
two indexes and a foreign key to the table before it, with its down.

Per round, each on a fresh database:
  psql -f of every up file, in order, in one session   (the plain forward apply)
  runbook exec of a runbook with one `rehearse` step   (up, down, up again, with
                                                         snapshots and checksums)
Then, on the 200-table schema the apply left:
  runbook schema snapshot                      vs  pg_dump --schema-only

Times are wall-clock, of the whole process, best and median of the rounds;
the rehearse step's own duration (from report.json) is printed too.

With --against OLD_EXE, each round also runs the rehearse step with that
binary (an earlier build), interleaved with this one on the same cluster,
and prints the two side by side: a change measured, not two noisy runs.

Targets (issue 19): rehearse at most 3x the plain apply; snapshot at least
10x faster than pg_dump --schema-only.

Usage: python3 scripts/bench/rehearse.py [--migrations 200] [--runs 3] [--against OLD_EXE] [--json FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

from common import Cluster, bin_dir, figure, release_build, spread, timed, write_json, write_pairs


def write_set(d, n):
    def up(i):
        fk = f",\n    parent_id bigint REFERENCES t{i - 1:04d} (id)" if i > 1 else ""
        return (f"CREATE TABLE t{i:04d} (\n    id bigint PRIMARY KEY,\n    name text NOT NULL,\n"
                f"    created_at timestamptz NOT NULL DEFAULT now(){fk}\n);\n"
                f"CREATE INDEX t{i:04d}_name ON t{i:04d} (name);\n"
                f"CREATE INDEX t{i:04d}_created ON t{i:04d} (created_at);\n")
    write_pairs(d, n, up, lambda i: f"DROP TABLE t{i:04d};\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--migrations", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--against", help="an earlier runbook binary to run interleaved with this one")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    exe = release_build()
    bindir = bin_dir()
    psql, pg_dump = os.path.join(bindir, "psql"), os.path.join(bindir, "pg_dump")
    tmp = tempfile.mkdtemp(prefix="bench-rehearse-")
    cluster = Cluster(exe, tmp)
    try:
        mdir = os.path.join(tmp, "migrations")
        write_set(mdir, args.migrations)
        ups = sorted(f for f in os.listdir(mdir) if f.endswith(".up.sql"))
        book = os.path.join(tmp, "rehearse.yml")
        with open(book, "w") as f:
            f.write("apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: bench, version: 1 }\n"
                    "phases:\n  - id: verify\n    kind: verify\n    steps:\n      - id: rehearse\n"
                    f"        timeout: 1h\n        rehearse:\n          dir: {mdir}\n")
        plain, rehearse, step, earlier = [], [], [], []
        kinds = ["plain", "rehearse"] + (["earlier"] if args.against else [])
        for r in range(args.runs):
            for which in (kinds if r % 2 == 0 else kinds[::-1]):
                db = f"b_{which}_{r}"
                subprocess.run([psql, "-q", cluster.url, "-c", f"CREATE DATABASE {db}"], check=True)
                if which == "plain":
                    cmd = [psql, "-q", "-X", "-v", "ON_ERROR_STOP=1", cluster.url_of(db)]
                    for u in ups:
                        cmd += ["-f", os.path.join(mdir, u)]
                    took, _ = timed(cmd)
                    plain.append(took)
                else:
                    rep = os.path.join(tmp, f"report-{which}-{r}")
                    took, _ = timed([args.against if which == "earlier" else exe, "exec", book,
                                     "--database-url", cluster.url_of(db), "--report-dir", rep, "-q"])
                    (earlier if which == "earlier" else rehearse).append(took)
                    with open(os.path.join(rep, "report.json")) as f:
                        s = json.load(f)["phases"][0]["steps"][0]
                    if which == "rehearse":
                        step.append(s["duration_ms"] / 1000)
                    verdicts = s["details"]["verdicts"]
                    assert verdicts == {"ok": args.migrations}, verdicts
        # Snapshot against pg_dump on the schema the last plain apply left.
        target = cluster.url_of(f"b_plain_{args.runs - 1}")
        snap, dump = [], []
        for r in range(args.runs * 2):
            pair = [("snap", [exe, "schema", "snapshot", "--database-url", target]),
                    ("dump", [pg_dump, "--schema-only", "-d", target])]
            for name, cmd in (pair if r % 2 == 0 else pair[::-1]):
                took, out = timed(cmd)
                (snap if name == "snap" else dump).append(took)
        _, out = timed([exe, "schema", "snapshot", "--database-url", target])
        objects = len(json.loads(out.stdout)["objects"])

        def show(label, xs):
            print(f"  {label:<40} best {min(xs):7.3f}s  median {statistics.median(xs):7.3f}s")

        print(f"{args.migrations} migrations (a table, two indexes and a foreign key each), {args.runs} rounds")
        show("plain forward apply (psql -f, in order)", plain)
        show("rehearse (runbook exec, whole process)", rehearse)
        show("rehearse step (its own duration)", step)
        ratio = statistics.median(rehearse) / statistics.median(plain)
        print(f"  rehearse / plain apply: {ratio:.2f}x (target at most 3x) -> {'met' if ratio <= 3 else 'NOT met'}")
        if earlier:
            show(f"rehearse with {os.path.basename(args.against)}", earlier)
            change = statistics.median(rehearse) / statistics.median(earlier) - 1
            print(f"  this build against {os.path.basename(args.against)}: {change:+.1%} (median), "
                  f"{min(rehearse) / min(earlier) - 1:+.1%} (best)")
            # Each round ran both builds back to back: the median of the
            # rounds' own ratios, with its spread, is the figure to trust.
            med, q1, q3, lo, hi = spread(list(zip(rehearse, earlier)))
            print(f"  paired by round: median {med:+.1f}% (quartiles {q1:+.1f}% and {q3:+.1f}%, "
                  f"range {lo:+.1f}% to {hi:+.1f}%)")
        show("runbook schema snapshot", snap)
        show("pg_dump --schema-only", dump)
        speed = statistics.median(dump) / statistics.median(snap)
        print(f"  snapshot is {speed:.1f}x faster than pg_dump --schema-only (target at least 10x) -> "
              f"{'met' if speed >= 10 else 'NOT met'}")
        print(f"  ({objects} objects in the snapshot)")
        write_json(args.json, "rehearse", [
            figure("rehearse / plain forward apply", ratio, "x", 3),
            figure("pg_dump --schema-only / runbook schema snapshot", speed, "x", 10, better="higher"),
        ], migrations=args.migrations, runs=args.runs,
           seconds={"plain": statistics.median(plain), "rehearse": statistics.median(rehearse),
                    "snapshot": statistics.median(snap), "pg_dump": statistics.median(dump),
                    **({"earlier": statistics.median(earlier)} if earlier else {})})
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
