"""Shared fixtures for integration tests: a real S3 server (SeaweedFS), started once per session.

``s3`` starts ``weed mini`` on loopback with random ports and its own keys, creates one bucket with
boto3 and yields an :class:`S3Info`. Tests that talk to it through the store use ``s3_env``, which sets
the AWS_* variables for that test only (the store reads credentials only from the environment).
``storage_location`` gives each test a fresh prefix on the backend it is parametrized with.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aworld_core.errors import StorageError
from aworld_core.storage.uri import StorageLocation


@dataclass(frozen=True)
class S3Info:
    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}

    def location(self, prefix: str) -> StorageLocation:
        return StorageLocation(f"s3://{self.bucket}/{prefix}", s3_endpoint_url=self.endpoint_url,
                               s3_region=self.region)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Info]:
    from aworld_core.storage.s3_server import SeaweedS3, weed_binary

    try:
        weed_binary()
    except StorageError as exc:
        pytest.skip(str(exc))
    with SeaweedS3() as server:
        bucket = server.create_bucket("aworld-test")
        yield S3Info(server.endpoint_url, bucket, server.access_key, server.secret_key, server.region)


_AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
             "AWS_DEFAULT_REGION", "AWS_PROFILE")


@pytest.fixture
def s3_env(s3: S3Info, monkeypatch: pytest.MonkeyPatch) -> S3Info:
    """The server's keys in the environment for this test only (no other AWS settings leak in)."""
    for var in _AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    return s3


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def storage_location(request: pytest.FixtureRequest, tmp_path: Path) -> StorageLocation:
    """A fresh, empty location on each backend: a temp dir, or a unique prefix in the test bucket."""
    if request.param == "local":
        return StorageLocation(str(tmp_path / "runs"))
    info: S3Info = request.getfixturevalue("s3_env")
    return info.location(f"t-{uuid.uuid4().hex[:10]}/runs")
