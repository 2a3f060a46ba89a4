"""Storage benchmark: 1M synthetic turns through the real commit path, then every canned report.

    .venv/bin/python benchmarks/storage.py                 # local disk (a temp dir)
    .venv/bin/python benchmarks/storage.py --s3            # also against a SeaweedFS S3 it starts
    .venv/bin/python benchmarks/storage.py --turns 200000  # smaller

What is written: ``--shards`` shards (default 16 x 62,500 turns), each committed with
``RunStore.commit_shard`` exactly as a rollout worker does (episodes + turns + tool_calls in one
commit), ``--workers`` commits at a time (default 2, one per core, like two Dask workers). Column sizes
are realistic: response_ids / response_logprobs 20-60 per turn, observation_ids 8-24, response_text
about 50 characters, episodes carrying their full token_ids / loss_mask / logprobs and messages JSON.
Synthetic data is built as Arrow arrays with numpy (no Python rows) before the clock starts.

Baseline, measured in the same run: the same turns tables written with ``pyarrow.parquet.write_table``
defaults (snappy, dictionary on every column) straight to local files, one at a time (no store).

Prints a table per backend, then as the LAST stdout line one JSON object:
``{"write_turns_per_s": .., "query_s": <slowest canned report>, "reports": {name: s}, ...}``
(the local figures at top level; ``"s3": {...}`` beside them with ``--s3``).
Goal on a 2-core machine: >= 200,000 turns/s written and every canned report < 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aworld_core.analysis import connect, run_report  # noqa: E402
from aworld_core.analysis.reports import REPORTS  # noqa: E402
from aworld_core.storage.schema import EVALUATIONS, SCHEMA_VERSION  # noqa: E402
from aworld_core.storage.store import RunStore, ShardKey  # noqa: E402
from aworld_core.storage.synthetic import synthetic_shard  # noqa: E402
from aworld_core.storage.uri import StorageLocation  # noqa: E402


# -- measurements ----------------------------------------------------------------------------------
def plan(turns: int, shards: int) -> list[tuple[ShardKey, int]]:
    """Shards spread over iterations (4 shards each: 3 rollout, 1 eval)."""
    sizes = [turns // shards + (1 if k < turns % shards else 0) for k in range(shards)]
    return [(ShardKey(k // 4, "eval" if k % 4 == 3 else "rollout", k), n) for k, n in enumerate(sizes)]


Data = list[tuple[ShardKey, dict[str, pa.Table]]]


def _timed(fn: Any) -> tuple[Any, float, float, float]:
    """(result, wall s, CPU s of this process, 1-minute load average before)."""
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0, load


def write_once(location: StorageLocation, run_id: str, data: Data, workers: int) -> tuple[list[dict], float, float, float]:
    store = RunStore(location, run_id)
    store.check_access(write=True)

    def commit_all() -> list[dict[str, Any]]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda kd: store.commit_shard(kd[0], kd[1]), data))

    manifests, wall, cpu, load = _timed(commit_all)
    _commit_evaluations(store, manifests)  # one summary row per iteration, as the recipe does (not timed)
    return manifests, wall, cpu, load


def _commit_evaluations(store: RunStore, manifests: list[dict[str, Any]]) -> None:
    for it in sorted({m["iteration"] for m in manifests}):
        row = {"schema_version": SCHEMA_VERSION, "run_id": store.run_id, "iteration": it,
               "policy_checkpoint": f"{store.run_id}/iter-{it}", "environment": "arithmetic", "split": "heldout",
               "episodes": 1024, "successes": 400 + 10 * it, "success_rate": (400 + 10 * it) / 1024,
               "mean_reward": (400 + 10 * it) / 1024, "temperature": 1.0, "created_at": time.time()}
        store.commit_shard(ShardKey(it, "summary", 0), {"evaluations": pa.Table.from_pylist([row], schema=EVALUATIONS)})


def bench_write(location: StorageLocation, data: Data, workers: int, repeats: int) -> tuple[str, dict[str, Any]]:
    """Write the whole data set ``repeats`` times (fresh run ids); the last run is kept for queries."""
    runs = []
    for i in range(repeats):
        run_id = f"bench-{int(time.time())}-{i}"
        manifests, wall, cpu, load = write_once(location, run_id, data, workers)
        runs.append((run_id, manifests, wall, cpu, load))
        if i < repeats - 1:
            RunStore(location, run_id).fs.delete_dir(RunStore(location, run_id).root)
    run_id, manifests = runs[-1][0], runs[-1][1]
    walls = sorted(r[2] for r in runs)
    turns = sum(m["rows"]["turns"] for m in manifests)
    raw = sum(t.nbytes for _, tables in data for t in tables.values())
    median = walls[len(walls) // 2]
    return run_id, {
        "turns": turns, "episodes": sum(m["rows"]["episodes"] for m in manifests),
        "tool_calls": sum(m["rows"]["tool_calls"] for m in manifests),
        "arrow_mb": raw / 1e6, "parquet_mb": sum(sum(m["bytes"].values()) for m in manifests) / 1e6,
        "write_s": median, "write_turns_per_s": turns / median, "write_turns_per_s_best": turns / walls[0],
        "write_turns_per_s_all": [turns / r[2] for r in runs],
        "write_cpu_s": sorted(r[3] for r in runs)[len(runs) // 2],
        "write_turns_per_cpu_s": turns / sorted(r[3] for r in runs)[len(runs) // 2],
        "load_avg_1m_before": [r[4] for r in runs], "write_mb_per_s": raw / 1e6 / median}


def bench_baseline(data: Data, workdir: Path, workers: int, repeats: int) -> dict[str, Any]:
    """Same tables, same concurrency, pyarrow defaults, plain files: no store, no atomic rename."""
    out = workdir / "baseline"

    def write_all() -> None:
        out.mkdir(parents=True, exist_ok=True)
        jobs = [(f"{name}-{key.shard}", t) for key, tables in data for name, t in tables.items()]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda job: pq.write_table(job[1], out / f"{job[0]}.parquet"), jobs))

    walls = []
    for _ in range(repeats):
        _, wall, _, _ = _timed(write_all)
        walls.append(wall)
        shutil.rmtree(out)
    turns = sum(t["turns"].num_rows for _, t in data)
    return {"baseline_write_turns_per_s": turns / sorted(walls)[len(walls) // 2]}


def bench_queries(location: StorageLocation, run_id: str, repeats: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    con = connect(location, run_id)
    connect_s = time.perf_counter() - t0
    first: dict[str, float] = {}
    best: dict[str, float] = {}
    rows: dict[str, int] = {}
    for name in REPORTS:
        times = []
        for _ in range(repeats):
            r = run_report(con, name)
            times.append(r.seconds)
            rows[name] = r.table.num_rows
        first[name], best[name] = times[0], min(times)
    con.close()
    return {"connect_s": connect_s, "reports": first, "reports_best": best, "report_rows": rows,
            "query_s": max(first.values())}


def run_backend(label: str, location: StorageLocation, data: Data, workers: int, write_repeats: int,
                query_repeats: int) -> dict[str, Any]:
    run_id, w = bench_write(location, data, workers, write_repeats)
    q = bench_queries(location, run_id, query_repeats)
    return {"backend": label, "uri": location.display(run_id), **w, **q}


def print_table(res: dict[str, Any]) -> None:
    print(f"\n== {res['backend']}: {res['uri']}")
    print(f"  wrote {res['turns']:,} turns + {res['episodes']:,} episodes + {res['tool_calls']:,} tool calls "
          f"({res['arrow_mb']:.0f} MB Arrow -> {res['parquet_mb']:.0f} MB Parquet); median of "
          f"{len(res['write_turns_per_s_all'])}: {res['write_s']:.2f} s")
    print(f"  write: {res['write_turns_per_s']:>10,.0f} turns/s median, {res['write_turns_per_s_best']:,.0f} best "
          f"({', '.join(f'{r:,.0f}' for r in res['write_turns_per_s_all'])}); "
          f"{res['write_turns_per_cpu_s']:,.0f} turns per CPU-second of this process")
    print(f"  load average before each write (2 cores, shared): "
          f"{', '.join(f'{x:.1f}' for x in res['load_avg_1m_before'])}")
    if "baseline_write_turns_per_s" in res:
        print(f"  baseline, same tables and workers, pyarrow defaults, no store: "
              f"{res['baseline_write_turns_per_s']:,.0f} turns/s")
    print(f"  connect (manifests -> views): {res['connect_s']:.3f} s")
    print(f"  {'report':<22}{'first s':>9}{'best s':>9}{'rows':>7}")
    for name, s in res["reports"].items():
        print(f"  {name:<22}{s:>9.3f}{res['reports_best'][name]:>9.3f}{res['report_rows'][name]:>7}")
    ok_w = res["write_turns_per_s"] >= 200_000
    ok_q = res["query_s"] < 1.0
    print(f"  goal >= 200,000 turns/s: {'met' if ok_w else 'MISSED'};  every report < 1 s: {'met' if ok_q else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="concurrent shard commits (default 2)")
    ap.add_argument("--write-repeats", type=int, default=3, help="full writes per backend (median reported)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each report (first and best reported)")
    ap.add_argument("--s3", action="store_true", help="also run against a SeaweedFS S3 started here")
    ap.add_argument("--no-local", action="store_true", help="skip the local-disk run (with --s3)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--dir", default=None, help="local directory (default: a temp dir, deleted after)")
    a = ap.parse_args(argv)

    t0 = time.perf_counter()
    data = [(key, synthetic_shard("bench", key, n, seed=key.shard)) for key, n in plan(a.turns, a.shards)]
    print(f"generated {a.turns:,} turns in {a.shards} shards in {time.perf_counter() - t0:.1f} s (not timed)")

    results: dict[str, Any] = {}
    workdir = Path(a.dir or tempfile.mkdtemp(prefix="aworld-bench-"))
    try:
        if not a.no_local:
            res = run_backend("local", StorageLocation(str(workdir / "runs")), data, a.workers, a.write_repeats,
                              a.repeats)
            if not a.no_baseline:
                res.update(bench_baseline(data, workdir, a.workers, a.write_repeats))
            print_table(res)
            results["local"] = res
        if a.s3:
            from aworld_core.storage.s3_server import SeaweedS3

            with SeaweedS3() as s3:
                s3.create_bucket("aworld-bench")
                os.environ.update(s3.env())
                res = run_backend("s3 (SeaweedFS on loopback, same 2 cores)",
                                  StorageLocation("s3://aworld-bench/runs", s3_endpoint_url=s3.endpoint_url),
                                  data, a.workers, a.write_repeats, a.repeats)
                print_table(res)
                results["s3"] = res
    finally:
        if a.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    def summary(r: dict[str, Any]) -> dict[str, Any]:
        keys = ("write_turns_per_s", "query_s", "reports", "reports_best", "write_turns_per_s_best",
                "write_turns_per_s_all", "write_turns_per_cpu_s", "write_s", "turns", "connect_s", "parquet_mb",
                "arrow_mb", "baseline_write_turns_per_s", "load_avg_1m_before")

        def rnd(v: Any) -> Any:
            if isinstance(v, float):
                return round(v, 4)
            if isinstance(v, dict):
                return {k: rnd(x) for k, x in v.items()}
            if isinstance(v, list):
                return [rnd(x) for x in v]
            return v

        return {k: rnd(v) for k, v in r.items() if k in keys}

    top = summary(results["local"]) if "local" in results else summary(results["s3"])
    if "s3" in results and "local" in results:
        top["s3"] = summary(results["s3"])
    top["machine_cpus"] = os.cpu_count()
    print(json.dumps(top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
