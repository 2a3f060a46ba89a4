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
Last stdout line: one JSON object.

    .venv/bin/python benchmarks/rollout_speedup.py [--episodes 256] [--no-scaling]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")

SAMPLES = 8
TOOL_LATENCY = [0.2, 1.0]


def prepare_model(workdir: Path) -> Path:
    """A tiny model after a short warm start, so episodes are real multi-turn tool use."""
    from aworld_core.config import WarmStartConfig
    from aworld_core.envs.base import build_env
    from aworld_core.model.tiny import create_tiny_model
    from aworld_core.training.sft import sft_warm_start

    env = build_env("arithmetic", seed=1234)
    base = create_tiny_model(workdir / "base", env)
    return Path(sft_warm_start(base, workdir / "warm", env, WarmStartConfig(steps=150)).checkpoint)


async def server_peak(url: str, prompt_ids: list[int], n: int = 256, max_tokens: int = 32) -> float:
    """Peak generation tokens/s: n concurrent fixed-length completions (ignore_eos)."""
    import httpx

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=n)) as http:
        async def one() -> int:
            r = await http.post(f"{url}/completions", json={
                "model": "policy", "prompt": prompt_ids, "max_tokens": max_tokens, "ignore_eos": True,
                "temperature": 1.0})
            return r.json()["usage"]["completion_tokens"]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=256)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=64, help="episodes in flight per shard in (b)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-scaling", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from distributed import Client, LocalCluster

    from aworld_core.agent.loop import ChatTokens, LoopLimits, load_tokenizer
    from aworld_core.envs.base import build_env
    from aworld_core.inference.server import VLLMServer, find_free_port
    from aworld_core.rollout.shard import ShardSpec, run_shard
    from aworld_core.storage.store import RunStore
    from aworld_core.storage.uri import StorageLocation
    from flows.rollout import aworld_rollout

    work = Path(tempfile.mkdtemp(prefix="aworld-speedup-"))
    model = prepare_model(work)
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
                        env_name="arithmetic", env_params={"tool_latency_s": TOOL_LATENCY}, env_seed=1234,
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
                         f"rollout.concurrency={concurrency}", f"env.params.tool_latency_s={TOOL_LATENCY}"]
            t0 = time.perf_counter()
            aworld_rollout(config_path=str(REPO / "configs/local.yaml"), overrides=overrides,
                           checkpoint=str(model), run_id=run_id)
            wall = time.perf_counter() - t0
            store = RunStore(loc, run_id)
            manifests = store.manifests(0, "rollout")
            # time inside shards: from the first shard's start to the last shard's commit (episodes +
            # Parquet writes); the rest of the flow's wall time is Prefect + Dask.
            in_shards = max(m["committed_at"] for m in manifests) - min(m["summary"]["started_at"] for m in manifests)
            return {"run_id": run_id, "workers": workers, "shards": shards, "concurrency": concurrency,
                    "wall_s": wall, "in_shards_s": in_shards, **episode_stats(store, "rollout")}

        def with_cluster(workers: int):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=8, processes=True, host="127.0.0.1",
                                   dashboard_address=None)
            client = Client(cluster)
            client.run(lambda: __import__("aworld_core.rollout.shard"))  # a long-lived cluster is warm
            client.run(load_tokenizer, str(model))
            return cluster, client

        # Steady state, as on a long-lived cluster: Prefect's API is up (its start is a once-per-process
        # cost) and vLLM has already seen full-size batches (its first 256-sequence batch is slow).
        cluster, client = with_cluster(args.workers)
        flow_run("warmup", args.workers, args.shards, args.concurrency, cluster.scheduler_address)
        main_run = flow_run("flow", args.workers, args.shards, args.concurrency, cluster.scheduler_address)
        client.close()
        cluster.close()
        wall_b = main_run["wall_s"]

        scaling = []
        if not args.no_scaling:
            for workers in (1, 2, 4):
                cluster, client = with_cluster(workers)
                for conc in (4, 16, 64):
                    r = flow_run(f"scale-w{workers}-c{conc}", workers, 4, conc, cluster.scheduler_address)
                    scaling.append(r)
                client.close()
                cluster.close()
    finally:
        server.stop()

    tokens = main_run["response_tokens"]
    tool_bound = main_run["max_tool_s"]  # the longest episode's tool time: no concurrency beats it
    server_bound = tokens / peak
    limit = max(tool_bound, server_bound)
    result = {
        "episodes": main_run["episodes"], "tool_latency_s": TOOL_LATENCY,
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
    }
    print(f"\n(b) flow: {main_run['episodes']} episodes in {wall_b:.2f} s "
          f"({main_run['shards']} shards x {main_run['concurrency']} in flight, {main_run['workers']} Dask workers)")
    print(f"speedup {result['speedup']}x | efficiency {result['efficiency']:.0%} of max(server bound "
          f"{server_bound:.2f} s, tool bound {tool_bound:.2f} s) | overhead {result['overhead_frac']:.1%}")
    if scaling:
        print(f"\n{'workers':>7} {'in flight/shard':>15} {'wall s':>7} {'episodes/s':>10} {'speedup':>8} {'overhead':>8}")
        for r in scaling:
            print(f"{r['workers']:>7} {r['concurrency']:>15} {r['wall_s']:>7.2f} {r['episodes'] / r['wall_s']:>10.1f} "
                  f"{wall_a / r['wall_s']:>8.1f} {1 - r['in_shards_s'] / r['wall_s']:>8.1%}")
        result["scaling"] = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                              if k in ("workers", "concurrency", "wall_s", "in_shards_s", "episodes")} for r in scaling]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
