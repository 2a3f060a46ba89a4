"""``aworld``: the command line. Thin: parse, validate config, run a flow, print a table.

Exit codes scripts can rely on: 0 success, 2 bad configuration or input (nothing started),
3 a run failed with a known error (message says what to do), 1 anything unexpected.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from aworld_core.config import RecipeConfig, load_config
from aworld_core.errors import AWorldError, ConfigError
from aworld_core.prefect_env import apply_prefect_defaults

app = typer.Typer(help="AWorld recipe: distributed agent rollouts, RL training and evaluation.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
recipe_app = typer.Typer(help="Run the iterated recipe (rollout -> store -> train -> evaluate).",
                         no_args_is_help=True)
model_app = typer.Typer(help="Create and inspect models.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")
app.add_typer(model_app, name="model")
console = Console(stderr=True)
out = Console()

ConfigOpt = typer.Option("configs/local.yaml", "--config", "-c", help="YAML config file")
SetOpt = typer.Option(None, "--set", "-s", help="override, e.g. --set rollout.shards=8 (repeatable)")


def _fail(exc: Exception) -> None:
    code = 2 if isinstance(exc, ConfigError) else 3
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code)


def _load(config: Optional[str], overrides: Optional[list[str]], **direct: Any) -> RecipeConfig:
    extra = [f"{k}={v}" for k, v in direct.items() if v is not None]
    try:
        return load_config(config, list(overrides or []) + extra)
    except ConfigError as exc:
        _fail(exc)
        raise  # unreachable


def _setup_logging(quiet: bool, log_json: bool = False) -> None:
    # distributed re-applies its own logging config when first imported: set it through dask config.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    apply_prefect_defaults()  # before the first flow imports prefect
    level = logging.WARNING if quiet else logging.INFO
    if log_json:
        from aworld_cli.progress_view import JsonFormatter, json_progress_logger
        from aworld_core.progress import HUB

        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler], force=True)
        HUB.subscribe(json_progress_logger)
    else:
        from rich.logging import RichHandler

        logging.basicConfig(level=level, format="%(name)s: %(message)s", datefmt="[%X]",
                            handlers=[RichHandler(console=console, show_path=False)])
    for noisy in ("httpx", "distributed", "prefect.events", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _progress(off: bool):
    """Live progress bars on the terminal, unless quiet or JSON logging."""
    import contextlib

    if off:
        return contextlib.nullcontext()
    from aworld_cli.progress_view import LiveProgress

    return LiveProgress(console)


def print_recipe_result(result: dict[str, Any]) -> None:
    table = Table(title=f"run {result['run_id']}: held-out success per iteration")
    for col in ("iteration", "checkpoint", "episodes", "success", "mean reward"):
        table.add_column(col, justify="right" if col != "checkpoint" else "left")
    for e in result["evaluations"]:
        table.add_row(str(e["iteration"]), e["checkpoint"], str(e["episodes"]),
                      f"{e['success_rate']:.1%}", f"{e['mean_reward']:.3f}")
    out.print(table)
    out.print(f"trajectories (Parquet): [bold]{result['data']}[/]")
    out.print(f"checkpoints: {result['checkpoints'][0]} .. {Path(result['checkpoints'][-1]).name}")


@recipe_app.command("run")
def recipe_run(config: str = ConfigOpt, set_: Optional[list[str]] = SetOpt,
               iterations: Optional[int] = typer.Option(None, help="override config.iterations"),
               run_id: Optional[str] = typer.Option(None, help="name the run (default: timestamp)"),
               json_out: bool = typer.Option(False, "--json", help="print the result as JSON"),
               quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars, warnings only"),
               log_json: bool = typer.Option(False, "--log-json", help="JSON log lines (CI), no bars")) -> None:
    """Run the whole iterated recipe.

    Example: aworld recipe run --iterations 2 --set rollout.prompts_per_iteration=32
    """
    _setup_logging(quiet, log_json)
    cfg = _load(config, set_, iterations=iterations, run_id=run_id)
    from flows.common import in_process_settings
    from flows.recipe import aworld_recipe

    try:
        with _progress(quiet or log_json), in_process_settings():
            result = aworld_recipe(config_path=config, overrides=list(set_ or []), iterations=cfg.iterations,
                                   run_id=cfg.with_run_id().run_id)
    except AWorldError as exc:
        _fail(exc)
    if json_out:
        out.print_json(json.dumps(result, default=str))
    else:
        print_recipe_result(result)


@recipe_app.command("resume")
def recipe_resume(run_id: str, config: str = ConfigOpt, set_: Optional[list[str]] = SetOpt,
                  quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Continue RUN_ID from its last committed stage (nothing committed is redone or duplicated).

    Example: aworld recipe resume 20261125-101500-ab12cd --set storage.uri=s3://bucket/runs
    """
    _setup_logging(quiet)
    overrides = _run_overrides(run_id, config, set_)
    from flows.common import in_process_settings
    from flows.recipe import aworld_recipe

    try:
        with in_process_settings():
            result = aworld_recipe(config_path=None, overrides=overrides, run_id=run_id)
    except AWorldError as exc:
        _fail(exc)
    print_recipe_result(result)


def _run_overrides(run_id: str, config: Optional[str], set_: Optional[list[str]]) -> list[str]:
    """The config RUN_ID was started with (stored with the run) as overrides, plus the user's --set."""
    cfg = _load(config, set_, run_id=run_id)
    from aworld_core.recipe import run_store

    saved = run_store(cfg).read_json("config.json")
    if saved is None:
        _fail(ConfigError(f"no run {run_id!r} under {run_store(cfg).display()}; check storage.uri and the id"))
    return [f"{k}={json.dumps(v)}" for k, v in _flatten(saved).items()] + list(set_ or [])


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and k != "params":
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


@recipe_app.command("status")
def recipe_status(run_id: str, config: str = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """Show what RUN_ID has committed: shards per iteration and phase, evaluations."""
    cfg = _load(config, set_, run_id=run_id)
    from aworld_core.recipe import run_store

    store = run_store(cfg)
    table = Table(title=f"run {run_id} ({store.display()})")
    for col in ("iteration", "phase", "shards", "episodes", "successes"):
        table.add_column(col)
    rows: dict[tuple[int, str], list[int]] = {}
    for m in store.manifests():
        s = m.get("summary", {})
        agg = rows.setdefault((m["iteration"], m["phase"]), [0, 0, 0])
        agg[0] += 1
        agg[1] += s.get("episodes", m["rows"].get("evaluations", 0))
        agg[2] += s.get("successes", 0)
    if not rows:
        _fail(ConfigError(f"run {run_id!r} has no committed data under {store.display()}"))
    for (it, phase), (n, eps, succ) in sorted(rows.items()):
        table.add_row(str(it), phase, str(n), str(eps), str(succ))
    out.print(table)


@model_app.command("init")
def model_init(config: str = ConfigOpt, set_: Optional[list[str]] = SetOpt,
               force: bool = typer.Option(False, help="recreate even if it exists")) -> None:
    """Create the embedded tiny Qwen3 model (tokenizer + weights) at model.path."""
    _setup_logging(False)
    cfg = _load(config, set_)
    from aworld_core.recipe import ensure_base_model

    path = cfg.resolve(cfg.model.path)
    if force and path.exists():
        import shutil

        shutil.rmtree(path)
    try:
        out.print(f"model ready at {ensure_base_model(cfg)}")
    except AWorldError as exc:
        _fail(exc)


CheckpointOpt = typer.Option(None, help="HF model dir to serve (default: base model)")


def _one_checkpoint_flow(flow_name: str, config: str, set_: Optional[list[str]], checkpoint: Optional[str],
                         run_id: Optional[str]) -> None:
    """Run one of the single-checkpoint flows (flows/rollout.py) in this process; print its result."""
    _setup_logging(False)
    _load(config, set_)
    import flows.rollout
    from flows.common import in_process_settings

    try:
        with in_process_settings():
            result = getattr(flows.rollout, flow_name)(config, list(set_ or []), checkpoint, 0, run_id)
        out.print_json(json.dumps(result))
    except AWorldError as exc:
        _fail(exc)


@app.command("rollout")
def rollout(config: str = ConfigOpt, set_: Optional[list[str]] = SetOpt, checkpoint: Optional[str] = CheckpointOpt,
            run_id: Optional[str] = None) -> None:
    """Collect one iteration of experience (no training)."""
    _one_checkpoint_flow("aworld_rollout", config, set_, checkpoint, run_id)


@app.command("eval")
def evaluate(config: str = ConfigOpt, set_: Optional[list[str]] = SetOpt, checkpoint: Optional[str] = CheckpointOpt,
             run_id: Optional[str] = None) -> None:
    """Held-out success of a checkpoint on the configured environment."""
    _one_checkpoint_flow("aworld_evaluate", config, set_, checkpoint, run_id)


@app.command("serve")
def serve(config: str = ConfigOpt, set_: Optional[list[str]] = SetOpt,
          checkpoint: Optional[str] = typer.Option(None, help="HF model dir to serve (default: model.path)"),
          port: Optional[int] = typer.Option(None, help="first port (default: serve.port)"),
          host: Optional[str] = typer.Option(None, help="bind address (default: serve.host, loopback)"),
          replicas: Optional[int] = typer.Option(None, help="servers to start (default: serve.replicas)"),
          log_dir: Path = typer.Option(Path(".aworld/logs"), help="where the vLLM logs go")) -> None:
    """Serve a checkpoint with vLLM (OpenAI-compatible) until Ctrl-C.

    Prints the endpoint URLs when every replica answers /health, and the --set line that points a
    recipe at them. Examples:

      aworld serve --checkpoint runs/myrun/checkpoints/iter-2 --port 8000

      aworld serve --replicas 4 --set 'serve.gpu_ids=["0","1","2","3"]' --set serve.python=/opt/vllm/bin/python
    """
    _setup_logging(False)
    cfg = _load(config, set_, **{"serve.port": port, "serve.host": host, "serve.replicas": replicas})
    import signal
    import threading

    from aworld_core.inference.fleet import ServerFleet
    from aworld_core.recipe import ensure_base_model

    try:
        model_dir = Path(checkpoint).resolve() if checkpoint else ensure_base_model(cfg)
        fleet = ServerFleet(cfg.serve, model_dir, served_name=cfg.model.served_name,
                            python=cfg.resolve(cfg.serve.python), log_dir=log_dir.resolve())
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        with fleet:
            out.print(f"serving {model_dir} as {cfg.model.served_name!r} at: {' '.join(fleet.urls)}")
            endpoints = ",".join(fleet.urls)
            out.print(f"use it: --set serve.mode=external --set 'serve.endpoints=[{endpoints}]'", soft_wrap=True)
            out.print("ready; Ctrl-C stops", soft_wrap=True)
            while not stop.wait(1.0):
                dead = [s.url for s in fleet.servers if not s.running]
                if dead:
                    raise AWorldError(f"vLLM at {', '.join(dead)} exited; see its log in {log_dir}")
    except AWorldError as exc:
        _fail(exc)
    out.print("stopped")


@app.command("train")
def train(run_id: str = typer.Argument(..., help="run whose stored rollouts to train on"),
          iteration: int = typer.Option(..., "--iteration", "-i", help="train on this iteration's rollouts"),
          config: str = ConfigOpt, set_: Optional[list[str]] = SetOpt,
          init: Optional[str] = typer.Option(None, help="start from this HF dir (default: the run's iter-I)"),
          output: Optional[str] = typer.Option(None, "--output", "-o",
                                               help="write the checkpoint here (default: the run's iter-I+1)"),
          force: bool = typer.Option(False, help="overwrite an existing output checkpoint")) -> None:
    """One RL update from a run's committed rollouts of ITERATION, with the run's stored config.

    --set train.* changes the algorithm for this update only. Examples:

      aworld train myrun -i 0 --output /tmp/iter1-lr1e-4 --set train.lr=1e-4

      aworld train myrun -i 1 --set train.backend=verl-fsdp
    """
    _setup_logging(False)
    overrides = _run_overrides(run_id, config, set_)
    cfg = _load(None, overrides, run_id=run_id)
    from aworld_core import recipe
    from aworld_core.training.trainer import get_trainer

    src = Path(init) if init else recipe.checkpoint_dir(cfg, iteration)
    dst = Path(output) if output else recipe.checkpoint_dir(cfg, iteration + 1)
    if not (src / "config.json").exists():
        _fail(ConfigError(f"no checkpoint at {src}; pass --init DIR or train the iterations before {iteration}"))
    if (dst / "config.json").exists() and not force:
        _fail(ConfigError(f"{dst} already holds a checkpoint; pass --force to overwrite or --output DIR"))
    try:
        episodes = recipe.run_store(cfg).read("episodes", iteration=iteration, phase=recipe.ROLLOUT_PHASE)
        if episodes.num_rows == 0:
            raise ConfigError(f"run {run_id!r} has no committed rollouts for iteration {iteration}; "
                              f"see `aworld recipe status {run_id}`")
        report = get_trainer(cfg.train.backend)(src, dst, episodes, cfg.train, cfg.rollout.samples_per_prompt)
    except AWorldError as exc:
        _fail(exc)
    out.print_json(json.dumps(report.to_dict(), default=str))


def _register_plugins() -> None:
    """Command groups that live in their own modules (GAIA evaluation, analysis, export)."""
    import importlib

    for module in ("aworld_cli.gaia", "aworld_cli.analysis", "aworld_cli.export"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        mod.register(app)


_register_plugins()


def main() -> None:  # pragma: no cover
    sys.exit(app())
