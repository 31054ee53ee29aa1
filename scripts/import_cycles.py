#!/usr/bin/env python3
"""Print the import cycles between the files of src/ (stdlib only).

A file's imports are the `crate::a::b` and `super::x` paths it names.
Edges from a module to its own children (exec/mod.rs declaring exec/sql.rs)
and from a child to its parent (the executor's shared types, `super::Run`)
are the tree itself, not a layering decision, and are left out. What is
left must be acyclic: a stage uses what is below it, never above it.

    python3 scripts/import_cycles.py        # exits 1 when there is a cycle
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"


def files():
    for d, _, fs in os.walk(ROOT):
        for f in fs:
            if f.endswith(".rs"):
                yield os.path.join(d, f)


def main():
    mods = {module_of(p): p for p in files()}
    graph = {m: set() for m in mods}
    for m, p in mods.items():
        text = open(p, encoding="utf-8").read()
        text = text.split("#[cfg(test)]")[0]
        text = re.sub(r"//[^\n]*", "", text)
        parent = m.rsplit("::", 1)[0] if "::" in m else "crate"
        for path in re.findall(r"\bcrate::((?:\w+::)*\w+)", text):
            segs = path.split("::")
            for i in range(len(segs), 0, -1):
                target = "::".join(segs[:i])
                if target in mods:
                    break
            else:
                continue
            if target != m and not m.startswith(target + "::") and not target.startswith(m + "::"):
                graph[m].add(target)
        for name in re.findall(r"\bsuper::(\w+)", text):
            target = f"{parent}::{name}" if parent != "crate" else name
            if target in mods and target != m:
                graph[m].add(target)
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    for comp in sccs:
        print("cycle:", " <-> ".join(comp))
        for a in comp:
            for b in sorted(graph[a] & set(comp)):
                print(f"    {a} -> {b}")
    print(f"{len(mods)} modules, {sum(len(v) for v in graph.values())} imports, {len(sccs)} cycle(s)")
    return 1 if sccs else 0


if __name__ == "__main__":
    sys.exit(main())
