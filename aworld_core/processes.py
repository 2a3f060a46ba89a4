"""Helpers for the server processes the project starts (vLLM, SeaweedFS, Prefect workers in tests)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM a process group, then SIGKILL it if it has not exited within ``grace_s``.

    Servers fork children (vLLM's engine core and workers; a Prefect worker's flow runs): stopping
    only the parent would leave them behind.
    """
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
