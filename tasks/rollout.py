"""Prefect task: one shard of episodes, executed on the Dask cluster.

One Prefect task per shard, never per episode (task overhead, FIELD_NOTES). The shard runs as a
single Dask task on some worker, where an event loop keeps many episodes in flight. If the worker
dies, Dask reschedules the shard elsewhere; a committed shard is never re-run (see run_shard).
"""

from __future__ import annotations

import logging
import threading

from distributed import Client
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from aworld_core.progress import relay_from_dask
from aworld_core.rollout.shard import ShardSpec, ShardSummary, run_shard

log = logging.getLogger(__name__)

_CLIENTS: dict[str, Client] = {}
_LOCK = threading.Lock()


def dask_client(address: str) -> Client:
    """One client per scheduler address per process (creating one costs ~100 ms).

    Only a connected client is reused. One that lost its scheduler (a closed LocalCluster, a restarted
    scheduler) is closed and replaced rather than handed out while it retries its old connection for
    up to 30 s (suspected in the scaling benchmark's hangs on re-created clusters).
    """
    with _LOCK:
        client = _CLIENTS.get(address)
        if client is not None and client.status != "running":
            _close_quietly(client)
            client = None
        if client is None:
            client = Client(address, set_as_default=False, timeout="30s")
            relay_from_dask(client)  # shards' progress events reach this process's HUB (CLI display)
            _CLIENTS[address] = client
        return client


def close_clients(address: str | None = None, timeout_s: float = 10.0) -> None:
    """Close the cached clients: all of them, or only the one for ``address``.

    Call it before closing a cluster, so that no cached client is left reconnecting to its scheduler.
    """
    with _LOCK:
        for key in list(_CLIENTS) if address is None else [address]:
            client = _CLIENTS.pop(key, None)
            if client is not None:
                _close_quietly(client, timeout_s)


def _close_quietly(client: Client, timeout_s: float = 10.0) -> None:
    try:
        client.close(timeout=timeout_s)
    except Exception as exc:  # scheduler already gone or slow to answer: nothing left to release here
        log.debug("closing a Dask client: %s", exc)


@task(name="rollout-shard", task_run_name="{spec.phase}-iter-{spec.iteration}-shard-{spec.shard}",
      retries=2, retry_delay_seconds=5, cache_policy=NONE)  # idempotence is the shard's own commit:
# no Prefect cache key to hash from the spec on every run, no result records
def rollout_shard(spec: ShardSpec, dask_address: str) -> ShardSummary:
    client = dask_client(dask_address)
    key = f"{spec.run_id}-{spec.phase}-i{spec.iteration}-s{spec.shard}"
    summary: ShardSummary = client.submit(run_shard, spec, key=key, pure=False).result()
    get_run_logger().info("%s: %d episodes, %d successes, %d errors%s", key, summary.episodes,
                          summary.successes, summary.errors, " (already committed)" if summary.skipped else "")
    return summary
