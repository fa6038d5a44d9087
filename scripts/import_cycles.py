#!/usr/bin/env python3
"""Lists import cycles among the modules of each crate: a module A depends on B when A's
files name `crate::B` (in `use` lines or paths) or, from a child module, `super::B`.
Modules are the top-level entries under src/ (a file or a directory with its mod file);
comment lines are not read.
Usage: scripts/import_cycles.py [crate dirs…]; exit status 1 when a cycle exists."""
import re
import sys
from pathlib import Path


def modules(src: Path):
    mods = {}
    for p in src.iterdir():
        if p.suffix == ".rs" and p.stem not in ("lib", "main"):
            mods.setdefault(p.stem, []).append(p)
        elif p.is_dir():
            mods.setdefault(p.name, []).extend(p.rglob("*.rs"))
    return mods


def deps(mods):
    out = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            # Comments (doc links included) name modules without depending on them.
            text = "\n".join(
                l for l in f.read_text().splitlines() if not l.lstrip().startswith("//")
            )
            for dep in re.findall(r"crate::(\w+)", text):
                if dep in mods and dep != m:
                    out[m].add(dep)
            # `super::x` from a top-level module's own file means the crate root's x
            if f.parent.name == "src" or f.stem == m:
                for dep in re.findall(r"\bsuper::(\w+)", text):
                    if dep in mods and dep != m and f.parent.name == "src":
                        out[m].add(dep)
    return out


def cycles(graph):
    found, index, low, stack, on, n = [], {}, {}, [], set(), [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
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
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def main():
    roots = [Path(a) for a in sys.argv[1:]] or sorted(p.parent for p in Path(".").glob("*/Cargo.toml"))
    bad = False
    for root in roots:
        src = root / "src"
        if not src.is_dir():
            continue
        for comp in cycles(deps(modules(src))):
            bad = True
            print(f"{root.name}: cycle among {', '.join(comp)}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
