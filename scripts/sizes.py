#!/usr/bin/env python3
"""Lists files over 800 lines and functions over 150 lines in the given crates (default:
server, dataflow, state). A function runs from its `fn` line to the first closing brace at the
same indentation (rustfmt's layout). Exit status 1 when one is found."""
import re
import sys
from pathlib import Path

MAX_FILE, MAX_FN = 800, 150
FN = re.compile(r"^(\s*)(?:pub(?:\([\w:]+\))? )?(?:const )?(?:async )?(?:unsafe )?fn (\w+)")


def long_functions(path: Path):
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        close = m.group(1) + "}"
        for j in range(i + 1, len(lines)):
            if lines[j].rstrip() == close:
                if j - i + 1 > MAX_FN:
                    yield m.group(2), i + 1, j - i + 1
                break


def main():
    roots = [Path(a) for a in sys.argv[1:]] or [Path(c) for c in ("server", "dataflow", "state")]
    bad = False
    for root in roots:
        for f in sorted((root / "src").rglob("*.rs")):
            n = len(f.read_text().splitlines())
            if n > MAX_FILE:
                bad = True
                print(f"{f}: {n} lines")
            for name, line, length in long_functions(f):
                bad = True
                print(f"{f}:{line}: fn {name} is {length} lines")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
