"""Live progress of long work (episodes done, success so far, tokens), from wherever it runs.

Shards run inside Dask workers, often on other machines. A shard reports through Dask's event log
(``Worker.log_event``); whoever holds a client subscribes to the topic and republishes into the
in-process ``HUB``, where a terminal display (the CLI) or a logger listens. Outside a Dask worker the
event goes straight to the hub. Events are throttled, so reporting costs nothing measurable.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

TOPIC = "aworld-progress"


@dataclass
class ProgressEvent:
    run_id: str
    iteration: int
    phase: str
    shard: int
    done: int
    total: int
    successes: int
    response_tokens: int
    elapsed_s: float


Listener = Callable[[ProgressEvent], None]


class ProgressHub:
    """Fan-out of progress events to listeners in this process (thread-safe)."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(fn)
        return lambda: self._unsubscribe(fn)

    def _unsubscribe(self, fn: Listener) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def publish(self, event: ProgressEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for fn in listeners:
            fn(event)


HUB = ProgressHub()


def current_worker():  # -> distributed.Worker | None
    """The Dask worker running this code, or None outside one (or without distributed installed)."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def emit(event: ProgressEvent) -> None:
    """Send an event from a Dask worker (to subscribed clients) or, elsewhere, to this process's hub."""
    worker = current_worker()
    if worker is None:
        HUB.publish(event)
    else:
        worker.log_event(TOPIC, asdict(event))


_FIELDS = frozenset(ProgressEvent.__dataclass_fields__)


def event_from_dict(d: dict) -> ProgressEvent:
    """Rebuild an event from Dask's event log, which adds its own keys (e.g. ``worker``)."""
    return ProgressEvent(**{k: v for k, v in d.items() if k in _FIELDS})


def relay_from_dask(client) -> None:  # client: distributed.Client
    """Republish a Dask client's progress events into this process's hub (idempotent per client)."""
    if getattr(client, "_aworld_progress_relay", False):
        return
    client.subscribe_topic(TOPIC, lambda msg: HUB.publish(event_from_dict(msg[1])))
    client._aworld_progress_relay = True


class ThrottledReporter:
    """Counts finished episodes of one shard and emits at most every ``every_s`` seconds (and at the end)."""

    def __init__(self, run_id: str, iteration: int, phase: str, shard: int, total: int,
                 every_s: float = 0.5, sink: Callable[[ProgressEvent], None] = emit) -> None:
        self.key = (run_id, iteration, phase, shard)
        self.total, self.every_s, self.sink = total, every_s, sink
        self.done = self.successes = self.tokens = 0
        self.t0 = self._last = time.monotonic()

    def __call__(self, result) -> None:  # result: EpisodeResult
        self.done += 1
        self.successes += int(result.success)
        self.tokens += result.response_tokens
        now = time.monotonic()
        if now - self._last >= self.every_s or self.done == self.total:
            self._last = now
            self.sink(ProgressEvent(*self.key, done=self.done, total=self.total, successes=self.successes,
                                    response_tokens=self.tokens, elapsed_s=now - self.t0))
