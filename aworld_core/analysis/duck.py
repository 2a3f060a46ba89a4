"""SQL over a run's committed trajectories with DuckDB, on local disk or S3.

DuckDB 2.x cannot load its ``httpfs`` extension offline, so DuckDB never opens files itself here.
Instead each table is a ``pyarrow.dataset.Dataset`` over exactly the files the run's manifests list
(built on the same ``pyarrow.fs`` filesystem the writer uses, local or S3), registered with DuckDB as a
view. DuckDB pushes the columns a query needs and its simple filters down into the pyarrow scanner, so
a query reads only those columns (and skips row groups by statistics) of committed files, and never
sees a file of an uncommitted or superseded attempt. See docs/analysis.md.
"""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import pyarrow as pa

from aworld_core.errors import AWorldError
from aworld_core.storage.schema import TABLES
from aworld_core.storage.store import RunNotFound, RunStore, dataset_from_manifests, list_runs
from aworld_core.storage.uri import StorageLocation

log = logging.getLogger(__name__)

VIEWS: tuple[str, ...] = tuple(TABLES)  # episodes, turns, tool_calls, evaluations
COMMITS_SCHEMA = pa.schema([("run_id", pa.string()), ("iteration", pa.int32()), ("phase", pa.string()),
                            ("shard", pa.int32()), ("attempt", pa.string()), ("schema_version", pa.string()),
                            ("episodes", pa.int64()), ("turns", pa.int64()), ("tool_calls", pa.int64()),
                            ("evaluations", pa.int64()), ("committed_at", pa.float64())])


class QueryError(AWorldError):
    """A SQL query could not be parsed, bound or run."""


def _committed(location: StorageLocation, run_id: str | None) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    if run_id is not None:
        store = RunStore(location, run_id)
        if not store.exists():
            known = list_runs(location)
            raise RunNotFound(f"no run {run_id!r} under {location.display()}"
                              + (f"; runs there: {', '.join(known[:20])}" if known else "; no runs there at all"))
        return store.fs, [(store.root, m) for m in store.manifests()]
    committed: list[tuple[str, dict[str, Any]]] = []
    fs = location.filesystem()
    for rid in list_runs(location):
        store = RunStore(location, rid)
        committed += [(store.root, m) for m in store.manifests()]
    return fs, committed


def connect(location: StorageLocation, run_id: str | None = None,
            con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views ``episodes``, ``turns``, ``tool_calls``, ``evaluations`` (and
    ``commits``, one row per committed shard) over ``run_id``'s committed data, or over every run
    under ``location`` when ``run_id`` is None. Raises :class:`RunNotFound` for an unknown run."""
    fs, committed = _committed(location, run_id)
    con = con if con is not None else duckdb.connect()
    for table in VIEWS:
        con.register(table, dataset_from_manifests(fs, committed, table))
    rows = [{"run_id": m["run_id"], "iteration": m["iteration"], "phase": m["phase"], "shard": m["shard"],
             "attempt": m.get("attempt"), "schema_version": m.get("schema_version"),
             **{t: m.get("rows", {}).get(t) for t in TABLES}, "committed_at": m.get("committed_at")}
            for _, m in committed]
    con.register("commits", pa.Table.from_pylist(rows, schema=COMMITS_SCHEMA))
    log.debug("duckdb views over %d committed shards of %s", len(committed), run_id or location.display())
    return con


def sql(con: duckdb.DuckDBPyConnection, text: str) -> pa.Table:
    """Run ``text`` on ``con``; DuckDB's errors become :class:`QueryError` with the message."""
    try:
        rel = con.sql(text)
        if rel is None:  # a statement without a result (SET, CREATE ...)
            return pa.table({})
        return rel.to_arrow_table()
    except duckdb.Error as exc:
        detail = str(exc).strip() or type(exc).__name__
        raise QueryError(f"{detail}\n(views: {', '.join(VIEWS)}, commits; columns in docs/schema.md)") from exc


def query(location: StorageLocation, run_id: str | None, text: str) -> pa.Table:
    """Run one SQL query over a run's (or all runs') committed data; the result as an Arrow table."""
    con = connect(location, run_id)
    try:
        return sql(con, text)
    finally:
        con.close()
