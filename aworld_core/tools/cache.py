"""A disk cache of tool results keyed by request, so an evaluation can be replayed offline.

Why: web search results drift by the hour and cost money, so two checkpoints evaluated a week apart
saw different evidence, and a machine without internet cannot evaluate at all. With the cache in
``read_write`` mode every result is stored under (scope, tool name, canonical JSON arguments); a later
run in ``replay_only`` mode answers from the cache and turns a miss into an error observation
("not in the cache") instead of reaching the network. ``off`` bypasses it.

The store is one SQLite file (stdlib, safe across threads and processes with WAL and a busy
timeout), so a cache directory can be copied next to a run's results and replayed anywhere.

What is stored: the result text, or a ``ToolError``'s message (a 404 is an answer too). Transient
failures (``TransientToolError``: network trouble, 5xx) and timeouts are never stored.

``scope`` keeps task-local tools apart: ``read_file(path="a.csv")`` means a different file in each
task, so such tools are cached with the task id as scope; web tools use the empty scope and are
shared by every task and sample.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Literal

from aworld_core.errors import ConfigError
from aworld_core.tools.base import Tool, ToolError

log = logging.getLogger(__name__)

__all__ = ["CacheMiss", "CachedTool", "CacheMode", "ToolCache", "cache_key"]

CacheMode = Literal["off", "read_write", "replay_only"]
CACHE_MODES: tuple[str, ...] = ("off", "read_write", "replay_only")
DB_NAME = "tool_cache.sqlite"


class CacheMiss(ToolError):
    """``replay_only`` and the request was never recorded: the model sees this as the tool's error."""


def cache_key(tool: str, arguments: dict[str, Any], scope: str = "") -> str:
    """sha256 of (scope, tool, arguments as canonical JSON: sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps([scope, tool, arguments], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ToolCache:
    """The SQLite-backed store. One connection per thread; safe to share across Dask worker threads."""

    def __init__(self, directory: str | Path, mode: CacheMode = "read_write") -> None:
        if mode not in CACHE_MODES:
            raise ConfigError(f"unknown tool cache mode {mode!r}; valid: {', '.join(CACHE_MODES)}")
        self.mode = mode
        self.directory = Path(directory).expanduser()
        self.path = self.directory / DB_NAME
        if mode == "replay_only" and not self.path.is_file():
            raise ConfigError(f"tool cache mode replay_only but there is no cache at {self.path}; record one "
                              "first with mode read_write, or point the cache directory at a recorded one")
        self._local = threading.local()
        self.hits = self.misses = self.stores = 0
        if mode != "off":
            self.directory.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, scope TEXT, tool TEXT, "
                           "arguments TEXT, result TEXT, error TEXT, created REAL)")

    def __getstate__(self) -> dict[str, Any]:  # picklable (no connections) for Dask
        return {"directory": self.directory, "mode": self.mode}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"], state["mode"])  # type: ignore[misc]

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def get(self, key: str) -> tuple[str | None, str | None] | None:
        """(result, error) stored under ``key``, or None."""
        if self.mode == "off":
            return None
        row = self._connect().execute("SELECT result, error FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def put(self, key: str, scope: str, tool: str, arguments: dict[str, Any], result: str | None,
            error: str | None) -> None:
        if self.mode != "read_write":
            return
        self._connect().execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, scope, tool, json.dumps(arguments, sort_keys=True, ensure_ascii=False), result, error, time.time()))
        self.stores += 1

    def __len__(self) -> int:
        if self.mode == "off":
            return 0
        return int(self._connect().execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "stores": self.stores}


class CachedTool(Tool):
    """Wraps a tool: same name and schema; results come from (and go to) a ``ToolCache``."""

    def __init__(self, inner: Tool, cache: ToolCache, scope: str = "") -> None:
        self.inner, self.cache, self.scope = inner, cache, scope
        self.name = inner.name  # type: ignore[misc]  # instance attributes shadow the ClassVars
        self.description = inner.description  # type: ignore[misc]
        self.parameters = inner.parameters  # type: ignore[misc]

    def validate(self, arguments: Any) -> dict[str, Any]:
        return self.inner.validate(arguments)

    async def run(self, **arguments: Any) -> str:
        key = cache_key(self.name, arguments, self.scope)
        found = await asyncio.to_thread(self.cache.get, key)
        if found is not None:
            self.cache.hits += 1
            result, error = found
            if error is not None:
                raise ToolError(error)
            return result or ""
        self.cache.misses += 1
        if self.cache.mode == "replay_only":
            raise CacheMiss(f"{self.name} with these arguments is not in the tool cache (replay_only mode: "
                            "no live tool calls); only requests made in the recorded run can be answered")
        try:
            result = await self.inner.run(**arguments)
        except ToolError as exc:
            if not getattr(exc, "transient", False):
                await asyncio.to_thread(self.cache.put, key, self.scope, self.name, arguments, None, str(exc))
            raise
        await asyncio.to_thread(self.cache.put, key, self.scope, self.name, arguments, result, None)
        return result
