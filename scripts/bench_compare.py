#!/usr/bin/env python3
"""Compare two bench_robustness.py --json runs query by query: verdict, top record, raw evidence.

A change meant to keep behaviour (a refactor) must leave every query's verdict and top record as
they were, on the same store; the raw evidence (inliers, agreements, PDQ distances of every
matched record) shows whether anything moved below the verdict. Exits 1 on any verdict or top
record that differs.

Usage: .venv/bin/python scripts/bench_compare.py before.json after.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def by_query(path: Path) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    results = json.loads(path.read_text())["results"]
    return {(r["name"], r["family"], r["expected"]): r for r in results}


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.splitlines()[-1])
    before, after = by_query(Path(sys.argv[1])), by_query(Path(sys.argv[2]))
    common = sorted(set(before) & set(after), key=str)
    differ = {"verdict": 0, "top record": 0, "evidence": 0}
    for key in common:
        old, new = before[key], after[key]
        for field, name in (("verdict", "verdict"), ("top", "top record"), ("evidence", "evidence")):
            if old[field] != new[field]:
                differ[name] += 1
                if differ[name] <= 5:
                    print(f"{name} differs for {key}: {old[field]} -> {new[field]}")
    only = len(set(before) ^ set(after))
    print(f"\n{'compared':>10} {'verdict':>8} {'top':>5} {'evidence':>9} {'unpaired':>9}")
    counts = (differ["verdict"], differ["top record"], differ["evidence"])
    print(f"{len(common):>10} {counts[0]:>8} {counts[1]:>5} {counts[2]:>9} {only:>9}")
    matched = sum(before[k]["verdict"] == "matched" for k in common)
    print(f"({matched} matched, {len(common) - matched} not, in the first run)")
    if differ["verdict"] or differ["top record"] or only:
        sys.exit(1)


if __name__ == "__main__":
    main()
