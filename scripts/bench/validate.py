#!/usr/bin/env python3
"""Time `runbook validate` on a generated 1,000-step runbook and `runbook --version`,
as whole processes, side by side in one run. When ansible-playbook is installed,
time `ansible-playbook --syntax-check` on an equivalent 1,000-task playbook too.

Targets (issue 2): validate < 50 ms median for 1,000 steps; --version < 5 ms.
Issue 19 asks for validate to come close to its floor, parsing the YAML with
serde_yaml alone. The floor is timed two ways on the same file:
- as a whole process, interleaved with `runbook validate`: the bench binary
  of benches/validate.rs with `--parse-once` starts, reads the file, parses
  it with serde_yaml and exits;
- in process, where benches/validate.rs also shows where validate's own
  time goes.

With --against OLD_EXE, each round also runs that build's validate, so a
change is measured side by side.

Usage: python3 scripts/bench/validate.py [--runs N] [--steps N] [--against OLD_EXE] [--json FILE]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import ROOT, figure, release_build, write_json


def runbook_yaml(steps: int) -> str:
    out = [
        "apiVersion: runbook/v1",
        "kind: Runbook",
        "metadata: { name: bench, version: 1 }",
        "params:",
        "  table: { type: string, default: orders }",
        "settings: { lock_timeout: 2s, statement_timeout: 1min }",
        "phases:",
    ]
    per_phase = 100
    for p in range(max(1, steps // per_phase)):
        out += [f"  - id: phase_{p}", "    kind: expand", "    steps:"]
        for i in range(per_phase):
            n = p * per_phase + i
            if n % 4 == 3:
                out += [
                    f"      - id: check_{n}",
                    "        check:",
                    f"          query: SELECT count(*) AS n FROM {{{{ params.table | ident }}}} WHERE id > {n}",
                    "          expect: { n: { gte: 0 } }",
                ]
            else:
                out += [
                    f"      - id: step_{n}",
                    "        timeout: 30s",
                    f"        sql: ALTER TABLE {{{{ params.table | ident }}}} ADD COLUMN IF NOT EXISTS c{n} int;",
                    "        rollback:",
                    f"          id: undo_{n}",
                    f"          sql: ALTER TABLE {{{{ params.table | ident }}}} DROP COLUMN IF EXISTS c{n};",
                ]
    return "\n".join(out) + "\n"


def playbook_yaml(steps: int) -> str:
    out = ["- hosts: localhost", "  gather_facts: false", "  vars:", "    table: orders", "  tasks:"]
    for n in range(steps):
        out += [
            f"    - name: step {n}",
            f"      ansible.builtin.command: psql -c 'ALTER TABLE {{{{ table }}}} ADD COLUMN IF NOT EXISTS c{n} int'",
            "      timeout: 30",
        ]
    return "\n".join(out) + "\n"


def run_ms(cmd, env=None):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    took = (time.perf_counter() - t) * 1000
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr.decode()}")
    return took


def interleaved_ms(cmds, runs, env=None):
    """Each command once per round, in turn, for `runs` rounds: the
    machine's slow spells fall on all of them alike. Returns, per command,
    (median, min, max) in ms."""
    samples = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            samples[name].append(run_ms(cmd, env))
    return {name: (statistics.median(v), min(v), max(v)) for name, v in samples.items()}


def bench_binary():
    """Build benches/validate.rs; return its executable's path."""
    out = subprocess.run(["cargo", "bench", "--no-run", "--locked", "--bench", "validate"],
                         cwd=ROOT, check=True, capture_output=True, text=True)
    m = re.search(r"Executable .*\((.+)\)", out.stderr)
    if not m:
        sys.exit(f"cannot find the validate bench binary in:\n{out.stderr}")
    return os.path.join(ROOT, m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--against", help="an earlier runbook binary to run interleaved with this one")
    args = ap.parse_args()

    exe = release_build()
    floor_exe = bench_binary()
    tmp = tempfile.mkdtemp(prefix="runbook-bench-")
    rb = os.path.join(tmp, "bench.yml")
    with open(rb, "w") as f:
        f.write(runbook_yaml(args.steps))
    pb = os.path.join(tmp, "playbook.yml")
    with open(pb, "w") as f:
        f.write(playbook_yaml(args.steps))

    validate = f"runbook validate ({args.steps} steps)"
    floor_name = "the floor: read + serde_yaml parse, whole process"
    cmds = {"runbook --version": [exe, "--version"], validate: [exe, "validate", rb],
            floor_name: [floor_exe, "--parse-once", rb]}
    if args.against:
        cmds[f"validate with {os.path.basename(args.against)}"] = [args.against, "validate", rb]
    timed = interleaved_ms(cmds, args.runs)
    targets = {"runbook --version": 5, validate: 50}
    rows = [(name, *timed[name], targets.get(name)) for name in cmds]
    ansible = shutil.which("ansible-playbook")
    if ansible:
        env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
        rows.append(
            (f"ansible-playbook --syntax-check ({args.steps} tasks)",
             *interleaved_ms({"ansible": [ansible, "--syntax-check", pb]}, max(3, args.runs // 5), env)["ansible"],
             None)
        )
    print(f"{'command':<48} {'median ms':>10} {'min':>8} {'max':>8}  target")
    for name, med, lo, hi, target in rows:
        verdict = "" if target is None else (f"< {target} ms: " + ("met" if med < target else "MISSED"))
        print(f"{name:<48} {med:>10.2f} {lo:>8.2f} {hi:>8.2f}  {verdict}")
    if not ansible:
        print("ansible-playbook not installed (pip install ansible-core) - comparison skipped")
    print(f"runbook file: {os.path.getsize(rb)} bytes; runs per command: {args.runs}, interleaved")
    whole, floor_ms = timed[validate][0], timed[floor_name][0]
    print(f"  validate / the whole-process floor: {whole / floor_ms:.2f}x (medians)")
    if args.against:
        old = timed[f"validate with {os.path.basename(args.against)}"][0]
        print(f"  this build against {os.path.basename(args.against)}: {whole / old - 1:+.1%} (median)")
    # In process, beside the floor (serde_yaml alone on the same file).
    bench = subprocess.run(["cargo", "bench", "--quiet", "--locked", "--bench", "validate", "--", rb, str(args.runs)],
                           cwd=ROOT,
                           check=True, capture_output=True, text=True)
    print(bench.stdout, end="")
    # `  validate_file, schema compiled   57.80 ms    2.5x the floor`
    floor = re.search(r"validate_file, schema compiled\s+([0-9.]+) ms\s+([0-9.]+)x the floor", bench.stdout)
    write_json(args.json, "validate", [
        # Issue 19's target: 1.0-1.2x the whole-process floor on this machine.
        figure(f"runbook validate, {args.steps} steps, whole process", whole, "ms", target=15),
        figure("runbook validate / read + parse alone, whole process", whole / floor_ms, "x"),
        figure("validate_file in process / serde_yaml alone (the floor)", float(floor.group(2)) if floor else float("nan"), "x"),
    ], steps=args.steps, runs=args.runs)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
