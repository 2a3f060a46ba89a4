"""Experience-collection speedup: single-process sequential vs the real rollout flow, in one run.

The paper's systems result: distributing agent-environment interaction made experience collection
14.6x faster than sequential execution. Here, against one real vLLM CPU server on the tiny model,
with a tool latency representative of web tools (uniform 0.2-1.0 s per call):

  (a) sequential: ``run_shard`` with concurrency 1, one episode after another, in this process;
  (b) the real ``aworld-rollout`` Prefect flow: shards as Prefect tasks on a warm Dask cluster,
      many episodes in flight per shard.

Also measured in the same run: the server's peak batched generation throughput, and the tool
latency bound, which give the efficiency of (b) against what the hardware allows; and
``overhead_frac``, the share of (b)'s wall time not spent inside shards (Prefect + Dask).
Then a scaling table: the same flow on 1, 2 and 4 Dask workers x 4, 16 and 64 episodes in flight per
shard. Each worker count gets one LocalCluster, reused across its concurrency levels; a cell that
takes longer than ``--cell-timeout`` is reported as ``timeout`` (its cluster is replaced) instead of
stalling the benchmark. Last stdout line: one JSON object.

    .venv/bin/python benchmarks/rollout_speedup.py [--episodes 256] [--no-scaling]
    # a quick check of the whole script (minutes, not a measurement):
    .venv/bin/python benchmarks/rollout_speedup.py --episodes 32 --tool-latency 0.05 0.1 \\
        --warm-start-steps 40 --scaling-workers 1,2 --scaling-concurrency 4,16 --cell-timeout 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")

SAMPLES = 8
TOOL_LATENCY = [0.2, 1.0]


def prepare_model(workdir: Path, steps: int = 150) -> Path:
    """A tiny model after a short warm start, so episodes are real multi-turn tool use."""
    from aworld_core.config import WarmStartConfig
    from aworld_core.envs.base import build_env
    from aworld_core.model.tiny import create_tiny_model
    from aworld_core.training.sft import sft_warm_start

    env = build_env("arithmetic", seed=1234)
    base = create_tiny_model(workdir / "base", env)
    return Path(sft_warm_start(base, workdir / "warm", env, WarmStartConfig(steps=steps)).checkpoint)


async def server_peak(url: str, prompt_ids: list[int], n: int = 256, max_tokens: int = 32) -> float:
    """Peak generation tokens/s: n concurrent fixed-length completions (ignore_eos)."""
    import httpx

    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=n, keepalive_expiry=3.0)) as http:
        async def one() -> int:
            # a burst of new connections can meet a reset one (ReadError): retry it, like the client does
            async for attempt in AsyncRetrying(retry=retry_if_exception_type(httpx.TransportError),
                                               stop=stop_after_attempt(5), wait=wait_fixed(0.2), reraise=True):
                with attempt:
                    r = await http.post(f"{url}/completions", json={
                        "model": "policy", "prompt": prompt_ids, "max_tokens": max_tokens, "ignore_eos": True,
                        "temperature": 1.0})
                    r.raise_for_status()
                    return r.json()["usage"]["completion_tokens"]
            raise AssertionError("unreachable")

        await asyncio.gather(*(one() for _ in range(16)))  # warm-up
        t0 = time.perf_counter()
        toks = await asyncio.gather(*(one() for _ in range(n)))
        return sum(toks) / (time.perf_counter() - t0)


def episode_stats(store, phase: str) -> dict[str, float]:
    t = store.read("episodes", phase=phase, columns=["response_tokens", "tool_s", "model_s", "total_s",
                                                      "num_tool_calls", "stop_reason"]).to_pylist()
    return {"episodes": len(t), "response_tokens": sum(r["response_tokens"] for r in t),
            "max_tool_s": max(r["tool_s"] for r in t), "mean_total_s": sum(r["total_s"] for r in t) / len(t),
            "tool_calls": sum(r["num_tool_calls"] for r in t),
            "errors": sum(r["stop_reason"] == "error" for r in t)}


def bounded(fn: Callable[[], Any], timeout_s: float, what: str) -> tuple[Any, str]:
    """``fn()`` in a daemon thread, waited for at most ``timeout_s``: ``(result, "ok")``, or
    ``(None, "timeout")`` (the stuck thread's stack goes to stderr, to find the cause), or
    ``(None, "error: ...")``. A stuck call is abandoned, never waited for again."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported as the cell's status
            box["error"] = exc

    t = threading.Thread(target=target, name=what, daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        frame = sys._current_frames().get(t.ident)
        stack = "".join(traceback.format_stack(frame)) if frame else "(no frame)"
        print(f"{what}: no result after {timeout_s:.0f} s; its thread is stuck at:\n{stack}", file=sys.stderr)
        return None, "timeout"
    if "error" in box:
        exc = box["error"]
        print(f"{what}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None, f"error: {type(exc).__name__}: {str(exc)[:200]}"
    return box["result"], "ok"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=256, help=f"episodes per measurement (a multiple of {SAMPLES})")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=64, help="episodes in flight per shard in (b)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tool-latency", type=float, nargs=2, default=TOOL_LATENCY, metavar=("MIN_S", "MAX_S"),
                    help="tool latency, uniform in [MIN_S, MAX_S] seconds (default: %(default)s)")
    ap.add_argument("--warm-start-steps", type=int, default=150, help="SFT steps of the tiny model (default: 150)")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--scaling-workers", type=_int_list, default=[1, 2, 4], metavar="N,N,...",
                    help="Dask worker counts of the scaling table (default: 1,2,4)")
    ap.add_argument("--scaling-concurrency", type=_int_list, default=[4, 16, 64], metavar="C,C,...",
                    help="episodes in flight per shard in the scaling table (default: 4,16,64)")
    ap.add_argument("--cell-timeout", type=float, default=600.0,
                    help="seconds before a scaling cell is reported as 'timeout' (default: 600)")
    args = ap.parse_args()
    if args.episodes < SAMPLES or args.episodes % SAMPLES:
        ap.error(f"--episodes must be a positive multiple of {SAMPLES} (samples per prompt), got {args.episodes}")
    if not 0 <= args.tool_latency[0] <= args.tool_latency[1]:
        ap.error(f"--tool-latency needs 0 <= MIN_S <= MAX_S, got {args.tool_latency}")
    tool_latency = list(args.tool_latency)
    logging.basicConfig(level=logging.WARNING)
    from distributed import Client, LocalCluster

    from aworld_core.agent.loop import ChatTokens, LoopLimits, load_tokenizer
    from aworld_core.envs.base import build_env
    from aworld_core.inference.server import VLLMServer, find_free_port
    from aworld_core.rollout.shard import ShardSpec, run_shard
    from aworld_core.storage.store import RunStore
    from aworld_core.storage.uri import StorageLocation
    from flows.common import in_process_settings
    from flows.rollout import aworld_rollout
    from tasks.rollout import close_clients

    work = Path(tempfile.mkdtemp(prefix="aworld-speedup-"))
    model = prepare_model(work, args.warm_start_steps)
    loc = StorageLocation(str(work / "runs"))
    prompts = args.episodes // SAMPLES
    server = VLLMServer(model, python=REPO / ".venv-vllm/bin/python", port=find_free_port(),
                        log_path=work / "vllm.log", max_model_len=1024)
    server.start()
    try:
        env = build_env("arithmetic", seed=1234)
        chat = ChatTokens(load_tokenizer(str(model)))
        task = env.tasks("train", 1)[0]
        prompt = chat.prompt_ids([{"role": "system", "content": env.system_prompt()},
                                  {"role": "user", "content": task.question}], [t.schema() for t in env.tools()])
        peak = asyncio.run(server_peak(server.url, prompt))
        print(f"server peak batched generation: {peak:,.0f} tokens/s")

        # (a) sequential, single process
        seq = ShardSpec(run_id="sequential", iteration=0, phase="rollout", shard=0, num_shards=1,
                        env_name="arithmetic", env_params={"tool_latency_s": tool_latency}, env_seed=1234,
                        split="train", num_tasks=prompts, samples_per_task=SAMPLES, endpoints=(server.url,),
                        served_name="policy", tokenizer_dir=str(model), checkpoint_id="warm",
                        limits=LoopLimits(), concurrency=1, storage=loc)
        t0 = time.perf_counter()
        run_shard(seq)
        wall_a = time.perf_counter() - t0
        stats_a = episode_stats(RunStore(loc, "sequential"), "rollout")
        print(f"(a) sequential: {stats_a['episodes']} episodes in {wall_a:.1f} s")

        def flow_run(run_id: str, workers: int, shards: int, concurrency: int, address: str) -> dict:
            overrides = ["serve.mode=external", f"serve.endpoints=[{server.url}]", f"dask.address={address}",
                         f"storage.uri={loc.base}", f"rollout.prompts_per_iteration={prompts}",
                         f"rollout.samples_per_prompt={SAMPLES}", f"rollout.shards={shards}",
                         f"rollout.concurrency={concurrency}", f"env.params.tool_latency_s={tool_latency}"]
            t0, call_start = time.perf_counter(), time.time()
            with in_process_settings():  # as `aworld rollout` calls it
                out = aworld_rollout(config_path=str(REPO / "configs/local.yaml"), overrides=overrides,
                                     checkpoint=str(model), run_id=run_id)
            wall, call_end = time.perf_counter() - t0, time.time()
            store = RunStore(loc, run_id)
            manifests = store.manifests(0, "rollout")
            # time inside shards: from the first shard's start to the last shard's commit (episodes +
            # Parquet writes); the rest of the flow's wall time is Prefect + Dask, split into its parts.
            first = min(m["summary"]["started_at"] for m in manifests)
            last = max(m["committed_at"] for m in manifests)
            timing = out["timing"]
            parts = {"prefect_start_s": timing["body_start"] - call_start, "dispatch_s": first - timing["body_start"],
                     "collect_s": timing["body_end"] - last, "prefect_finish_s": call_end - timing["body_end"]}
            return {"run_id": run_id, "workers": workers, "shards": shards, "concurrency": concurrency,
                    "wall_s": wall, "in_shards_s": last - first, **parts, **episode_stats(store, "rollout")}

        def with_cluster(workers: int):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=8, processes=True, host="127.0.0.1",
                                   dashboard_address=None)
            client = Client(cluster)
            client.run(lambda: __import__("aworld_core.rollout.shard"))  # a long-lived cluster is warm
            client.run(load_tokenizer, str(model))
            return cluster, client

        def close_cluster(cluster, client) -> None:
            """The flow's cached client to this scheduler first (else it keeps reconnecting to a closed
            scheduler), then ours, then the cluster."""
            close_clients(cluster.scheduler_address)
            client.close(timeout=30)
            cluster.close(timeout=60)

        # Steady state, as on a long-lived cluster: Prefect's API is up (its start is a once-per-process
        # cost) and vLLM has already seen full-size batches (its first 256-sequence batch is slow).
        cluster, client = with_cluster(args.workers)
        flow_run("warmup", args.workers, args.shards, args.concurrency, cluster.scheduler_address)
        main_run = flow_run("flow", args.workers, args.shards, args.concurrency, cluster.scheduler_address)
        close_cluster(cluster, client)
        wall_b = main_run["wall_s"]

        # Scaling: one cluster per worker count, reused across its concurrency levels. Every step is
        # bounded: a stuck cell becomes a "timeout" row, its cluster is abandoned and a fresh one made.
        scaling: list[dict] = []
        for workers in [] if args.no_scaling else args.scaling_workers:
            pair = None
            for conc in args.scaling_concurrency:
                cell = {"run_id": f"scale-w{workers}-c{conc}", "workers": workers, "shards": args.shards,
                        "concurrency": conc}
                if pair is None:
                    pair, cell["status"] = bounded(partial(with_cluster, workers), args.cell_timeout,
                                                   f"LocalCluster({workers} workers)")
                if pair is not None:
                    run = partial(flow_run, cell["run_id"], workers, args.shards, conc, pair[0].scheduler_address)
                    r, cell["status"] = bounded(run, args.cell_timeout, cell["run_id"])
                    cell.update(r or {})
                    if cell["status"] != "ok":  # do not reuse a cluster that just failed or hung
                        bounded(partial(close_cluster, *pair), 120, f"closing cluster of {cell['run_id']}")
                        pair = None
                scaling.append(cell)
                print(f"  scaling {workers} workers x {conc} in flight: "
                      + (f"{cell['wall_s']:.2f} s" if cell["status"] == "ok" else cell["status"]), flush=True)
            if pair is not None:
                bounded(partial(close_cluster, *pair), 120, f"closing cluster of {workers} workers")
    finally:
        server.stop()

    tokens = main_run["response_tokens"]
    tool_bound = main_run["max_tool_s"]  # the longest episode's tool time: no concurrency beats it
    server_bound = tokens / peak
    limit = max(tool_bound, server_bound)
    result = {
        "episodes": main_run["episodes"], "tool_latency_s": tool_latency,
        "sequential_wall_s": round(wall_a, 2), "flow_wall_s": round(wall_b, 2),
        "speedup": round(wall_a / wall_b, 2),
        "episodes_per_s_sequential": round(stats_a["episodes"] / wall_a, 2),
        "episodes_per_s_flow": round(main_run["episodes"] / wall_b, 2),
        "tokens_per_s_sequential": round(stats_a["response_tokens"] / wall_a, 1),
        "tokens_per_s_flow": round(tokens / wall_b, 1),
        "server_peak_tokens_per_s": round(peak, 1),
        "server_bound_s": round(server_bound, 2), "tool_bound_s": round(tool_bound, 2),
        "efficiency": round(limit / wall_b, 3),
        "overhead_frac": round(1 - main_run["in_shards_s"] / wall_b, 4),
        "errors": main_run["errors"] + stats_a["errors"],
        "outside_shards_s": {k: round(main_run[k], 3) for k in ("prefect_start_s", "dispatch_s", "collect_s",
                                                                "prefect_finish_s")},
    }
    print(f"\n(b) flow: {main_run['episodes']} episodes in {wall_b:.2f} s "
          f"({main_run['shards']} shards x {main_run['concurrency']} in flight, {main_run['workers']} Dask workers)")
    print("outside shards: " + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {main_run[k]:.2f} s" for k in
                                         ("prefect_start_s", "dispatch_s", "collect_s", "prefect_finish_s")))
    print(f"speedup {result['speedup']}x | efficiency {result['efficiency']:.0%} of max(server bound "
          f"{server_bound:.2f} s, tool bound {tool_bound:.2f} s) | overhead {result['overhead_frac']:.1%}")
    if scaling:
        print(f"\n{'workers':>7} {'in flight/shard':>15} {'wall s':>7} {'episodes/s':>10} {'speedup':>8} {'overhead':>8}")
        for r in scaling:
            if r["status"] != "ok":
                print(f"{r['workers']:>7} {r['concurrency']:>15} {r['status'][:7]:>7}")
                continue
            print(f"{r['workers']:>7} {r['concurrency']:>15} {r['wall_s']:>7.2f} {r['episodes'] / r['wall_s']:>10.1f} "
                  f"{wall_a / r['wall_s']:>8.1f} {1 - r['in_shards_s'] / r['wall_s']:>8.1%}")
        result["scaling"] = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                              if k in ("workers", "concurrency", "status", "wall_s", "in_shards_s", "episodes")}
                             for r in scaling]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
