#!/usr/bin/env python3
"""Compare `runbook lint` with the squawk CLI on the same .sql files.

runbook lints SQL with the squawk-linter crate; this script checks that,
with runbook's context turned off (a .sql file linted on its own: no
transaction assumed, no timeouts assumed), its SQL-rule findings are the
ones the squawk CLI reports. Every file where they differ is printed with
both sides. Runbook's own rules (source "runbook") are left out: squawk has
no counterpart.

Uses `squawk` from PATH, or installs squawk-cli 2.68.0 from PyPI into a
virtualenv under ~/.cache/runbook-tools (once). Not part of the default test
run: it needs the network the first time.

Usage: python3 scripts/lint_compat.py PATH... (files or directories of .sql)
Exit: 0 when every file agrees, 1 when any differs, 2 when squawk cannot be installed.
"""
import glob
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sql_files(paths):
    for p in paths:
        if os.path.isdir(p):
            yield from sorted(glob.glob(os.path.join(p, "**", "*.sql"), recursive=True))
        else:
            yield p


def squawk_findings(squawk, path):
    out = subprocess.run([squawk, "--reporter", "json", path], capture_output=True, text=True)
    data = json.loads(out.stdout or "[]")
    # squawk counts lines and columns from 0.
    return sorted((v["rule_name"], v["line"] + 1, v["column"] + 1) for v in data)


def runbook_findings(exe, path):
    out = subprocess.run([exe, "lint", path, "--format", "json"], capture_output=True, text=True)
    if out.returncode == 5:
        raise SystemExit(f"runbook could not read {path}:\n{out.stderr}")
    data = json.loads(out.stdout)
    return sorted((f["rule"], f["line"], f["column"]) for f in data["findings"] if f["source"] == "squawk")


SQUAWK_VERSION = "2.68.0"


def install_squawk():
    """squawk-cli SQUAWK_VERSION in a cached virtualenv; its path, or None."""
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    venv = os.path.join(cache, "runbook-tools", f"squawk-{SQUAWK_VERSION}")
    exe = os.path.join(venv, "bin", "squawk")
    if not os.path.exists(exe):
        try:
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet",
                            f"squawk-cli=={SQUAWK_VERSION}"], check=True)
        except subprocess.CalledProcessError as e:
            print(f"could not install squawk-cli {SQUAWK_VERSION}: {e}", file=sys.stderr)
            return None
    return exe


def main():
    squawk = shutil.which("squawk") or install_squawk()
    if not squawk:
        return 2
    version = subprocess.run([squawk, "--version"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "runbook")
    files = list(sql_files(sys.argv[1:] or [os.path.join(ROOT, "tests", "fixtures")]))
    differ = 0
    for f in files:
        a, b = squawk_findings(squawk, f), runbook_findings(exe, f)
        if a != b:
            differ += 1
            print(f"DIFFERS {f}")
            for x in sorted(set(a) - set(b)):
                print(f"  only squawk:  {x[0]} at {x[1]}:{x[2]}")
            for x in sorted(set(b) - set(a)):
                print(f"  only runbook: {x[0]} at {x[1]}:{x[2]}")
    print(f"{len(files)} file(s) compared with {version}: {len(files) - differ} agree, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
