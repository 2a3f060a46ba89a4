"""An iteration's data in verl's dataset formats: RL prompts and multi-turn SFT conversations.

Two Parquet files per exported iteration (``aworld export verl RUN --iteration I --out DIR``):

``rl.parquet`` (verl's RL dataset, read by ``verl.utils.dataset.rl_dataset.RLHFDataset``), one row
per task of the iteration (a GRPO group; verl draws ``rollout.n`` samples per row itself):

* ``prompt``: the chat messages the episode started from (system + user), as verl's ``prompt_key``;
* ``data_source``: ``aworld/<environment>``;
* ``ability``: ``tool_use``;
* ``reward_model``: ``{"style": "rule", "ground_truth": <the task's answer>}``;
* ``extra_info``: ``index``, ``task_id``, ``split``, ``question``, ``task_meta`` (JSON),
  ``environment``, ``env_seed``,
  ``env_params`` (JSON), ``tools`` (JSON list of OpenAI tool schemas), ``run_id``, ``iteration``,
  ``max_turns``: enough for :mod:`aworld_core.integrations.verl_agent_loop` to rebuild the
  environment, its tools and the verifier on a verl cluster;
* ``agent_name``: the registered verl agent loop that plays these rows (``aworld_tool_agent``).

``sft.parquet`` (verl's multi-turn SFT format, read by
``verl.utils.dataset.multiturn_sft_dataset.MultiTurnSFTDataset``), successful trajectories only
(rejection sampling): ``messages`` (OpenAI-style list), ``tools`` (the tool schemas, as structs),
plus ``task_id``/``episode_id``/``reward`` for provenance. Assistant messages carry the exact text the
model sampled, tool calls included as it wrote them; the parsed ``tool_calls`` field our loop keeps
for analysis is dropped, because the chat template would render the calls a second time.

Ground truth is not stored with episodes: tasks are rebuilt from the run's ``config.json`` (the
environment is a pure function of its name, seed and parameters; the rollout phase of iteration ``i``
draws ``prompts_per_iteration`` train tasks from offset ``i * prompts_per_iteration``), and every
rebuilt question is checked against the stored one.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from aworld_core.envs.base import Environment, Task, build_env
from aworld_core.errors import StorageError

log = logging.getLogger(__name__)

AGENT_NAME = "aworld_tool_agent"
RL_FILE, SFT_FILE = "rl.parquet", "sft.parquet"


class ExportError(StorageError):
    """The run's data cannot be turned into verl's formats (missing iteration, unknown tasks)."""


@dataclass(frozen=True)
class EnvSpec:
    """How the run built its environment (from its config.json)."""

    name: str
    seed: int
    params: dict[str, Any]
    prompts_per_iteration: int | None = None
    eval_episodes: int | None = None
    max_turns: int | None = None

    def build(self) -> Environment:
        return build_env(self.name, seed=self.seed, **self.params)


@dataclass
class ExportResult:
    rl_path: str
    sft_path: str
    rl_rows: int
    sft_rows: int
    episodes: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def env_spec_from_config(config: dict[str, Any] | None, episodes: pa.Table) -> EnvSpec:
    """The run's environment; without a config.json, the environment's defaults (checked later)."""
    if config and "env" in config:
        env = config["env"]
        return EnvSpec(env["name"], int(env.get("seed", 0)), dict(env.get("params") or {}),
                       (config.get("rollout") or {}).get("prompts_per_iteration"),
                       (config.get("eval") or {}).get("episodes"), (config.get("agent") or {}).get("max_turns"))
    names = set(episodes.column("environment").to_pylist())
    if len(names) != 1:
        raise ExportError(f"run has no config.json and its episodes name {sorted(names)} environments")
    from aworld_core.config import EnvConfig

    return EnvSpec(names.pop(), EnvConfig().seed, {})


def rebuild_tasks(spec: EnvSpec, env: Environment, episodes: pa.Table, iteration: int, phase: str) -> dict[str, Task]:
    """task_id -> Task (with ground truth) for the tasks of ``episodes``, as the recipe drew them."""
    stored = dict(zip(episodes.column("task_id").to_pylist(), episodes.column("question").to_pylist()))
    if phase == "rollout":
        n = spec.prompts_per_iteration or len(stored)
        split, offset = "train", iteration * n
    else:
        split, offset, n = "heldout", 0, spec.eval_episodes or len(stored)
    tasks = {t.task_id: t for t in env.tasks(split, n, offset)}
    missing = sorted(set(stored) - set(tasks))
    wrong = sorted(tid for tid, q in stored.items() if tid in tasks and tasks[tid].question != q)
    if missing or wrong:
        raise ExportError(
            f"cannot rebuild the tasks of iteration {iteration} ({phase}) from environment {spec.name!r} "
            f"(seed {spec.seed}, params {spec.params}): {len(missing)} task ids unknown "
            f"{missing[:3]}, {len(wrong)} questions differ {wrong[:3]}; the run's config.json must "
            f"describe the environment it ran")
    return {tid: tasks[tid] for tid in stored}


def _prompt_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages before the first assistant turn (system + user)."""
    out = []
    for m in messages:
        if m["role"] == "assistant":
            break
        out.append({"role": m["role"], "content": m.get("content") or ""})
    return out


def rl_rows(episodes: pa.Table, tasks: dict[str, Task], spec: EnvSpec, tools: list[dict[str, Any]],
            agent_name: str = AGENT_NAME) -> list[dict[str, Any]]:
    """One verl RL row per task (in first-seen order)."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    tools_json = json.dumps(tools)  # key order kept: the chat template renders it as is
    for ep in episodes.select(["task_id", "messages", "run_id", "iteration", "split", "environment"]).to_pylist():
        tid = ep["task_id"]
        if tid in seen:
            continue
        seen.add(tid)
        task = tasks[tid]
        rows.append({
            "data_source": f"aworld/{ep['environment']}",
            "prompt": _prompt_messages(json.loads(ep["messages"])),
            "ability": "tool_use",
            "reward_model": {"style": "rule", "ground_truth": task.answer},
            "extra_info": {"index": len(rows), "task_id": tid, "split": task.split, "question": task.question,
                           "task_meta": json.dumps(task.meta, sort_keys=True, default=str),
                           "environment": spec.name, "env_seed": spec.seed,
                           "env_params": json.dumps(spec.params, sort_keys=True), "tools": tools_json,
                           "run_id": ep["run_id"], "iteration": int(ep["iteration"]),
                           "max_turns": int(spec.max_turns or 0)},
            "agent_name": agent_name,
        })
    return rows


def _sft_message(m: dict[str, Any]) -> dict[str, Any]:
    out = {"role": m["role"], "content": m.get("content") or ""}
    if m["role"] == "tool":
        out["tool_call_id"] = m.get("tool_call_id") or ""
        out["name"] = m.get("name") or ""
    return out


def sft_rows(episodes: pa.Table, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """verl multi-turn SFT rows from the successful episodes (rejection sampling)."""
    rows = []
    cols = ["episode_id", "task_id", "messages", "reward", "success", "stop_reason"]
    for ep in episodes.select(cols).to_pylist():
        if not ep["success"] or ep["stop_reason"] == "error":
            continue
        rows.append({"messages": [_sft_message(m) for m in json.loads(ep["messages"])], "tools": tools,
                     "task_id": ep["task_id"], "episode_id": ep["episode_id"], "reward": float(ep["reward"])})
    return rows


def write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows atomically (tmp file + rename); an empty list writes a file with no rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_iteration(location, run_id: str, iteration: int, out_dir: Path, phase: str = "rollout",
                     agent_name: str = AGENT_NAME) -> ExportResult:
    """Write ``rl.parquet`` and ``sft.parquet`` for one iteration of a stored run under ``out_dir``."""
    from aworld_core.storage.store import RunStore

    store = RunStore(location, run_id)
    episodes = store.read("episodes", iteration=iteration, phase=phase)
    if episodes.num_rows == 0:
        its = sorted({m["iteration"] for m in store.manifests(phase=phase)})
        raise ExportError(f"run {run_id!r} has no committed {phase} episodes for iteration {iteration} "
                          f"at {store.display()}; iterations with {phase} data: {its or 'none'}")
    spec = env_spec_from_config(store.read_json("config.json"), episodes)
    env = spec.build()
    tasks = rebuild_tasks(spec, env, episodes, iteration, phase)
    tools = [t.schema() for t in env.tools()]
    rl = rl_rows(episodes, tasks, spec, tools, agent_name)
    sft = sft_rows(episodes, tools)
    out_dir = Path(out_dir)
    rl_path = write_parquet(rl, out_dir / RL_FILE)
    sft_path = write_parquet(sft, out_dir / SFT_FILE)
    if not sft:
        log.warning("iteration %d has no successful episodes: %s has no rows", iteration, sft_path)
    return ExportResult(str(rl_path), str(sft_path), len(rl), len(sft), episodes.num_rows)
