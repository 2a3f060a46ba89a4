"""Progress events: throttled per shard, relayed from Dask workers to the client's process, and
aggregated per (iteration, phase) by the terminal view."""

import time
from types import SimpleNamespace

from rich.console import Console

from aworld_cli.progress_view import LiveProgress
from aworld_core.progress import HUB, ProgressEvent, ThrottledReporter, emit, event_from_dict, relay_from_dask


def test_throttled_reporter_emits_sparingly_and_always_at_the_end():
    seen = []
    rep = ThrottledReporter("r", 0, "rollout", 1, total=100, every_s=3600, sink=seen.append)
    for i in range(100):
        rep(SimpleNamespace(success=i % 4 == 0, response_tokens=10))
    assert len(seen) == 1, "only the final event inside the throttle window"
    assert (seen[-1].done, seen[-1].successes, seen[-1].response_tokens) == (100, 25, 1000)


def test_events_from_a_dask_worker_reach_the_hub():
    from distributed import Client, LocalCluster

    got = []
    unsub = HUB.subscribe(got.append)
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        relay_from_dask(client)
        relay_from_dask(client)  # idempotent: no double delivery
        # submit the library's own function: workers cannot import test modules (importlib mode)
        for i in (1, 2, 3):
            client.submit(emit, ProgressEvent("r", 2, "eval", 7, i, 3, i, 5 * i, 0.1 * i), pure=False).result(timeout=30)
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    unsub()
    assert [e.done for e in got] == [1, 2, 3] and got[-1].shard == 7 and got[-1].phase == "eval"


def test_live_view_aggregates_shards():
    view = LiveProgress(Console(file=open("/dev/null", "w")))
    view.on_event(ProgressEvent("r", 1, "rollout", 0, 10, 32, 5, 100, 1.0))
    view.on_event(ProgressEvent("r", 1, "rollout", 1, 6, 32, 1, 60, 2.0))
    view.on_event(ProgressEvent("r", 1, "rollout", 0, 12, 32, 6, 120, 1.5))  # newer event of shard 0 replaces
    task = view.progress.tasks[0]
    assert (task.completed, task.total) == (18, 64)
    assert "success 38.9%" in task.fields["stats"]


def test_event_from_dask_log_ignores_keys_dask_adds():
    d = {**ProgressEvent("r", 0, "rollout", 1, 2, 3, 1, 9, 0.5).__dict__, "worker": "tcp://127.0.0.1:1"}
    assert event_from_dict(d) == ProgressEvent("r", 0, "rollout", 1, 2, 3, 1, 9, 0.5)
