"""``aworld eval-gaia`` and ``aworld compare-gaia``: GAIA evaluation of any OpenAI-compatible endpoint.

Registered on the main app with ``register(app)``. Exit codes follow ``aworld_cli.main``: 0 success,
2 bad input found before anything started (missing dataset, unreachable endpoint, bad option), 3 the
run failed with a known error, 1 anything unexpected.

Example::

    aworld eval-gaia --dataset ~/data/GAIA --split validation --level 1 \\
        --endpoint http://127.0.0.1:8000/v1 --model Qwen/Qwen3-8B --samples 2 --shards 4
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from aworld_core.errors import AWorldError, ConfigError, EndpointUnreachable
from aworld_core.evaluation.gaia_dataset import DatasetNotFound

console = Console(stderr=True)
out = Console()


def _fail(message: str, code: int) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "distributed", "prefect.events", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def print_report(report: dict[str, Any], where: str) -> None:
    k = report["k"]
    table = Table(title=f"GAIA {report['split']}: {report['model']} (run {report['run_id']})")
    for col in ("level", "tasks", "episodes", "correct", "accuracy", f"pass@{k}", f"avg@{k}"):
        table.add_column(col, justify="left" if col == "level" else "right")
    for s in [*report["levels"], report["overall"]]:
        table.add_row(s["level"], str(s["tasks"]), str(s["episodes"]), f"{s['correct']}/{s['scored']}",
                      _pct(s["accuracy"]), _pct(s["pass_at_k"]), _pct(s["avg_at_k"]))
    out.print(table)
    out.print(f"tokens: {report['prompt_tokens']:,} prompt / {report['completion_tokens']:,} completion; latency "
              f"p50 {report['latency_p50_s']:.2f} s, p95 {report['latency_p95_s']:.2f} s; tool errors "
              f"{report['tool_errors']} of {report['tool_calls']} calls; stop reasons {report['stop_reasons']}")
    out.print(f"results (Parquet, transcripts, report.md/.png): [bold]{where}[/]")


def eval_gaia(
    dataset: str = typer.Option(..., "--dataset", help="GAIA folder (ROOT/2023/<split>/metadata.jsonl, or the split folder)"),
    endpoint: str = typer.Option(..., "--endpoint", help="OpenAI base URL, e.g. http://127.0.0.1:8000/v1"),
    model: str = typer.Option(..., "--model", help="model name the endpoint serves"),
    split: str = typer.Option("validation", "--split", help="validation | test (test has no answers: unscored)"),
    level: Optional[list[int]] = typer.Option(None, "--level", help="GAIA level 1-3 (repeatable; default all)"),
    task_id: Optional[list[str]] = typer.Option(None, "--task-id", help="only these task ids (repeatable)"),
    samples: int = typer.Option(1, "--samples", "-k", min=1, help="episodes per task (pass@k, avg@k)"),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="NAME of the env var holding the API key"),
    shards: int = typer.Option(1, "--shards", min=1, help="Prefect tasks / Dask tasks to cut the work into"),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="episodes in flight per shard"),
    out_uri: str = typer.Option("runs", "--out", help="storage URI: a path or s3://bucket/prefix"),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="name the run (default: gaia-<timestamp>)"),
    max_turns: Optional[int] = typer.Option(None, "--max-turns", min=1, help="model calls per episode (default 20)"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="max_tokens per model call"),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0.0),
    answer_convention: Optional[str] = typer.Option(None, "--answer-convention",
                                                    help="final_answer (GAIA's prompt) | answer_tag | last_line"),
    tool_mode: Optional[str] = typer.Option(None, "--tool-mode", help="native (OpenAI tools) | hermes (tools in the prompt)"),
    tools: Optional[str] = typer.Option(None, "--tools", help="comma-separated tool names "
                                        "(default read_file,python_exec,web_search,fetch_page)"),
    cache: str = typer.Option("off", "--cache", help="tool result cache: off | read_write | replay_only"),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="tool cache folder (default: inside the run)"),
    dask_address: Optional[str] = typer.Option(None, "--dask-address", help="tcp://host:8786 (default: in-process)"),
    no_prefect: bool = typer.Option(False, "--no-prefect", help="run the library directly, without a Prefect flow"),
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Evaluate an OpenAI-compatible endpoint on GAIA: accuracy per level, pass@k, costs, tool errors."""
    _setup_logging(quiet)
    from aworld_core.evaluation.gaia_eval import evaluate, new_run_id, preflight

    from flows.gaia import make_config

    limits = {k: v for k, v in {"max_turns": max_turns, "max_tokens_per_turn": max_tokens,
                                "temperature": temperature, "answer_convention": answer_convention,
                                "tool_mode": tool_mode}.items() if v is not None}
    settings: dict[str, Any] = {"limits": limits, "cache": {"mode": cache, "directory": cache_dir}}
    if tools:
        settings["tools"] = tuple(t.strip() for t in tools.split(",") if t.strip())
    try:
        cfg = make_config(dataset, endpoint, model, run_id or new_run_id(), settings, split=split,
                          levels=tuple(level) if level else None, task_ids=tuple(task_id) if task_id else None,
                          samples=samples, api_key_env=api_key_env, shards=shards, concurrency=concurrency,
                          storage_uri=out_uri)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail(f"invalid option(s): {problems}", 2)
    try:
        preflight(cfg)
    except (DatasetNotFound, EndpointUnreachable, ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc), 2)
    try:
        if no_prefect:
            report = evaluate(cfg, dask_address=dask_address).model_dump()
        else:
            from flows.gaia import aworld_eval_gaia

            result = aworld_eval_gaia(dataset=cfg.dataset, endpoint=cfg.endpoint, model=cfg.model, split=cfg.split,
                                      levels=list(cfg.levels) if cfg.levels else None,
                                      task_ids=list(cfg.task_ids) if cfg.task_ids else None, samples=cfg.samples,
                                      api_key_env=cfg.api_key_env, shards=cfg.shards, concurrency=cfg.concurrency,
                                      out=cfg.storage_uri, run_id=cfg.run_id, dask_address=dask_address,
                                      settings=settings)
            report = result["report"]
    except AWorldError as exc:
        _fail(str(exc), 3)
    where = cfg.store().display(f"gaia/{cfg.split}")
    if json_out:
        out.print_json(json.dumps({"results": where, **report}, default=str))
    else:
        print_report(report, where)


def compare_gaia(
    run_a: str = typer.Argument(..., help="first run id (the baseline)"),
    run_b: str = typer.Argument(..., help="second run id"),
    out_uri: str = typer.Option("runs", "--out", help="storage URI of the runs"),
    out_b: Optional[str] = typer.Option(None, "--out-b", help="storage URI of run B, if elsewhere"),
    split: str = typer.Option("validation", "--split"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Compare two GAIA evaluations side by side (markdown table + chart, also a Prefect artifact)."""
    _setup_logging(quiet)
    from aworld_core.evaluation.report import Comparison, render_comparison_markdown
    from flows.gaia import aworld_compare_gaia

    try:
        result = aworld_compare_gaia(run_a=run_a, run_b=run_b, out=out_uri, out_b=out_b, split=split)
    except (AWorldError, ValueError) as exc:
        _fail(str(exc), 2)
    out.print(render_comparison_markdown(Comparison.model_validate(result)))


def register(app: typer.Typer) -> None:
    """Add ``eval-gaia`` and ``compare-gaia`` to the ``aworld`` command."""
    app.command("eval-gaia")(eval_gaia)
    app.command("compare-gaia")(compare_gaia)
