#!/usr/bin/env python3
"""`runbook lint` throughput against the squawk CLI, side by side in one run.

Generates a directory of N migration pairs (1,000 by default; each up creates
a table with a foreign key to the one before and an index, and adds a
column), and a runbook of 50 sql steps. Per round, in alternating order:
  runbook lint DIR            vs  squawk DIR/*.up.sql   (when squawk is installed)
  runbook lint RUNBOOK.yml    (the 50-step runbook)

  runbook lint BIG.sql         vs  squawk BIG.sql              (one file of
                                   50,000 lines, one finding every ~5 lines)

Targets: at least squawk's throughput on the directory; under 200 ms for
the 50-step runbook (issue 6); the big file in at most 1.5x squawk's time
(issue 17: lint's time grows linearly with the findings).

Usage: python3 scripts/bench/lint.py [--files 1000] [--runs 5]
"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from common import release_build, timed, write_pairs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    exe = release_build()
    squawk = shutil.which("squawk")
    if squawk and "/shims/" in squawk:
        # A pyenv shim starts a shell and pyenv first: time the real binary.
        squawk = subprocess.run(["pyenv", "which", "squawk"], capture_output=True,
                                text=True).stdout.strip() or squawk
    tmp = tempfile.mkdtemp(prefix="bench-lint-")
    try:
        d = os.path.join(tmp, "migrations")

        def up(i):
            fk = f",\n    parent_id bigint REFERENCES t{i - 1:05d} (id)" if i > 1 else ""
            return (f"CREATE TABLE t{i:05d} (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
                    f"    name text NOT NULL{fk}\n);\n"
                    f"CREATE INDEX t{i:05d}_name ON t{i:05d} (name);\n"
                    f"ALTER TABLE t{i:05d} ADD COLUMN note text;\n")
        write_pairs(d, args.files, up, lambda i: f"DROP TABLE t{i:05d};\n")
        ups = sorted(glob.glob(os.path.join(d, "*.up.sql")))
        book = os.path.join(tmp, "runbook.yml")
        with open(book, "w") as f:
            f.write("apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: bench, version: 1 }\n"
                    "params:\n  table: { type: string, default: orders, pattern: \"[a-z_]+\" }\n"
                    "phases:\n  - id: expand\n    kind: expand\n    steps:\n")
            for i in range(50):
                f.write(f"      - id: s{i}\n        sql: |\n"
                        f"          ALTER TABLE {{{{ params.table | ident }}}} ADD COLUMN IF NOT EXISTS c{i} bigint;\n"
                        f"          CREATE INDEX CONCURRENTLY IF NOT EXISTS i{i} ON {{{{ params.table | ident }}}} (c{i});\n")
        big = os.path.join(tmp, "big.sql")
        with open(big, "w") as f:
            lines, i = 0, 0
            while lines < 50000:
                # Seven lines: a clean table, a clean insert, an index
                # squawk reports, and a comment.
                f.write(f"CREATE TABLE IF NOT EXISTS b{i} (\n"
                        f"    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
                        f"    name text NOT NULL\n);\n"
                        f"INSERT INTO b{i} (name) VALUES ('a'), ('b');\n"
                        f"CREATE INDEX b{i}_name ON b{i} (name);\n-- block {i}\n")
                lines += 7
                i += 1
        ours, theirs, book_t = [], [], []
        big_ours, big_theirs = [], []
        for r in range(args.runs):
            pair = [("ours", [exe, "lint", d, "--format", "json"])]
            if squawk:
                pair.append(("theirs", [squawk, "--reporter", "json"] + ups))
            for name, cmd in (pair if r % 2 == 0 else pair[::-1]):
                (ours if name == "ours" else theirs).append(timed(cmd, ok=(0, 1))[0])
            book_t.append(timed([exe, "lint", book], ok=(0, 1))[0])
            pair = [("ours", [exe, "lint", big, "--format", "json"])]
            if squawk:
                pair.append(("theirs", [squawk, "--reporter", "json", big]))
            for name, cmd in (pair if r % 2 == 0 else pair[::-1]):
                (big_ours if name == "ours" else big_theirs).append(timed(cmd, ok=(0, 1))[0])

        def show(label, xs):
            print(f"  {label:<44} best {min(xs) * 1000:8.1f} ms  median {statistics.median(xs) * 1000:8.1f} ms")

        print(f"{args.files} migration files, {args.runs} rounds")
        show("runbook lint DIR", ours)
        if squawk:
            ver = subprocess.run([squawk, "--version"], capture_output=True, text=True).stdout.strip()
            show(f"{ver} DIR/*.up.sql", theirs)
            ratio = statistics.median(theirs) / statistics.median(ours)
            print(f"  runbook lint throughput is {ratio:.2f}x squawk's (target at least 1x) -> "
                  f"{'met' if ratio >= 1 else 'NOT met'}")
        else:
            print("  squawk CLI not installed (pip install squawk-cli==2.68.0): no comparison")
        show("runbook lint on a 50-step runbook", book_t)
        med = statistics.median(book_t) * 1000
        print(f"  50-step runbook: {med:.1f} ms (target under 200 ms) -> {'met' if med < 200 else 'NOT met'}")
        n = int(timed([exe, "lint", big, "--format", "json"], ok=(0, 1))[1].stdout.count('"rule":'))
        print(f"one .sql file of 50,000 lines, {n} findings")
        show("runbook lint BIG.sql", big_ours)
        if squawk:
            show("squawk BIG.sql", big_theirs)
            ratio = statistics.median(big_ours) / statistics.median(big_theirs)
            print(f"  runbook lint takes {ratio:.2f}x squawk's time (target at most 1.5x) -> "
                  f"{'met' if ratio <= 1.5 else 'NOT met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
