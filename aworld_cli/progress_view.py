"""The terminal view of a run: one progress bar per (iteration, phase) with success and tokens/s."""

from __future__ import annotations

import json
import logging
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from aworld_core.progress import HUB, ProgressEvent


class LiveProgress:
    """Subscribe to the progress hub and render bars until closed."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                                 console=console)
        self._shards: dict[tuple[int, str], dict[int, ProgressEvent]] = {}
        self._tasks: dict[tuple[int, str], object] = {}
        self._unsubscribe = None

    def on_event(self, ev: ProgressEvent) -> None:
        key = (ev.iteration, ev.phase)
        shards = self._shards.setdefault(key, {})
        shards[ev.shard] = ev
        done = sum(e.done for e in shards.values())
        total = sum(e.total for e in shards.values())
        succ = sum(e.successes for e in shards.values())
        toks = sum(e.response_tokens for e in shards.values())
        elapsed = max(e.elapsed_s for e in shards.values()) or 1e-9
        label = "held-out eval" if ev.phase == "eval" else ev.phase
        stats = f"success {succ / max(done, 1):5.1%} | {toks / elapsed:7,.0f} tok/s"
        if key not in self._tasks:
            self._tasks[key] = self.progress.add_task(f"iteration {ev.iteration} {label}", total=total, stats=stats)
        self.progress.update(self._tasks[key], completed=done, total=total, stats=stats)

    def __enter__(self) -> "LiveProgress":
        self.progress.start()
        self._unsubscribe = HUB.subscribe(self.on_event)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        self.progress.stop()


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (for CI and log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def json_progress_logger(ev: ProgressEvent, _last: dict = {}) -> None:  # noqa: B006 (per-process throttle)
    """In JSON-log mode, progress is a log line per phase every few seconds instead of a bar."""
    key = (ev.iteration, ev.phase, ev.shard)
    now = time.monotonic()
    if ev.done == ev.total or now - _last.get(key, 0) > 5:
        _last[key] = now
        logging.getLogger("aworld.progress").info(json.dumps(ev.__dict__))
