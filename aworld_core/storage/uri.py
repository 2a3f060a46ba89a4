"""One URI scheme for local disk and S3: a path, ``file://...`` or ``s3://bucket/prefix``.

Both go through ``pyarrow.fs`` so the writer, the reader and DuckDB's scans are one code path.
S3 credentials are read only from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the
usual AWS credential chain); they are never part of a config file, a log line or a stored row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from aworld_core.errors import ConfigError


@dataclass(frozen=True)
class StorageLocation:
    """Where a run's data lives: a pyarrow filesystem and a base path inside it (no scheme)."""

    uri: str
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def filesystem(self) -> pafs.FileSystem:
        if self.is_s3:
            return s3_filesystem(self.s3_endpoint_url, self.s3_region)
        return pafs.LocalFileSystem()

    @property
    def base(self) -> str:
        """The base path as the filesystem sees it: ``bucket/prefix`` or an absolute local path."""
        if self.is_s3:
            p = urlparse(self.uri)
            if not p.netloc:
                raise ConfigError(f"storage.uri {self.uri!r} needs a bucket: s3://bucket/prefix")
            return f"{p.netloc}{p.path}".rstrip("/")
        path = self.uri[len("file://"):] if self.uri.startswith("file://") else self.uri
        return str(Path(path).expanduser().resolve())

    def join(self, *parts: str) -> str:
        return "/".join([self.base, *(p.strip("/") for p in parts if p)])

    def display(self, *parts: str) -> str:
        """A URI a person can paste: ``s3://bucket/prefix/...`` or a local path."""
        inner = self.join(*parts)
        return f"s3://{inner}" if self.is_s3 else inner


def s3_filesystem(endpoint_url: str | None, region: str) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem; ``endpoint_url`` like ``http://127.0.0.1:8333`` for an S3-compatible server."""
    kwargs: dict[str, object] = {"region": region, "connect_timeout": 5.0}
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        kwargs.update(access_key=key, secret_key=secret)
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    if endpoint_url:
        p = urlparse(endpoint_url)
        if p.scheme not in ("http", "https") or not p.netloc:
            raise ConfigError(f"storage.s3_endpoint_url {endpoint_url!r} must look like http://host:port")
        kwargs.update(endpoint_override=p.netloc, scheme=p.scheme)
    return pafs.S3FileSystem(**kwargs)
