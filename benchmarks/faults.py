"""The fault battery: every ``faults``-marked test, run for real, with what each injected and found.

Each fault test (tests/e2e/test_faults.py, tests/e2e/test_resume.py, tests/integration/test_s3_restart.py)
injects one fault into a real rollout or commit (a Dask worker SIGKILLed mid-shard, the vLLM server
killed and restarted, tools that hang or crash, the flow's process group SIGKILLed then resumed, the
S3 server killed mid-commit and restarted) and records, through the ``fault_ledger`` fixture, how many
episodes were expected and which were stored. This script runs them with pytest (the same code the
suite runs), then prints a table and, last, one JSON object with ``faults_injected``,
``episodes_expected``, ``episodes_stored``, ``lost``, ``duplicated`` and the per-fault rows.

Usage: .venv/bin/python benchmarks/faults.py [-k EXPR]   (takes several minutes: real servers)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default=None, help="pytest -k expression to run a subset")
    args = ap.parse_args()
    ledger = Path(tempfile.mkdtemp(prefix="aworld-faults-")) / "ledger.jsonl"
    cmd = [sys.executable, "-m", "pytest", "-m", "faults", "-q"]
    if args.k:
        cmd += ["-k", args.k]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "AWORLD_FAULT_LEDGER": str(ledger)},
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []
    summary_line = (proc.stdout.strip().splitlines() or ["(no pytest output)"])[-1]
    print(f"{'fault':<70} {'expected':>8} {'stored':>6} {'lost':>4} {'dup':>4} {'failed*':>7}  outcome")
    for r in rows:
        print(f"{r['fault'][:70]:<70} {r['episodes_expected']:>8} {r['episodes_stored']:>6} {r['lost']:>4} "
              f"{r['duplicated']:>4} {r['failed_recorded']:>7}  {r['outcome']}")
    print("* failed: stored with stop_reason=error and its reason (not lost)")
    print(f"pytest: {summary_line} ({wall:.0f} s)")
    if proc.returncode != 0:
        print(proc.stdout[-6000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
    out = {"faults_injected": len(rows),
           "episodes_expected": sum(r["episodes_expected"] for r in rows),
           "episodes_stored": sum(r["episodes_stored"] for r in rows),
           "lost": sum(r["lost"] for r in rows), "duplicated": sum(r["duplicated"] for r in rows),
           "failed_recorded": sum(r["failed_recorded"] for r in rows),
           "tests_passed": proc.returncode == 0, "wall_s": round(wall, 1), "faults": rows}
    print(json.dumps(out))
    sys.exit(0 if proc.returncode == 0 else 1)


if __name__ == "__main__":
    main()
