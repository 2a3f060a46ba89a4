"""GAIA evaluation of any OpenAI-compatible endpoint: shards of chat episodes -> Parquet -> a report.

The shape mirrors rollouts (``aworld_core/rollout/shard.py``): the (task, sample) pairs of a
selection are dealt round-robin into shards; a shard is one Dask task whose event loop keeps
``concurrency`` episodes in flight (an episode mostly waits on the model and its tools), and ends with
one atomic commit. A committed shard is skipped when the run is repeated, so a crashed evaluation
resumes where it stopped without duplicating rows.

Layout under ``<storage uri>/<run_id>/gaia/<split>/``::

    results/shard-00003.parquet       one row per episode (RESULTS_SCHEMA)
    transcripts/shard-00003.jsonl     one JSON object per episode: messages, turns, tool calls
    _commits/shard-00003.json         the commit marker, written last, listing both files
    config.json, report.json          the evaluation's settings (no secrets) and its summary

Ground truth never leaves this module except as the boolean ``correct``: answers are not logged,
not written to Parquet or transcripts, and not part of any exception message. Model answers are
not logged either (a correct one *is* the ground truth).

Every episode gets its own scratch working directory holding a copy of its attachment: ``read_file``
can read only there, ``read_file`` extracts archives there, and ``python_exec`` sees its files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import shutil
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aworld_core.agent.chat_loop import ChatClient, ChatEpisodeResult, ChatLimits, run_chat_episode
from aworld_core.errors import ConfigError, StorageError
from aworld_core.evaluation.gaia_dataset import BenchmarkTask, load_gaia
from aworld_core.evaluation.gaia_scoring import question_scorer
from aworld_core.storage.store import RunStore
from aworld_core.storage.uri import StorageLocation
from aworld_core.tools import calculator as _calculator  # noqa: F401  (registers "calculator" by name)
from aworld_core.tools.base import Tool, build_tool, registered_tools
from aworld_core.tools.cache import CachedTool, CacheMode, ToolCache
from aworld_core.tools.python_exec import PythonExecTool
from aworld_core.tools.readers import ReadFileTool
from aworld_core.tools.sandbox import SandboxLimits
from aworld_core.tools.web import FetchPageTool, WebSearchTool

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TOOLS",
    "GaiaEvalConfig",
    "GaiaReport",
    "GaiaShardSpec",
    "GaiaShardSummary",
    "LevelStats",
    "RESULTS_SCHEMA",
    "ToolCacheConfig",
    "build_task_tools",
    "check_endpoint",
    "evaluate",
    "load_results",
    "new_run_id",
    "pass_at_k",
    "plan_shards",
    "preflight",
    "run_gaia_shard",
    "select_tasks",
    "summarize",
]

DEFAULT_TOOLS: tuple[str, ...] = ("read_file", "python_exec", "web_search", "fetch_page")

RESULTS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("split", pa.string()), ("task_id", pa.string()), ("level", pa.int8()),
    ("sample_index", pa.int32()), ("model", pa.string()), ("answer", pa.string()),
    ("correct", pa.bool_()),  # null when the split publishes no answer (test)
    ("stop_reason", pa.string()), ("turns", pa.int32()), ("tool_calls", pa.int32()),
    ("tool_errors", pa.int32()), ("tool_error_tools", pa.list_(pa.string())),
    ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("latency_s", pa.float64()),
    ("model_s", pa.float64()), ("tool_s", pa.float64()), ("error", pa.string()), ("shard", pa.int32()),
])


# --------------------------------------------------------------------------------------------------
# Configuration.


class ToolCacheConfig(BaseModel):
    """Where tool results are cached and how (see ``aworld_core/tools/cache.py``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: CacheMode = "off"
    directory: str | None = Field(None, description="default: <storage>/<run_id>/gaia/tool_cache (local storage only)")
    tools: tuple[str, ...] = ("web_search", "fetch_page")


class GaiaEvalConfig(BaseModel):
    """Everything an evaluation needs; plain data, so it pickles to any Dask worker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    dataset: str = Field(description="folder holding GAIA (ROOT/2023/<split>/metadata.jsonl, or any accepted layout)")
    split: Literal["validation", "test"] = "validation"
    levels: tuple[int, ...] | None = None
    task_ids: tuple[str, ...] | None = None
    endpoint: str = Field(description="OpenAI base URL, e.g. http://127.0.0.1:8000/v1")
    model: str
    api_key_env: str | None = Field(None, description="name of the env var holding the API key (never its value)")
    samples: int = Field(1, ge=1, description="k: episodes per task")
    shards: int = Field(1, ge=1)
    concurrency: int = Field(4, ge=1, description="episodes in flight inside one shard")
    storage_uri: str = "runs"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    limits: ChatLimits = ChatLimits()
    tools: tuple[str, ...] = DEFAULT_TOOLS
    sandbox: SandboxLimits = SandboxLimits(wall_time_s=30.0, cpu_time_s=30, memory_mb=1024)
    cache: ToolCacheConfig = ToolCacheConfig()
    scratch_dir: str | None = Field(None, description="per-episode working dirs; default: the system temp dir")
    keep_workdirs: bool = False
    request_timeout_s: float = Field(300.0, gt=0)
    max_attempts: int = Field(5, ge=1)

    @field_validator("run_id")
    @classmethod
    def _run_id_is_a_path_segment(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", v):
            raise ValueError("run_id may contain only letters, digits, '.', '_' and '-' (max 128)")
        return v

    @field_validator("levels")
    @classmethod
    def _levels_are_gaia_levels(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and any(level not in (1, 2, 3) for level in v):
            raise ValueError(f"levels must be among 1, 2, 3, got {list(v)}")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_http(cls, v: str) -> str:
        if not re.match(r"^https?://", v):
            raise ValueError("endpoint must start with http:// or https:// (the OpenAI base URL, ending in /v1)")
        return v.rstrip("/")

    def location(self) -> StorageLocation:
        return StorageLocation(self.storage_uri, self.s3_endpoint_url, self.s3_region)

    def store(self) -> RunStore:
        return RunStore(self.location(), self.run_id)

    def public_dict(self) -> dict[str, Any]:
        """The settings as JSON (the API key is only ever referred to by its variable's name)."""
        return json.loads(self.model_dump_json())


def new_run_id(prefix: str = "gaia") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def select_tasks(cfg: GaiaEvalConfig) -> list[BenchmarkTask]:
    """The tasks of the configured split/levels/ids, in metadata order (DatasetNotFound if absent)."""
    tasks = load_gaia(cfg.dataset, split=cfg.split, levels=list(cfg.levels) if cfg.levels else None,
                      task_ids=list(cfg.task_ids) if cfg.task_ids else None)
    if not tasks:
        raise ConfigError(f"no {cfg.split} tasks match levels={list(cfg.levels or [])} "
                          f"task_ids={list(cfg.task_ids or [])} under {cfg.dataset}")
    return tasks


# --------------------------------------------------------------------------------------------------
# Shards.


@dataclass(frozen=True)
class GaiaShardSpec:
    config: GaiaEvalConfig
    shard: int
    num_shards: int
    items: tuple[tuple[str, int], ...]  # (task_id, sample_index)

    @property
    def rel_prefix(self) -> str:
        return f"gaia/{self.config.split}"

    def rel(self, table: str, ext: str) -> str:
        return f"{self.rel_prefix}/{table}/shard-{self.shard:05d}.{ext}"


@dataclass
class GaiaShardSummary:
    shard: int
    episodes: int
    scored: int
    correct: int
    errors: int
    tool_errors: int
    wall_s: float
    skipped: bool = False
    stop_reasons: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, m: dict[str, Any]) -> "GaiaShardSummary":
        s = m.get("summary", {})
        return cls(shard=m["shard"], episodes=s.get("episodes", 0), scored=s.get("scored", 0),
                   correct=s.get("correct", 0), errors=s.get("errors", 0), tool_errors=s.get("tool_errors", 0),
                   wall_s=0.0, skipped=True, stop_reasons=s.get("stop_reasons", {}))


def plan_shards(cfg: GaiaEvalConfig, tasks: Sequence[BenchmarkTask] | None = None) -> list[GaiaShardSpec]:
    """Deal (task, sample) pairs round-robin into ``cfg.shards`` shards (fewer if there is less work)."""
    tasks = list(tasks) if tasks is not None else select_tasks(cfg)
    items = [(t.task_id, s) for s in range(cfg.samples) for t in tasks]
    n = max(1, min(cfg.shards, len(items)))
    return [GaiaShardSpec(cfg, i, n, tuple(items[i::n])) for i in range(n)]


TaskToolFactory = Callable[[GaiaEvalConfig, BenchmarkTask, Path], Tool]
TASK_TOOL_FACTORIES: dict[str, TaskToolFactory] = {
    "read_file": lambda cfg, task, wd: ReadFileTool(wd, max_chars=cfg.limits.max_observation_chars),
    "python_exec": lambda cfg, task, wd: PythonExecTool(wd, cfg.sandbox, max_chars=cfg.limits.max_observation_chars),
    "web_search": lambda cfg, task, wd: WebSearchTool(max_chars=cfg.limits.max_observation_chars),
    "fetch_page": lambda cfg, task, wd: FetchPageTool(max_chars=cfg.limits.max_observation_chars),
}
#: Tools whose answers depend only on the request (shared across tasks in the cache); others are task-scoped.
GLOBAL_TOOLS = frozenset({"web_search", "fetch_page"})


def build_task_tools(cfg: GaiaEvalConfig, task: BenchmarkTask, workdir: Path, cache: ToolCache | None) -> list[Tool]:
    """The episode's tools: task-aware ones bound to ``workdir``, others from the registry by name."""
    tools: list[Tool] = []
    for name in cfg.tools:
        factory = TASK_TOOL_FACTORIES.get(name)
        tool = factory(cfg, task, workdir) if factory is not None else build_tool(name)
        if cache is not None and name in cfg.cache.tools:
            tool = CachedTool(tool, cache, scope="" if name in GLOBAL_TOOLS else task.task_id)
        tools.append(tool)
    return tools


def _cache_for(cfg: GaiaEvalConfig) -> ToolCache | None:
    if cfg.cache.mode == "off":
        return None
    directory = cfg.cache.directory
    if directory is None:
        if cfg.location().is_s3:
            raise ConfigError("the tool cache is a local SQLite file: set cache.directory when storage is on S3")
        directory = str(Path(cfg.location().join(cfg.run_id, "gaia", "tool_cache")))
    return ToolCache(directory, cfg.cache.mode)


def _make_workdir(cfg: GaiaEvalConfig, task: BenchmarkTask, sample: int) -> Path:
    base = Path(cfg.scratch_dir).expanduser() if cfg.scratch_dir else Path(tempfile.gettempdir()) / "aworld-gaia"
    workdir = base / cfg.run_id / f"{task.task_id}-s{sample}-{uuid.uuid4().hex[:6]}"
    workdir.mkdir(parents=True, exist_ok=False)
    if task.file_path is not None and task.file_name:
        shutil.copy2(task.file_path, workdir / Path(task.file_name).name)
    return workdir


def run_gaia_shard(spec: GaiaShardSpec) -> GaiaShardSummary:
    """Run one shard's episodes, commit its results and transcripts; skip it if already committed."""
    cfg, store = spec.config, spec.config.store()
    manifest = store.read_json(spec.rel("_commits", "json"))
    if manifest is not None:
        if manifest.get("num_shards") != spec.num_shards:
            raise StorageError(f"run {cfg.run_id} already holds {cfg.split} results cut into "
                               f"{manifest.get('num_shards')} shards, not {spec.num_shards}; use a new run id or "
                               "the same number of shards to resume")
        log.info("gaia shard %d of run %s already committed; skipping", spec.shard, cfg.run_id)
        return GaiaShardSummary.from_manifest(manifest)
    t0 = time.perf_counter()
    tasks = {t.task_id: t for t in select_tasks(cfg)}
    missing = [tid for tid, _ in spec.items if tid not in tasks]
    if missing:
        raise ConfigError(f"shard {spec.shard}: tasks {sorted(set(missing))[:5]} are not in {cfg.dataset} "
                          "(was the dataset changed between planning and running?)")
    outcomes = asyncio.run(_run_episodes(cfg, tasks, spec.items))
    rows, lines = [], []
    for task, sample, result in outcomes:
        correct = None if task.final_answer is None else question_scorer(result.answer, task.final_answer)
        rows.append(_row(cfg, spec.shard, task, sample, result, correct))
        lines.append(json.dumps({"run_id": cfg.run_id, "split": cfg.split, "sample_index": sample,
                                 "correct": correct, **result.to_record()}, ensure_ascii=False, default=str))
    summary = GaiaShardSummary(
        shard=spec.shard, episodes=len(rows), scored=sum(r["correct"] is not None for r in rows),
        correct=sum(bool(r["correct"]) for r in rows), errors=sum(r["error"] is not None for r in rows),
        tool_errors=sum(r["tool_errors"] for r in rows), wall_s=time.perf_counter() - t0,
        stop_reasons=dict(Counter(r["stop_reason"] for r in rows)))
    _commit(store, spec, rows, lines, summary)
    log.info("gaia shard %d of run %s: %d episodes, %d of %d scored correct, %d errors, %d tool errors, %.1f s",
             spec.shard, cfg.run_id, summary.episodes, summary.correct, summary.scored, summary.errors,
             summary.tool_errors, summary.wall_s)
    return summary


async def _run_episodes(cfg: GaiaEvalConfig, tasks: dict[str, BenchmarkTask],
                        items: Sequence[tuple[str, int]]) -> list[tuple[BenchmarkTask, int, ChatEpisodeResult]]:
    cache = _cache_for(cfg)
    gate = asyncio.Semaphore(cfg.concurrency)
    async with ChatClient(cfg.endpoint, cfg.model, api_key_env=cfg.api_key_env, timeout_s=cfg.request_timeout_s,
                          max_attempts=cfg.max_attempts, max_connections=cfg.concurrency + 4) as client:

        async def one(task_id: str, sample: int) -> tuple[BenchmarkTask, int, ChatEpisodeResult]:
            task = tasks[task_id]
            async with gate:
                t0 = time.perf_counter()
                workdir = await asyncio.to_thread(_make_workdir, cfg, task, sample)
                try:
                    tools = build_task_tools(cfg, task, workdir, cache)
                    result = await run_chat_episode(client, task, tools, cfg.limits, sample_index=sample)
                except Exception as exc:  # a bug in one episode must not lose the shard
                    log.exception("task %s sample %d crashed", task_id, sample)
                    result = ChatEpisodeResult(task_id=task_id, level=task.level, messages=[], turns=[],
                                               tool_calls=[], answer=None, stop_reason="error",
                                               error=f"{type(exc).__name__}: {exc}",
                                               total_s=time.perf_counter() - t0)
                finally:
                    if not cfg.keep_workdirs:
                        await asyncio.to_thread(shutil.rmtree, workdir, True)
            return task, sample, result

        return list(await asyncio.gather(*(one(tid, s) for tid, s in items)))


def _row(cfg: GaiaEvalConfig, shard: int, task: BenchmarkTask, sample: int, r: ChatEpisodeResult,
         correct: bool | None) -> dict[str, Any]:
    return {"run_id": cfg.run_id, "split": cfg.split, "task_id": task.task_id, "level": task.level,
            "sample_index": sample, "model": cfg.model, "answer": r.answer, "correct": correct,
            "stop_reason": r.stop_reason, "turns": len(r.turns), "tool_calls": len(r.tool_calls),
            "tool_errors": r.tool_errors, "tool_error_tools": [c.name for c in r.tool_calls if c.error is not None],
            "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "latency_s": r.total_s,
            "model_s": r.model_s, "tool_s": r.tool_s, "error": r.error, "shard": shard}


# --------------------------------------------------------------------------------------------------
# Storage: atomic files next to the RunStore's tables (its TABLES are for training data).


def write_atomic(store: RunStore, rel: str, payload: bytes) -> None:
    """Write ``payload`` to ``rel`` under the run: temp file + rename locally, one PUT on S3."""
    path = store.path(rel)
    try:
        store.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if store.location.is_s3:
            with store.fs.open_output_stream(path) as f:
                f.write(payload)
            return
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with store.fs.open_output_stream(tmp) as f:
            f.write(payload)
        store.fs.move(tmp, path)
    except OSError as exc:
        raise StorageError(f"could not write {store.display(rel)}: {exc}") from exc


def read_bytes(store: RunStore, rel: str) -> bytes | None:
    try:
        with store.fs.open_input_stream(store.path(rel)) as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        if "NoSuchKey" in str(exc) or "not found" in str(exc).lower():
            return None
        raise


def _commit(store: RunStore, spec: GaiaShardSpec, rows: list[dict[str, Any]], lines: list[str],
            summary: GaiaShardSummary) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA), sink, compression="zstd")
    files = {"results": spec.rel("results", "parquet"), "transcripts": spec.rel("transcripts", "jsonl")}
    write_atomic(store, files["results"], sink.getvalue().to_pybytes())
    write_atomic(store, files["transcripts"], ("\n".join(lines) + "\n").encode("utf-8"))
    manifest = {"run_id": spec.config.run_id, "split": spec.config.split, "shard": spec.shard,
                "num_shards": spec.num_shards, "files": files, "rows": len(rows), "committed_at": time.time(),
                "summary": {k: v for k, v in summary.__dict__.items() if k not in ("shard", "skipped", "wall_s")}}
    write_atomic(store, spec.rel("_commits", "json"), json.dumps(manifest).encode())


def _manifests(store: RunStore, split: str) -> list[dict[str, Any]]:
    selector = pafs.FileSelector(store.path(f"gaia/{split}/_commits"), recursive=False, allow_not_found=True)
    out = []
    for info in store.fs.get_file_info(selector):
        if info.type == pafs.FileType.File and info.path.endswith(".json"):
            with store.fs.open_input_stream(info.path) as f:
                out.append(json.loads(f.read()))
    return sorted(out, key=lambda m: m["shard"])


def load_results(storage_uri: str | StorageLocation, run_id: str, split: str = "validation") -> pa.Table:
    """All committed result rows of a run (an empty table with RESULTS_SCHEMA when there are none)."""
    location = storage_uri if isinstance(storage_uri, StorageLocation) else StorageLocation(storage_uri)
    store = RunStore(location, run_id)
    tables = []
    for m in _manifests(store, split):
        with store.fs.open_input_file(store.path(m["files"]["results"])) as f:
            tables.append(pq.read_table(f).cast(RESULTS_SCHEMA))
    return pa.concat_tables(tables) if tables else RESULTS_SCHEMA.empty_table()


def load_transcripts(storage_uri: str | StorageLocation, run_id: str, split: str = "validation") -> list[dict[str, Any]]:
    location = storage_uri if isinstance(storage_uri, StorageLocation) else StorageLocation(storage_uri)
    store = RunStore(location, run_id)
    out: list[dict[str, Any]] = []
    for m in _manifests(store, split):
        data = read_bytes(store, m["files"]["transcripts"]) or b""
        out += [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    return out


# --------------------------------------------------------------------------------------------------
# The report.


class LevelStats(BaseModel):
    """Scores of one level (or ``all``). Fractions are None when nothing was scorable (test split)."""

    level: str
    tasks: int
    episodes: int
    scored: int
    correct: int
    accuracy: float | None  # correct / scored episodes
    pass_at_k: float | None  # mean over tasks of the unbiased pass@k estimate
    avg_at_k: float | None  # mean over tasks of (correct samples / samples)


class GaiaReport(BaseModel):
    """The summary of one evaluation run; JSON-able, never holds an answer."""

    run_id: str
    model: str
    split: str
    k: int
    tasks: int
    episodes: int
    overall: LevelStats
    levels: list[LevelStats]
    prompt_tokens: int
    completion_tokens: int
    mean_prompt_tokens: float
    mean_completion_tokens: float
    latency_p50_s: float
    latency_p95_s: float
    tool_calls: int
    tool_errors: int
    tool_errors_by_tool: dict[str, int]
    stop_reasons: dict[str, int]
    episode_errors: int
    per_task: dict[str, float | None] = Field(description="task id -> fraction of samples correct")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021); k is capped at n."""
    k = min(k, n)
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _level_stats(name: str, rows: list[dict[str, Any]], k: int) -> LevelStats:
    by_task: dict[str, list[bool | None]] = defaultdict(list)
    for r in rows:
        by_task[r["task_id"]].append(r["correct"])
    scored_tasks = {t: [c for c in cs if c is not None] for t, cs in by_task.items()}
    scored_tasks = {t: cs for t, cs in scored_tasks.items() if cs}
    scored = sum(len(cs) for cs in scored_tasks.values())
    correct = sum(sum(cs) for cs in scored_tasks.values())
    if scored_tasks:
        pk = sum(pass_at_k(len(cs), sum(cs), k) for cs in scored_tasks.values()) / len(scored_tasks)
        ak = sum(sum(cs) / len(cs) for cs in scored_tasks.values()) / len(scored_tasks)
    else:
        pk = ak = None
    return LevelStats(level=name, tasks=len(by_task), episodes=len(rows), scored=scored, correct=correct,
                      accuracy=correct / scored if scored else None, pass_at_k=pk, avg_at_k=ak)


def summarize(table: pa.Table, k: int | None = None, run_id: str | None = None, model: str | None = None,
              split: str | None = None) -> GaiaReport:
    """Aggregate result rows into a ``GaiaReport`` (accuracy, pass@k/avg@k per level, costs, errors)."""
    rows = table.to_pylist()
    if k is None:
        per_task = Counter(r["task_id"] for r in rows)
        k = max(per_task.values(), default=1)
    levels = sorted({r["level"] for r in rows})
    latencies = [r["latency_s"] for r in rows]
    tool_errors_by_tool: Counter[str] = Counter()
    for r in rows:
        tool_errors_by_tool.update(name or "(unparsed call)" for name in (r["tool_error_tools"] or []))
    per_task_frac: dict[str, float | None] = {}
    grouped: dict[str, list[bool | None]] = defaultdict(list)
    for r in rows:
        grouped[r["task_id"]].append(r["correct"])
    for tid, cs in grouped.items():
        scored = [c for c in cs if c is not None]
        per_task_frac[tid] = sum(scored) / len(scored) if scored else None
    n = max(len(rows), 1)
    first = rows[0] if rows else {}
    return GaiaReport(
        run_id=run_id or first.get("run_id", ""), model=model or first.get("model", ""),
        split=split or first.get("split", ""), k=k, tasks=len(grouped), episodes=len(rows),
        overall=_level_stats("all", rows, k),
        levels=[_level_stats(str(lv), [r for r in rows if r["level"] == lv], k) for lv in levels],
        prompt_tokens=sum(r["prompt_tokens"] for r in rows),
        completion_tokens=sum(r["completion_tokens"] for r in rows),
        mean_prompt_tokens=sum(r["prompt_tokens"] for r in rows) / n,
        mean_completion_tokens=sum(r["completion_tokens"] for r in rows) / n,
        latency_p50_s=_percentile(latencies, 50), latency_p95_s=_percentile(latencies, 95),
        tool_calls=sum(r["tool_calls"] for r in rows), tool_errors=sum(r["tool_errors"] for r in rows),
        tool_errors_by_tool=dict(sorted(tool_errors_by_tool.items())),
        stop_reasons=dict(sorted(Counter(r["stop_reason"] for r in rows).items())),
        episode_errors=sum(r["error"] is not None for r in rows), per_task=per_task_frac)


def write_report(cfg: GaiaEvalConfig, report: GaiaReport) -> str:
    """Store ``report.json`` beside the results; returns where."""
    store = cfg.store()
    rel = f"gaia/{cfg.split}/report.json"
    write_atomic(store, rel, report.model_dump_json(indent=2).encode())
    return store.display(rel)


def load_report(storage_uri: str, run_id: str, split: str = "validation") -> GaiaReport | None:
    data = read_bytes(RunStore(StorageLocation(storage_uri), run_id), f"gaia/{split}/report.json")
    return None if data is None else GaiaReport.model_validate_json(data)


def write_config(cfg: GaiaEvalConfig) -> None:
    cfg.store().write_json(f"gaia/{cfg.split}/config.json", cfg.public_dict())


# --------------------------------------------------------------------------------------------------
# End to end, without Prefect.


def check_endpoint(endpoint: str, model: str, api_key_env: str | None = None) -> list[str]:
    """``GET {endpoint}/models``: the served model ids. Raises EndpointUnreachable (or ConfigError for a
    missing API key variable) so nothing starts against a server that is not there. A model name not in
    the list is only logged: gateways often serve aliases they do not list."""

    async def ask() -> list[str]:
        async with ChatClient(endpoint, model, api_key_env=api_key_env, max_attempts=1) as client:
            return await client.list_models()

    models = asyncio.run(ask())
    if models and model not in models:
        log.warning("model %r is not among the %d model(s) %s lists (%s); trying it anyway", model, len(models),
                    endpoint, ", ".join(models[:10]))
    return models


def preflight(cfg: GaiaEvalConfig) -> list[BenchmarkTask]:
    """Fail fast, before any cluster starts: tools exist, the dataset is readable, the endpoint answers."""
    unknown = [name for name in cfg.tools if name not in TASK_TOOL_FACTORIES and name not in registered_tools()]
    if unknown:
        raise ConfigError(f"unknown tool(s) {unknown}; available: {sorted(set(TASK_TOOL_FACTORIES) | set(registered_tools()))}")
    tasks = select_tasks(cfg)
    check_endpoint(cfg.endpoint, cfg.model, cfg.api_key_env)
    if "web_search" in cfg.tools and cfg.cache.mode != "replay_only":
        probe = WebSearchTool()
        if probe.provider is None:
            log.warning("web_search has no provider configured, so each call will return an error: %s",
                        probe.config_error)
    return tasks


def evaluate(cfg: GaiaEvalConfig, dask_address: str | None = None, n_threads: int | None = None) -> GaiaReport:
    """Evaluate ``cfg`` on a Dask cluster (``dask_address``, or an in-process LocalCluster) and report.

    One Dask task per shard; returns the summary, also stored as ``report.json`` beside the results.
    """
    from distributed import Client, LocalCluster

    tasks = preflight(cfg)
    specs = plan_shards(cfg, tasks)
    write_config(cfg)
    log.info("gaia evaluation %s: %d tasks x %d samples in %d shard(s) against %s (model %s)", cfg.run_id,
             len(tasks), cfg.samples, len(specs), cfg.endpoint, cfg.model)
    cluster = None
    if dask_address is None:
        cluster = LocalCluster(n_workers=1, threads_per_worker=n_threads or min(len(specs), 8), processes=False,
                               dashboard_address=":0")
        dask_address = cluster.scheduler_address
    try:
        with Client(dask_address, set_as_default=False) as client:
            futures = [client.submit(run_gaia_shard, s, key=f"gaia-{cfg.run_id}-s{s.shard}", pure=False)
                       for s in specs]
            client.gather(futures)
    finally:
        if cluster is not None:
            cluster.close()
    report = summarize(load_results(cfg.location(), cfg.run_id, cfg.split), k=cfg.samples, run_id=cfg.run_id,
                       model=cfg.model, split=cfg.split)
    write_report(cfg, report)
    return report
