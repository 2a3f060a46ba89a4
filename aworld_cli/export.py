"""``aworld export verl``: write a stored iteration in verl's RL and multi-turn SFT dataset formats.

Examples::

    aworld export verl smoke1 --iteration 0 --out exports/smoke1-i0
    aworld export verl myrun -i 2 --out /data/verl --uri s3://bucket/runs --s3-endpoint http://127.0.0.1:8333

Writes ``rl.parquet`` (prompts + ground truth + ``agent_name``, for ``verl.trainer.main_ppo``) and
``sft.parquet`` (successful trajectories as ``messages``, for ``verl.trainer.sft_trainer``); see
docs/verl.md. Exit codes: 0 ok, 2 bad input (unknown run or iteration), 3 storage failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from aworld_core.errors import AWorldError, ConfigError, StorageError
from aworld_core.storage.uri import StorageLocation

export_app = typer.Typer(help="Export a run's trajectories to other frameworks' dataset formats.",
                         no_args_is_help=True)


from aworld_cli.analysis import _location  # noqa: E402  (one resolver of --uri/--s3-endpoint/--config)


@export_app.command("verl")
def export_verl(run: str = typer.Argument(..., help="run id"),
                iteration: int = typer.Option(..., "--iteration", "-i", help="iteration to export"),
                out: Path = typer.Option(..., "--out", "-o", help="output directory (rl.parquet, sft.parquet)"),
                uri: Optional[str] = typer.Option(None, "--uri", help="runs location: a path or s3://bucket/prefix "
                                                  "[default: $AWORLD_STORAGE_URI, the config's, or 'runs']"),
                s3_endpoint: Optional[str] = typer.Option(None, "--s3-endpoint", help="S3-compatible endpoint URL"),
                config: Optional[str] = typer.Option(None, "--config", "-c", help="take storage.* from this config"),
                phase: str = typer.Option("rollout", "--phase", help="rollout (train tasks) or eval (held-out)"),
                agent_name: str = typer.Option("aworld_tool_agent", "--agent-name",
                                               help="verl agent loop named in the agent_name column"),
                json_out: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
    """Write iteration I of RUN as verl datasets: rl.parquet (RLHFDataset) and sft.parquet
    (MultiTurnSFTDataset, successful trajectories only)."""
    from aworld_core.export.verl_format import ExportError, export_iteration

    err = Console(stderr=True)
    try:
        result = export_iteration(_location(uri, s3_endpoint, config), run, iteration, out, phase, agent_name)
    except (ConfigError, ExportError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2)
    except StorageError as exc:
        from aworld_core.storage.store import RunNotFound

        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2 if isinstance(exc, RunNotFound) else 3)
    except AWorldError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(3)
    if json_out:
        typer.echo(json.dumps(result.to_dict()))
        return
    con = Console()
    con.print(f"{result.rl_rows} RL prompts ({result.episodes} episodes) -> [bold]{result.rl_path}[/]")
    con.print(f"{result.sft_rows} successful trajectories -> [bold]{result.sft_path}[/]")


def register(app: typer.Typer) -> None:
    """Add ``export`` (with ``export verl``) to the ``aworld`` app."""
    app.add_typer(export_app, name="export")
