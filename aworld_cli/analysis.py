"""``aworld query`` and ``aworld report``: SQL and canned reports over committed trajectories (DuckDB).

Examples::

    aworld query "SELECT iteration, avg(reward) FROM episodes GROUP BY 1 ORDER BY 1" --run smoke1
    aworld query "SELECT name, count(*) FROM tool_calls GROUP BY 1" --format csv     # all runs
    aworld report smoke1                      # every canned report
    aworld report smoke1 --canned latency --canned tokens
    aworld report myrun --uri s3://bucket/runs --s3-endpoint http://127.0.0.1:8333
    aworld report smoke1 --html smoke1.html   # one self-contained HTML file: charts + every table

Where runs live: ``--uri`` (default ``$AWORLD_STORAGE_URI`` or ``runs``), or the ``storage`` section of
``--config``. S3 keys come only from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
Exit codes: 0 ok, 2 bad input (unknown run, bad SQL, unknown report, nothing committed to report on
with --html), 3 storage failure.
"""

from __future__ import annotations

import io
import json
import math
import os
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table

from aworld_core.errors import AWorldError, ConfigError, StorageError
from aworld_core.storage.uri import StorageLocation


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


RunOpt = typer.Option(None, "--run", "-r", help="run id (default: every run under --uri)")
UriOpt = typer.Option(None, "--uri", help="runs location: a path or s3://bucket/prefix "
                                          "[default: $AWORLD_STORAGE_URI, the config's storage.uri, or 'runs']")
EndpointOpt = typer.Option(None, "--s3-endpoint", help="S3-compatible endpoint, e.g. http://127.0.0.1:8333 "
                                                       "[default: $AWORLD_S3_ENDPOINT_URL or the config's]")
ConfigOpt = typer.Option(None, "--config", "-c", help="take storage.uri / s3_endpoint_url from this recipe config")
FormatOpt = typer.Option(OutputFormat.table, "--format", "-f", help="table (rich), csv or json")
LimitOpt = typer.Option(200, "--limit", help="rows shown in table format (csv/json print all)")


def _fail(exc: Exception) -> None:
    code = 3 if isinstance(exc, StorageError) and not _is_input_error(exc) else 2
    Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _is_input_error(exc: Exception) -> bool:
    from aworld_core.storage.store import RunNotFound

    return isinstance(exc, RunNotFound)


def _location(uri: Optional[str], endpoint: Optional[str], config: Optional[str]) -> StorageLocation:
    region = "us-east-1"
    if config is not None:
        from aworld_core.config import load_config

        cfg = load_config(config, [])
        uri = uri or cfg.storage.uri
        endpoint = endpoint or cfg.storage.s3_endpoint_url
        region = cfg.storage.s3_region
    uri = uri or os.environ.get("AWORLD_STORAGE_URI") or "runs"
    endpoint = endpoint or os.environ.get("AWORLD_S3_ENDPOINT_URL") or None
    if endpoint and not uri.startswith("s3://"):
        raise ConfigError(f"--s3-endpoint given but --uri {uri!r} is not an s3:// URI")
    return StorageLocation(uri, s3_endpoint_url=endpoint, s3_region=region)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if isinstance(v, (list, dict)):
        text = json.dumps(v, default=str)
        return text if len(text) <= 40 else text[:37] + "..."
    return str(v)


def print_table(table: pa.Table, title: str | None, fmt: OutputFormat, limit: int = 200,
                console: Console | None = None) -> None:
    out = console or Console(soft_wrap=False)
    if fmt is OutputFormat.csv:
        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        pcsv.write_csv(table, buf)
        out.file.write(buf.getvalue().decode())
        out.file.flush()
        return
    if fmt is OutputFormat.json:
        out.file.write(json.dumps(table.to_pylist(), default=str) + "\n")
        out.file.flush()
        return
    rich_table = Table(title=title, title_justify="left")
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in table.schema]
    for f, is_num in zip(table.schema, numeric):
        rich_table.add_column(f.name, justify="right" if is_num else "left", overflow="fold")
    for row in table.slice(0, limit).to_pylist():
        rich_table.add_row(*(_cell(v) for v in row.values()))
    out.print(rich_table)
    if table.num_rows > limit:
        out.print(f"(showing {limit} of {table.num_rows:,} rows; --limit N or --format csv for more)")
    elif table.num_rows == 0:
        out.print("(no rows)")


def query_cmd(sql: str = typer.Argument(..., help="SQL over views episodes, turns, tool_calls, evaluations, commits"),
              run: Optional[str] = RunOpt, uri: Optional[str] = UriOpt, s3_endpoint: Optional[str] = EndpointOpt,
              config: Optional[str] = ConfigOpt, fmt: OutputFormat = FormatOpt, limit: int = LimitOpt) -> None:
    """Run SQL over a run's committed trajectories (DuckDB; views documented in docs/analysis.md)."""
    from aworld_core.analysis import query

    try:
        result = query(_location(uri, s3_endpoint, config), run, sql)
    except AWorldError as exc:
        _fail(exc)
        return
    print_table(result, None, fmt, limit)


def report_cmd(run: str = typer.Argument(..., help="run id"),
               canned: Optional[list[str]] = typer.Option(
                   None, "--canned", help="report name (repeatable) or 'all' [default: all]"),
               uri: Optional[str] = UriOpt, s3_endpoint: Optional[str] = EndpointOpt,
               config: Optional[str] = ConfigOpt, fmt: OutputFormat = FormatOpt, limit: int = LimitOpt,
               html: Optional[Path] = typer.Option(
                   None, "--html", help="write one self-contained HTML file (charts + every canned report as a "
                                        "table + config) to this local path instead of printing tables"),
               ) -> None:
    """Print canned reports for RUN: success, evaluations, reward_distribution, tool_usage, latency,
    tokens, stop_reasons. With --html OUT.html: write them, with charts, as one HTML file."""
    from aworld_core.analysis import resolve_names, run_reports

    if html is not None:
        _write_html(run, uri, s3_endpoint, config, html)
        return
    try:
        names = resolve_names(None if not canned or "all" in canned else canned)
        results = run_reports(_location(uri, s3_endpoint, config), run, names)
    except AWorldError as exc:
        _fail(exc)
        return
    if fmt is OutputFormat.json:
        Console().file.write(json.dumps({r.name: r.table.to_pylist() for r in results}, default=str) + "\n")
        return
    console = Console(soft_wrap=False)
    for r in results:
        if fmt is OutputFormat.csv:
            console.file.write(f"# {r.name}\n")
        print_table(r.table, f"{r.name} ({run}, {r.seconds:.2f} s)", fmt, limit, console)


def _write_html(run: str, uri: Optional[str], endpoint: Optional[str], config: Optional[str], out: Path) -> None:
    from aworld_core.analysis.html_report import write_html_report

    try:
        path = write_html_report(_location(uri, endpoint, config), run, out)
    except AWorldError as exc:
        _fail(exc)
        return
    except OSError as exc:  # the output file (a local path) could not be written
        _fail(ConfigError(f"cannot write {out}: {exc}"))
        return
    Console(soft_wrap=True).print(f"wrote {path} ({path.stat().st_size / 1024:,.0f} KB)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``query`` and ``report`` to the ``aworld`` app."""
    app.command("query")(query_cmd)
    app.command("report")(report_cmd)
