#!/usr/bin/env python3
"""Compare the backup and restore steps with bare pg_dump and pg_restore on a
database of about 1 GB (pgbench scale 70), side by side in one run.

Per round, each against the same database (each pair in alternating order
from round to round, and a CHECKPOINT before every measurement):
  bare pg_dump -Fd -j 2           vs  backup step (directory, jobs 2, verify: none)
  backup step, verify: list       (what `list` adds)
  backup step, verify: restore    (what `restore` adds, from its own timing)
  bare pg_dump -Fc                vs  backup step (custom, verify: none)
  CREATE DATABASE + bare pg_restore -j 2  vs  restore step (jobs 2, new
                                  target db, which the step creates)

Step times come from report.json (the step's own duration); the runbook
process's wall time is printed too. Verification is excluded from the
"backup step" figure, as the issue's target says.

Targets (issue 4): steps at most 5% over the bare tools; verify: list adds
under 2% to the backup.

With --against OLD_EXE, each round also runs that build's restore step
(alternating with this build's), so a change to it is measured side by side.

Each round's step and bare tool form a pair; every comparison is also given
as the median of its pairs' differences, with quartiles and range. With
--pairs N, N more rounds of the directory backup alone follow, each of
three in turn (order rotating):
  bare pg_dump -Fd -j 2
  backup step (directory, jobs 2, verify: none)
  bare pg_dump -Fd -j 2 with the step's row counts beside it (psql, one
                                  session counting every table, as the step does)
The third says what the exact counts cost on this machine, apart from the
rest of the step. Each is also given in CPU time of the whole machine (every
process: the server, pg_dump, runbook), which varies far less than wall time
here; the step's includes the run around it (start, connect, report). This machine varies by 10-30% from run to run, so a
figure within a few percent needs some tens of pairs (~15 s each at scale 70).
With --restore-pairs N, N more pairs of CREATE DATABASE + bare pg_restore -j 2
and the restore step (jobs 2, into a new database) follow (~30 s each).

Usage: python3 scripts/bench/backup.py [--scale 70] [--runs 3] [--pairs N] [--restore-pairs N]
                                       [--against OLD_EXE]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from common import Cluster, bin_dir, figure, release_build, said, spread, write_json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=70)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--against", help="an older runbook build whose restore step is timed too")
    ap.add_argument("--pairs", type=int, default=0,
                    help="then this many more rounds of the directory backup alone (see above)")
    ap.add_argument("--restore-pairs", type=int, default=0,
                    help="then this many pairs of bare pg_restore -j 2 and the restore step")
    args = ap.parse_args()
    exe = release_build()
    bindir = bin_dir()
    tool = lambda n: os.path.join(bindir, n)
    tmp = tempfile.mkdtemp(prefix="runbook-bench-backup-")
    cluster = Cluster(exe, tmp)
    url = cluster.url_of
    env = dict(os.environ)
    env.pop("PG_BIN_DIR", None)
    try:
        subprocess.run([tool("psql"), url("postgres"), "-Xqc", "CREATE DATABASE bench"], check=True)
        t = time.monotonic()
        subprocess.run([tool("pgbench"), "-i", "-q", "-s", str(args.scale), url("bench")], check=True,
                       capture_output=True)
        size = subprocess.run([tool("psql"), url("bench"), "-XAtc",
                               "SELECT pg_size_pretty(pg_database_size('bench'))"],
                              capture_output=True, text=True, check=True).stdout.strip()
        print(f"database: pgbench scale {args.scale}, {size} (built in {time.monotonic() - t:.0f}s); "
              f"{os.cpu_count()} cores; runs: {args.runs}")

        def settle():
            # Earlier rounds wrote gigabytes (restores, scratch databases):
            # flush them now, so no measurement pays for another's writes.
            subprocess.run([tool("psql"), url("postgres"), "-Xqc", "CHECKPOINT"], check=True)
            subprocess.run(["sync"], check=True)

        # CPU time of the whole machine (every process: the server, pg_dump,
        # runbook) over each timed run of the pairs: /proc/stat's busy time,
        # less the time the hypervisor took away (steal). On this kind of
        # machine the wall time of one run varies by 10-30%, its CPU time by
        # a few percent, so a cost that is CPU shows there first.
        cpu = {"at": 0.0, "last": 0.0}

        def busy():
            v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
            return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")

        def mark():
            cpu["at"] = busy()

        def spent():
            cpu["last"] = busy() - cpu["at"]

        def timed(argv):
            settle()
            mark()
            t = time.monotonic()
            subprocess.run(argv, check=True, capture_output=True, env=env)
            took = time.monotonic() - t
            spent()
            return took

        def bare_restore_into(database, dump):
            """CREATE DATABASE and bare pg_restore -j 2 into it, timed: the
            step creates its new target database, so the bare side's time
            includes creating one too. The database is dropped after."""
            settle()
            mark()
            t = time.monotonic()
            subprocess.run([tool("psql"), url("postgres"), "-Xqc", f"CREATE DATABASE {database}"], check=True)
            subprocess.run([tool("pg_restore"), "-j", "2", "-d", url(database), dump],
                           check=True, capture_output=True, env=env)
            took = time.monotonic() - t
            spent()
            subprocess.run([tool("psql"), url("postgres"), "-Xqc", f"DROP DATABASE {database}"], check=True)
            return took

        n = 0

        def step(yaml_steps, database="bench", program=None):
            """Run one runbook; return (step duration s, wall s, details)."""
            nonlocal n
            n += 1
            rb = os.path.join(tmp, f"rb{n}.yml")
            with open(rb, "w") as f:
                f.write("apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: bench, version: 1 }\n"
                        "settings: { lock_timeout: 10s, statement_timeout: 1h }\n"
                        "phases:\n  - id: p\n    kind: custom\n    steps:\n" + yaml_steps)
            rep = os.path.join(tmp, f"rep{n}")
            settle()
            mark()
            t = time.monotonic()
            p = subprocess.run([program or exe, "exec", rb, "--database-url", url(database), "-q", "--report-dir", rep],
                               capture_output=True, text=True, env=env)
            wall = time.monotonic() - t
            spent()
            if p.returncode != 0:
                raise SystemExit(f"runbook failed:\n{p.stderr}")
            with open(os.path.join(rep, "report.json")) as f:
                s = json.load(f)["phases"][0]["steps"][0]
            return s["duration_ms"] / 1000, wall, s["details"]

        rows = {k: [] for k in ["pg_dump -Fd -j2", "backup dir j2 (none)", "backup dir j2 walls",
                                "backup dir j2 (list)", "verify list adds", "verify restore adds",
                                "pg_dump -Fc", "backup custom (none)",
                                "pg_restore -j2", "restore step j2", "restore step j2 - check"]
                + (["restore step j2, against"] if args.against else [])}
        for r in range(args.runs):
            # Bare tool first on even rounds, the step first on odd ones.
            first_bare = r % 2 == 0
            d = os.path.join(tmp, f"dump{r}")
            b = os.path.join(tmp, f"b{r}")

            def bare_dir():
                rows["pg_dump -Fd -j2"].append(timed([tool("pg_dump"), "-Fd", "-j", "2", "-f", d, url("bench")]))
                shutil.rmtree(d)

            def step_dir():
                s, wall, _ = step(f"      - id: b\n        backup: {{ path: {b}, jobs: 2, verify: none }}\n")
                rows["backup dir j2 (none)"].append(s)
                rows["backup dir j2 walls"].append(wall)

            for f in ([bare_dir, step_dir] if first_bare else [step_dir, bare_dir]):
                f()

            bl = os.path.join(tmp, f"bl{r}")
            s, _, det = step(f"      - id: b\n        backup: {{ path: {bl}, jobs: 2, verify: list }}\n")
            rows["backup dir j2 (list)"].append(s)
            rows["verify list adds"].append(det["verification"]["duration_ms"] / 1000)
            shutil.rmtree(bl)

            br = os.path.join(tmp, f"br{r}")
            s, _, det = step(f"      - id: b\n        backup: {{ path: {br}, jobs: 2, verify: restore }}\n")
            rows["verify restore adds"].append(det["verification"]["duration_ms"] / 1000)
            shutil.rmtree(br)

            c = os.path.join(tmp, f"c{r}.pgdump")
            bc = os.path.join(tmp, f"bc{r}")

            def bare_custom():
                rows["pg_dump -Fc"].append(timed([tool("pg_dump"), "-Fc", "-f", c, url("bench")]))
                os.remove(c)

            def step_custom():
                s, _, _ = step(f"      - id: b\n        backup: {{ path: {bc}, format: custom, verify: none }}\n")
                rows["backup custom (none)"].append(s)
                shutil.rmtree(bc)

            for f in ([bare_custom, step_custom] if first_bare else [step_custom, bare_custom]):
                f()

            def bare_restore():
                rows["pg_restore -j2"].append(bare_restore_into(f"bare{r}", os.path.join(b, "dump")))

            def step_restore():
                s, _, det = step(f"      - id: r\n        restore: {{ from: {b}, target: step{r}, jobs: 2 }}\n")
                rows["restore step j2"].append(s)
                rows["restore step j2 - check"].append(s - det["check_ms"] / 1000)
                subprocess.run([tool("psql"), url("postgres"), "-Xqc", f"DROP DATABASE step{r}"], check=True)

            def old_restore():
                s, _, _ = step(f"      - id: r\n        restore: {{ from: {b}, target: old{r}, jobs: 2 }}\n",
                               program=args.against)
                rows["restore step j2, against"].append(s)
                subprocess.run([tool("psql"), url("postgres"), "-Xqc", f"DROP DATABASE old{r}"], check=True)

            order = [bare_restore, step_restore] if first_bare else [step_restore, bare_restore]
            if args.against:
                order.insert(1 if first_bare else 0, old_restore)
            for f in order:
                f()
            if r == args.runs - 1 and args.restore_pairs:
                source = b  # the restore pairs restore it again
            else:
                shutil.rmtree(b)
            print(f"  round {r + 1} done", flush=True)

        # The step's counts, as it runs them: one session, every table,
        # no parallel workers or JIT, beside the dump.
        tables = subprocess.run([tool("psql"), url("bench"), "-XAtc",
                                 "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
                                 "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1"],
                                capture_output=True, text=True, check=True).stdout.split()
        counts = ["-c", "SET max_parallel_workers_per_gather = 0", "-c", "SET jit = off"]
        for t in tables:
            counts += ["-c", f"SELECT count(*) FROM ONLY {t}"]
        extra = {"bare": [], "step": [], "counted": []}
        extra_cpu = {"bare": [], "step": [], "counted": []}
        for i in range(args.pairs):
            d = os.path.join(tmp, f"pair{i}")

            def bare():
                extra["bare"].append(timed([tool("pg_dump"), "-Fd", "-j", "2", "-f", d, url("bench")]))
                shutil.rmtree(d)

            def counted():
                settle()
                mark()
                t = time.monotonic()
                beside = subprocess.Popen([tool("psql"), url("bench"), "-XAtq"] + counts,
                                          stdout=subprocess.DEVNULL, env=env)
                subprocess.run([tool("pg_dump"), "-Fd", "-j", "2", "-f", d, url("bench")],
                               check=True, capture_output=True, env=env)
                if beside.wait() != 0:
                    raise SystemExit("the counts beside pg_dump failed")
                extra["counted"].append(time.monotonic() - t)
                spent()
                shutil.rmtree(d)

            def stepped():
                s, _, _ = step(f"      - id: b\n        backup: {{ path: {d}, jobs: 2, verify: none }}\n")
                extra["step"].append(s)
                shutil.rmtree(d)

            order = [("bare", bare), ("step", stepped), ("counted", counted)]
            for name, f in order[i % 3:] + order[:i % 3]:
                f()
                extra_cpu[name].append(cpu["last"])
            if (i + 1) % 10 == 0:
                print(f"  pair {i + 1} of {args.pairs} done", flush=True)

        restores = {"bare": [], "step": []}
        restores_cpu = {"bare": [], "step": []}
        for i in range(args.restore_pairs):
            def bare_restore():
                restores["bare"].append(bare_restore_into(f"rbare{i}", os.path.join(source, "dump")))
                restores_cpu["bare"].append(cpu["last"])

            def step_restore():
                s, _, _ = step(f"      - id: r\n        restore: {{ from: {source}, target: rstep{i}, jobs: 2 }}\n")
                restores["step"].append(s)
                restores_cpu["step"].append(cpu["last"])
                subprocess.run([tool("psql"), url("postgres"), "-Xqc", f"DROP DATABASE rstep{i}"], check=True)

            for f in ([bare_restore, step_restore] if i % 2 == 0 else [step_restore, bare_restore]):
                f()
            if (i + 1) % 10 == 0:
                print(f"  restore pair {i + 1} of {args.restore_pairs} done", flush=True)

        def per_round(a, b):
            return list(zip(rows[a], rows[b]))

        med = {k: statistics.median(v) for k, v in rows.items()}
        print("\nmedian seconds (each run listed):")
        for k, v in rows.items():
            print(f"  {k:<24} {med[k]:8.2f}   {' '.join(f'{x:.2f}' for x in v)}")
        pct = lambda a, b: (a / b - 1) * 100
        print("\nfigures:")
        print(f"  backup step vs bare pg_dump (directory, -j 2): {pct(med['backup dir j2 (none)'], med['pg_dump -Fd -j2']):+.1f}%  (target <= +3%)")
        print(f"  backup step vs bare pg_dump (custom):          {pct(med['backup custom (none)'], med['pg_dump -Fc']):+.1f}%  (target <= +3%)")
        print(f"  restore step vs bare pg_restore -j 2:          {pct(med['restore step j2'], med['pg_restore -j2']):+.1f}%  (target <= +3%)")
        print(f"  restore step without its row-count check:     {pct(med['restore step j2 - check'], med['pg_restore -j2']):+.1f}%")
        if args.against:
            print(f"  restore step, this build against {os.path.basename(args.against)}: "
                  f"{pct(med['restore step j2'], med['restore step j2, against']):+.1f}%  "
                  f"(that build vs bare: {pct(med['restore step j2, against'], med['pg_restore -j2']):+.1f}%)")
        print(f"  verify: list adds {med['verify list adds'] / med['backup dir j2 (none)'] * 100:.2f}% to the backup  (target < 2%)")
        print(f"  verify: restore adds {med['verify restore adds']:.2f}s ({med['verify restore adds'] / med['backup dir j2 (none)'] * 100:.0f}% of the backup)")
        print(f"  directory -j 2 vs custom (bare pg_dump): {med['pg_dump -Fd -j2']:.2f}s vs {med['pg_dump -Fc']:.2f}s")
        print(f"  runbook process wall vs step time (directory): {med['backup dir j2 walls']:.2f}s vs {med['backup dir j2 (none)']:.2f}s")
        print("\nthe same, as the median of each round's pair (step against bare tool):")
        print(f"  backup, directory -j 2: {said(per_round('backup dir j2 (none)', 'pg_dump -Fd -j2'))}")
        print(f"  backup, custom:         {said(per_round('backup custom (none)', 'pg_dump -Fc'))}")
        print(f"  restore, -j 2:          {said(per_round('restore step j2', 'pg_restore -j2'))}")
        vs_bare = spread(per_round('backup dir j2 (none)', 'pg_dump -Fd -j2'))[0]
        if args.pairs:
            step_pairs = list(zip(extra["step"], extra["bare"]))
            vs_bare = spread(step_pairs)[0]
            print(f"\n{args.pairs} more round{'s' if args.pairs != 1 else ''} of the directory backup alone:")
            print(f"  backup step vs bare pg_dump -Fd -j 2:      {said(step_pairs)}  (target <= +3%)")
            print(f"  bare pg_dump with the counts beside it:    {said(list(zip(extra['counted'], extra['bare'])))}")
            print(f"  backup step vs pg_dump with the counts:    {said(list(zip(extra['step'], extra['counted'])))}")
            print("  the same in CPU time of the whole machine (medians: "
                  + ", ".join(f"{k} {statistics.median(v):.2f}s" for k, v in extra_cpu.items()) + "):")
            print(f"    backup step vs bare pg_dump:             {said(list(zip(extra_cpu['step'], extra_cpu['bare'])))}")
            print(f"    bare pg_dump with the counts beside it:  {said(list(zip(extra_cpu['counted'], extra_cpu['bare'])))}")
        vs_restore = pct(med['restore step j2'], med['pg_restore -j2'])
        if args.restore_pairs:
            restore_pairs = list(zip(restores["step"], restores["bare"]))
            vs_restore = spread(restore_pairs)[0]
            print(f"\n{args.restore_pairs} more pair{'s' if args.restore_pairs != 1 else ''} of the restore:")
            print(f"  restore step vs bare pg_restore -j 2:      {said(restore_pairs)}  (target <= +3%)")
            print(f"    in CPU time of the whole machine:        {said(list(zip(restores_cpu['step'], restores_cpu['bare'])))}"
                  f" (medians {statistics.median(restores_cpu['step']):.2f}s, {statistics.median(restores_cpu['bare']):.2f}s)")
        write_json(args.json, "backup", [
            figure("backup step vs pg_dump -Fd -j 2", vs_bare, "%", 3),
            figure("restore step (with its check) vs pg_restore -j 2", vs_restore, "%", 3),
        ], scale=args.scale, runs=args.runs, pairs=args.pairs, restore_pairs=args.restore_pairs, seconds=med)
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
