"""The run store's guarantees, checked the same way on local disk and on a real S3 server (SeaweedFS).

Every test taking ``storage_location`` runs twice: ``[local]`` and ``[s3]`` (the latter marked slow).
The S3-only tests at the end check that bad credentials and a missing bucket fail with clear errors.
"""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pytest

from aworld_core.analysis import connect, run_reports
from aworld_core.errors import StorageError
from aworld_core.storage.schema import TABLES
from aworld_core.storage.store import RunNotFound, RunStore, ShardKey, list_runs
from aworld_core.storage.synthetic import synthetic_shard
from aworld_core.storage.uri import StorageLocation

KEY = ShardKey(iteration=0, phase="rollout", shard=3)


def _sorted(t: pa.Table) -> pa.Table:
    keys = [(c, "ascending") for c in ("episode_id", "turn_index", "call_index") if c in t.column_names]
    return t.sort_by(keys)


def _data_files(store: RunStore) -> list[str]:
    out = []
    for table in TABLES:
        sel = pafs.FileSelector(store.path(table), recursive=True, allow_not_found=True)
        out += [i.path for i in store.fs.get_file_info(sel) if i.type == pafs.FileType.File]
    return out


def test_commit_then_read_roundtrip(storage_location: StorageLocation) -> None:
    store = RunStore(storage_location, "r1")
    tables = synthetic_shard("r1", KEY, turns=40, seed=1)
    manifest = store.commit_shard(KEY, tables, extra={"summary": {"episodes": tables["episodes"].num_rows}})

    assert manifest["rows"] == {name: t.num_rows for name, t in tables.items()}
    assert store.manifest(KEY) == manifest
    assert [m["shard"] for m in store.manifests()] == [3]
    assert store.manifests(iteration=1) == [] and store.manifests(phase="eval") == []
    for name, t in tables.items():
        assert _sorted(store.read(name)).equals(_sorted(t.cast(TABLES[name]))), name
    part = store.read("turns", iteration=0, phase="rollout", columns=["episode_id", "response_ids"])
    assert part.column_names == ["episode_id", "response_ids"] and part.num_rows == 40
    assert store.read("evaluations").num_rows == 0  # a table with no committed files reads as empty
    assert store.exists() and list_runs(storage_location) == ["r1"]


def test_recommitting_a_shard_never_duplicates_rows(storage_location: StorageLocation) -> None:
    store = RunStore(storage_location, "r2")
    first = synthetic_shard("r2", KEY, turns=30, seed=1)
    retry = synthetic_shard("r2", KEY, turns=25, seed=2)  # a retried shard may sample differently
    store.commit_shard(KEY, first)
    store.commit_shard(KEY, first)
    assert store.read("turns").num_rows == 30
    store.commit_shard(KEY, retry)
    for name, t in retry.items():
        assert _sorted(store.read(name)).equals(_sorted(t.cast(TABLES[name]))), name
    assert len(store.manifests()) == 1
    # each re-commit deleted the files of the attempt it superseded: only the current ones are left
    assert sorted(_data_files(store)) == sorted(store.path(r) for r in store.manifest(KEY)["files"].values())
    assert store.orphans(min_age_s=0) == []


def test_crash_between_data_files_and_manifest_is_invisible(storage_location: StorageLocation,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(storage_location, "r3")
    original = store._write_bytes_atomic

    def crash_at_commit_point(rel: str, payload: bytes) -> None:
        if rel.startswith("_commits/"):
            raise OSError("simulated crash before the manifest was written")
        original(rel, payload)

    monkeypatch.setattr(store, "_write_bytes_atomic", crash_at_commit_point)
    with pytest.raises(StorageError, match="could not commit shard"):
        store.commit_shard(KEY, synthetic_shard("r3", KEY, turns=20, seed=1))
    assert len(_data_files(store)) == 3  # the data files did land...
    reader = RunStore(storage_location, "r3")  # ...but a reader sees nothing
    assert reader.manifest(KEY) is None and reader.manifests() == []
    assert all(reader.read(name).num_rows == 0 for name in TABLES)
    with connect(storage_location, "r3") as con:
        assert con.sql("SELECT count(*) FROM turns").fetchall() == [(0,)]

    # the retry commits once; a later crashed re-attempt leaves the committed attempt untouched
    monkeypatch.setattr(store, "_write_bytes_atomic", original)
    good = synthetic_shard("r3", KEY, turns=20, seed=2)
    store.commit_shard(KEY, good)
    monkeypatch.setattr(store, "_write_bytes_atomic", crash_at_commit_point)
    with pytest.raises(StorageError):
        store.commit_shard(KEY, synthetic_shard("r3", KEY, turns=50, seed=3))
    assert _sorted(reader.read("turns")).equals(_sorted(good["turns"].cast(TABLES["turns"])))


def test_concurrent_commits_of_different_shards(storage_location: StorageLocation) -> None:
    keys = [ShardKey(it, phase, k) for it in (0, 1) for phase in ("rollout", "eval") for k in range(3)]
    data = {k: synthetic_shard("r4", k, turns=10 + i, seed=i) for i, k in enumerate(keys)}
    store = RunStore(storage_location, "r4")
    barrier = threading.Barrier(6)

    def commit(k: ShardKey) -> dict:
        barrier.wait()  # start together
        return store.commit_shard(k, data[k])

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(commit, keys))
    fresh = RunStore(storage_location, "r4")
    assert sorted((m["iteration"], m["phase"], m["shard"]) for m in fresh.manifests()) == \
        sorted((k.iteration, k.phase, k.shard) for k in keys)
    assert fresh.read("turns").num_rows == sum(d["turns"].num_rows for d in data.values())
    assert fresh.read("turns", iteration=1, phase="eval").num_rows == \
        sum(d["turns"].num_rows for k, d in data.items() if (k.iteration, k.phase) == (1, "eval"))


def test_racing_attempts_of_one_shard_are_never_mixed(storage_location: StorageLocation) -> None:
    """A retry racing a straggler: readers see one attempt's complete set of files, not a blend."""
    attempts = [synthetic_shard("r5", KEY, turns=20 + i, seed=i) for i in range(4)]
    store = RunStore(storage_location, "r5")
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda d: store.commit_shard(KEY, d), attempts))
    episodes, turns, calls = (store.read(t) for t in ("episodes", "turns", "tool_calls"))
    winner = [a for a in attempts if a["turns"].num_rows == turns.num_rows]
    assert len(winner) == 1
    assert episodes.num_rows == winner[0]["episodes"].num_rows
    assert calls.num_rows == winner[0]["tool_calls"].num_rows
    assert set(pc.unique(turns["episode_id"]).to_pylist()) == set(episodes["episode_id"].to_pylist())


def test_duckdb_views_and_reports_over_the_backend(storage_location: StorageLocation) -> None:
    store = RunStore(storage_location, "r6")
    for k in range(2):
        store.commit_shard(ShardKey(0, "rollout", k), synthetic_shard("r6", ShardKey(0, "rollout", k), 50, seed=k))
    RunStore(storage_location, "other").commit_shard(KEY, synthetic_shard("other", KEY, 7, seed=9))
    with connect(storage_location, "r6") as con:
        assert con.sql("SELECT count(*) FROM turns WHERE phase = 'rollout'").fetchall() == [(100,)]
        assert con.sql("SELECT count(DISTINCT run_id) FROM episodes").fetchall() == [(1,)]
    with connect(storage_location, None) as con:
        assert con.sql("SELECT run_id, count(*) FROM turns GROUP BY 1 ORDER BY 1").fetchall() == \
            [("other", 7), ("r6", 100)]
    reports = {r.name: r.table for r in run_reports(storage_location, "r6")}
    assert reports["success"].column("episodes").to_pylist() == [store.read("episodes").num_rows]
    with pytest.raises(RunNotFound, match="no run 'nope'"):
        connect(storage_location, "nope")


# -- S3 only: clear errors -------------------------------------------------------------------------
@pytest.mark.slow
def test_wrong_s3_keys_fail_with_a_clear_error(s3_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = RunStore(s3_env.location("bad-keys"), "r")
    with pytest.raises(StorageError) as err:
        store.commit_shard(KEY, synthetic_shard("r", KEY, 5))
    msg = str(err.value)
    assert s3_env.endpoint_url in msg and "AWS_ACCESS_KEY_ID" in msg and "AWS_SECRET_ACCESS_KEY" in msg
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID"):
        RunStore(s3_env.location("bad-keys"), "r").manifests()
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID"):
        RunStore(s3_env.location("bad-keys"), "r").read_json("state.json")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unknown-key")
    with pytest.raises(StorageError, match="refused access"):
        RunStore(s3_env.location("bad-keys"), "r").check_access()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID"):
        RunStore(s3_env.location("bad-keys"), "r").check_access()


@pytest.mark.slow
def test_missing_bucket_says_to_create_it(s3_env) -> None:
    loc = StorageLocation("s3://no-such-bucket-here/runs", s3_endpoint_url=s3_env.endpoint_url)
    with pytest.raises(StorageError, match=r"bucket 'no-such-bucket-here' does not exist.*create it") as err:
        RunStore(loc, "r").commit_shard(KEY, synthetic_shard("r", KEY, 5))
    assert "aws s3 mb s3://no-such-bucket-here --endpoint-url " + s3_env.endpoint_url in str(err.value)
    with pytest.raises(StorageError, match="does not exist"):
        RunStore(loc, "r").manifests()


@pytest.mark.slow
def test_unreachable_endpoint_names_it(s3_env) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    loc = StorageLocation(f"s3://{s3_env.bucket}/runs", s3_endpoint_url=endpoint)
    with pytest.raises(StorageError, match=f"no answer from S3 endpoint {endpoint}"):
        RunStore(loc, "r").check_access()


@pytest.mark.slow
def test_s3_objects_are_where_the_manifest_says(s3_env) -> None:
    """The layout on S3 is the documented one, readable with plain boto3."""
    import boto3

    loc = s3_env.location("layout")
    m = RunStore(loc, "r").commit_shard(KEY, synthetic_shard("r", KEY, 5))
    client = boto3.client("s3", endpoint_url=s3_env.endpoint_url, region_name=s3_env.region)
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=s3_env.bucket, Prefix="layout/r/")["Contents"]}
    assert keys == {f"layout/r/{rel}" for rel in m["files"].values()} | {
        "layout/r/_commits/iteration=0/phase=rollout/shard-00003.json"}


@pytest.mark.slow
def test_a_second_server_runs_beside_the_first_and_stops_cleanly(s3) -> None:
    import glob
    import os

    from aworld_core.storage.s3_server import SeaweedS3

    with SeaweedS3() as other:
        assert other.endpoint_url != s3.endpoint_url and not set(other.ports.values()) & {
            int(s3.endpoint_url.rsplit(":", 1)[1])}
        bucket = other.create_bucket("second")
        other.client().put_object(Bucket=bucket, Key="k", Body=b"v")
        assert other.client().get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
        pid, workdir, ports = other.proc.pid, other.workdir, dict(other.ports)
        assert glob.glob(f"/tmp/seaweedfs-*-{ports['s3']}.sock")
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    assert not workdir.exists()
    assert not [p for port in ports.values() for p in glob.glob(f"/tmp/seaweedfs-*-{port}.sock")]
