#!/usr/bin/env python3
"""A reference rehearsal computed with psql and pg_dump alone, to check
runbook's `rehearse` verdicts on real migration histories.

For each migration, on a copy (CREATE DATABASE ... TEMPLATE) of the state
after every earlier up: up; down (the schema must be what it was before
up); up again (the schema must be what it was after the first up). An up
that fails stops the forward path: the rest are not_rehearsed. The worst
finding is the verdict, ranked as runbook ranks them. A schema after the
down whose pg_dump text differs only in whitespace is `body_layout`: a
function body laid out otherwise. Data checks (lossy) are not part of the
reference.

    python3 scripts/rehearsal_reference.py --url postgres://user@host:port/postgres \
        --format popx|golang-migrate|sql-migrate|goose|diesel DIR [--report report.json]

With --report it compares with runbook's report.json and prints every
disagreement. It reads the scripts the owning tool would run, with its own
small parser for each format, independent of runbook's.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

RANK = ["up_failure", "irreversible", "lossy", "parity_mismatch", "reup_failure"]
DIALECTS = {"postgres", "postgresql", "pg", "cockroach", "crdb", "mysql", "mariadb", "sqlite", "sqlite3"}


def number(name):
    m = re.match(r"(\d+)", name)
    return m.group(1) if m else None


def numeric_key(version, name):
    digits = version.lstrip("0")
    return (len(digits), digits, name)


def blank(sql):
    return not re.sub(r"--[^\n]*", "", sql or "").strip()


def down_of(up, down):
    """A down of only comments or blanks is no down, unless its up is
    blank too: then the down undoes it exactly (a change kept only in the
    plan, say), as runbook takes it."""
    if down is not None and blank(down) and not blank(up):
        return None
    return down


def popx(directory):
    chosen = {}
    for f in sorted(os.listdir(directory)):
        m = re.match(r"^(\d+_[^.]+?)((?:\.[a-z0-9]+)?)((?:\.autocommit)?)\.(up|down)\.sql$", f)
        if not m:
            continue
        stem, dialect, auto, direction = m.group(1), m.group(2).lstrip("."), bool(m.group(3)), m.group(4)
        if dialect == "autocommit":
            dialect, auto = "", True
        if dialect and dialect not in DIALECTS:
            stem, dialect = stem + "." + dialect, ""
        if dialect and dialect not in ("postgres", "postgresql", "pg"):
            continue
        slot = chosen.setdefault(stem, {})
        if direction not in slot or (dialect and not slot[direction][2]):
            slot[direction] = (f, auto, bool(dialect))
    out = []
    for stem in sorted(chosen, key=lambda s: numeric_key(number(s), s)):
        slot = chosen[stem]
        if "up" not in slot:
            continue
        read = lambda f: open(os.path.join(directory, f)).read()
        up = slot["up"]
        down = slot.get("down")
        out.append({
            "version": number(stem), "name": stem,
            "up": read(up[0]), "up_tx": not up[1],
            "down": read(down[0]) if down else None, "down_tx": not (down and down[1]),
        })
    return out


def sections(directory, prefix, no_tx_option, file_no_tx):
    """sql-migrate and goose: `-- +<tool> Up` / `-- +<tool> Down` lines,
    the command word matched exactly as the tools match it (`Down;` is no
    command: its lines stay in the up). Other `-- +` lines are dropped."""
    out = []
    files = [f for f in os.listdir(directory) if f.endswith(".sql") and number(f)]
    for f in sorted(files, key=lambda f: numeric_key(number(f), f)):
        text = open(os.path.join(directory, f)).read()
        up, down, cur = [], None, None
        up_tx = down_tx = True
        whole_no_tx = False
        for line in text.splitlines(keepends=True):
            if line.startswith(prefix):
                fields = line[len(prefix):].split()
                cmd = fields[0] if fields else ""
                if file_no_tx and " ".join(fields).upper() == file_no_tx:
                    whole_no_tx = True
                elif cmd == "Up":
                    cur = "up"
                    up_tx = no_tx_option not in fields[1:]
                elif cmd == "Down":
                    cur, down = "down", []
                    down_tx = no_tx_option not in fields[1:]
                continue
            if line.startswith("-- +"):
                continue
            if cur == "up":
                up.append(line)
            elif cur == "down":
                down.append(line)
        down_text = down_of("".join(up), "".join(down) if down is not None else None)
        out.append({
            "version": number(f), "name": f,
            "up": "".join(up), "up_tx": up_tx and not whole_no_tx,
            "down": down_text, "down_tx": down_tx and not whole_no_tx,
        })
    return out


def diesel(directory):
    """Diesel: a directory per migration, `up.sql` and `down.sql` in it,
    in the order of their versions: the name up to its first `_`, without
    its dashes (`2017-09-23-182408` is `20170923182408`), compared as text
    as Diesel compares them; `run_in_transaction = false` in
    `metadata.toml` runs both outside a transaction. A down of only
    comments or blanks is no down."""
    out = []
    version = lambda d: d.split("_")[0].replace("-", "")
    for d in sorted(os.listdir(directory), key=version):
        path = os.path.join(directory, d)
        if not os.path.isfile(os.path.join(path, "up.sql")):
            continue
        read = lambda f: open(os.path.join(path, f)).read() if os.path.isfile(os.path.join(path, f)) else None
        meta = read("metadata.toml") or ""
        tx = not re.search(r"^\s*run_in_transaction\s*=\s*false", meta, re.M)
        down = down_of(read("up.sql"), read("down.sql"))
        out.append({"version": version(d), "name": d, "up": read("up.sql"), "up_tx": tx,
                    "down": down, "down_tx": tx})
    return out


def golang_migrate(directory):
    """golang-migrate: `N_name.up.sql` and `N_name.down.sql`, paired by the
    version N alone, as golang-migrate pairs them (the two names may
    differ), in the order of the versions as numbers. A down of only
    comments or blanks is no down (see `down_of`)."""
    found = {}
    for f in os.listdir(directory):
        m = re.match(r"^(\d+)_.*\.(up|down)\.sql$", f)
        if m:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = f
    out = []
    for version in sorted(found):
        files = found[version]
        if "up" not in files:
            continue
        read = lambda f: open(os.path.join(directory, f)).read()
        down = down_of(read(files["up"]), read(files["down"]) if "down" in files else None)
        out.append({"version": str(version), "name": files["up"], "up": read(files["up"]), "up_tx": True,
                    "down": down, "down_tx": True})
    return out


def load(directory, fmt):
    if fmt == "golang-migrate":
        return golang_migrate(directory)
    if fmt == "popx":
        return popx(directory)
    if fmt == "sql-migrate":
        return sections(directory, "-- +migrate ", "notransaction", None)
    if fmt == "goose":
        return sections(directory, "-- +goose ", None, "NO TRANSACTION")
    if fmt == "diesel":
        return diesel(directory)
    raise SystemExit(f"unknown format {fmt}")


def psql(url, sql, tx=True):
    args = ["psql", url, "-Xq", "-v", "ON_ERROR_STOP=1"]
    if tx and "concurrently" not in sql.lower():
        args.append("-1")
    r = subprocess.run(args, input=sql, capture_output=True, text=True)
    return r.returncode == 0


def dump(url):
    r = subprocess.run(["pg_dump", "-s", "--no-owner", "--no-privileges", url],
                       capture_output=True, text=True, check=True)
    keep = [l for l in r.stdout.splitlines()
            if l.strip() and not l.startswith(("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict"))]
    return "\n".join(keep)


def with_db(url, name):
    return re.sub(r"/[^/?]*(\?|$)", f"/{name}\\1", url, count=1)


def reference(url, migrations):
    admin = url
    base = f"ref_base_{os.getpid()}"
    psql(admin, f"DROP DATABASE IF EXISTS {base}", tx=False)
    psql(admin, f"CREATE DATABASE {base}", tx=False)
    out, stopped = [], False
    for i, m in enumerate(migrations):
        if stopped:
            out.append("not_rehearsed")
            continue
        copy = f"ref_copy_{os.getpid()}"
        psql(admin, f"DROP DATABASE IF EXISTS {copy}", tx=False)
        psql(admin, f"CREATE DATABASE {copy} TEMPLATE {base}", tx=False)
        c = with_db(url, copy)
        before = dump(c)
        found = []
        if not psql(c, m["up"], m["up_tx"]):
            found.append("up_failure")
            stopped = True
        else:
            after_up = dump(c)
            if m["down"] is None:
                found.append("irreversible")
            elif not psql(c, m["down"], m["down_tx"]):
                found.append("irreversible")
            else:
                after_down = dump(c)
                if after_down != before:
                    # Text that differs only in whitespace: a function body
                    # laid out otherwise (pg_dump writes the rest itself).
                    squash = lambda t: re.sub(r"\s+", "", t)
                    found.append("body_layout" if squash(after_down) == squash(before) else "parity_mismatch")
                if not psql(c, m["up"], m["up_tx"]) or dump(c) != after_up:
                    found.append("reup_failure")
            psql(with_db(url, base), m["up"], m["up_tx"])
        out.append(next((r for r in RANK + ["body_layout"] if r in found), "ok"))
        psql(admin, f"DROP DATABASE {copy}", tx=False)
    psql(admin, f"DROP DATABASE {base}", tx=False)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="a superuser URL to the maintenance database")
    ap.add_argument("--format", required=True, choices=["popx", "golang-migrate", "sql-migrate", "goose", "diesel"])
    ap.add_argument("--report", help="runbook's report.json to compare with")
    ap.add_argument("dir")
    a = ap.parse_args()
    migrations = load(a.dir, a.format)
    started = time.monotonic()
    ref = reference(a.url, migrations)
    took = time.monotonic() - started
    counts = {}
    for v in ref:
        counts[v] = counts.get(v, 0) + 1
    print(f"reference: {len(ref)} migrations in {took:.1f} s: {json.dumps(counts, sort_keys=True)}")
    if not a.report:
        return
    report = json.load(open(a.report))
    # The rehearse step that ran: a runbook may have others, skipped by a
    # `when` (ci-rehearsal's seeded and unseeded steps).
    steps = [s for p in report["phases"] for s in p["steps"] if s["kind"] == "rehearse" and s.get("details")]
    got = steps[0]["details"]["migrations"]
    # Runbook's data check (lossy) and order/slow findings are not in the
    # reference: compare on the verdicts the reference can give.
    comparable = set(RANK) | {"ok", "not_rehearsed", "body_layout"}
    disagree = order_only = 0
    for m, r in zip(got, ref):
        verdicts = [f["verdict"] for f in m["findings"]] or ["ok"]
        mine = next((x for x in RANK if x in verdicts and x != "lossy"), None)
        if mine is None and "column_order" in verdicts and r == "parity_mismatch":
            # runbook's softer verdict for a column that came back at the
            # end; pg_dump's text differs by that order alone.
            order_only += 1
            continue
        if mine is None and "body_layout" in verdicts and r == "parity_mismatch":
            # A body laid out otherwise, and a column that came back at
            # the end: pg_dump's text differs in more than whitespace.
            order_only += 1
            continue
        if mine is None:
            mine = next((x for x in ["not_rehearsed", "body_layout"] if x in verdicts), "ok")
        if mine != r and r in comparable:
            disagree += 1
            print(f"  {m['version']} {m['name']}: runbook {mine} ({'; '.join(f['message'][:160] for f in m['findings'])}), reference {r}")
    if len(got) != len(ref):
        print(f"  runbook has {len(got)} migrations, the reference {len(ref)}")
    print(f"disagreements: {disagree} of {len(ref)} "
          f"(and {order_only} column_order or body_layout verdicts where pg_dump's text differs by column order)")


if __name__ == "__main__":
    sys.exit(main())
