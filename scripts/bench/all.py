#!/usr/bin/env python3
"""Every benchmark of issue 19 at reduced sizes, in one go, into one JSON of
figures with their targets, so that a regression shows as a figure that
moved. Each benchmark still compares side by side, in interleaved runs, on
one machine; only the sizes are smaller than the full runs' defaults, so the
ratios are indicative, not the closing figures.

Usage: python3 scripts/bench/all.py [--out bench.json] [--full]
  --full   the benchmarks' own default sizes (takes much longer)
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# name, script, reduced-size arguments
BENCHES = [
    ("validate", "validate.py", ["--runs", "10"]),
    ("rehearse", "rehearse.py", ["--migrations", "50", "--runs", "1"]),
    ("backup", "backup.py", ["--scale", "10", "--runs", "1"]),
    ("backfill", "backfill.py", ["--rows", "200000", "--runs", "1"]),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench.json")
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args()
    results, failed = {}, []
    tmp = tempfile.mkdtemp(prefix="bench-all-")
    for name, script, small in BENCHES:
        out = os.path.join(tmp, f"{name}.json")
        cmd = [sys.executable, os.path.join(HERE, script), "--json", out] + ([] if args.full else small)
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.time()
        done = subprocess.run(cmd)
        if done.returncode != 0 or not os.path.exists(out):
            failed.append(name)
            continue
        with open(out) as f:
            results[name] = json.load(f)
        results[name]["seconds_taken"] = round(time.time() - started, 1)
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "sizes": "full" if args.full else "reduced",
        "benches": results,
        "failed": failed,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\n{'figure':<62} {'value':>10}  target")
    for name, r in results.items():
        for fig in r["figures"]:
            want = "" if fig["target"] is None else (
                f"{'<=' if fig['better'] == 'lower' else '>='} {fig['target']}{fig['unit']}: "
                + ("met" if fig["met"] else "NOT met"))
            print(f"{name + ': ' + fig['name']:<62} {fig['value']:>9}{fig['unit']}  {want}")
    print(f"\nwritten: {args.out}")
    if failed:
        sys.exit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
