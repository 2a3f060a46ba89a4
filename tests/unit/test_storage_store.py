"""RunStore on local disk: commits, exactly-once under retries and crashes, schema evolution, housekeeping.

The same guarantees are checked against a real S3 server in tests/integration/test_storage_s3.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aworld_core.agent.loop import EpisodeResult, ToolCallRecord, TurnRecord
from aworld_core.envs.base import Task
from aworld_core.errors import StorageError
from aworld_core.storage.schema import (EPISODES, READER_SHIMS, SCHEMA_VERSION, TABLES, TURNS, EpisodeContext,
                                        episode_tables)
from aworld_core.storage.store import RunStore, ShardKey, check_access, list_runs
from aworld_core.storage.synthetic import synthetic_shard
from aworld_core.storage.uri import StorageLocation

KEY = ShardKey(0, "rollout", 1)


def _result(task_id: str, turns: int, success: bool) -> EpisodeResult:
    t = [TurnRecord(turn_index=i, context_tokens=10 + 5 * i, response_ids=[7, 8, 9], response_logprobs=[-0.1] * 3,
                    response_text="<answer>1</answer>" if i == turns - 1 else "<tool_call>..</tool_call>",
                    finish_reason="stop", model_latency_s=0.25, observation_ids=[] if i == turns - 1 else [4, 4])
         for i in range(turns)]
    calls = [ToolCallRecord(turn_index=i, call_index=0, name="calculator", arguments='{"expression": "1+1"}',
                            result="2", latency_s=0.01, error=None if i else "ToolError: boom")
             for i in range(turns - 1)]
    return EpisodeResult(task=Task(task_id, "What is 1+1?", "2", "train"), prompt_ids=[1, 2, 3],
                         token_ids=[1, 2, 3] + [7, 8, 9] * turns, loss_mask=[0, 0, 0] + [1, 1, 1] * turns,
                         logprobs=[0.0] * 3 + [-0.1] * 3 * turns, messages=[{"role": "user", "content": "q"}],
                         turns=t, tool_calls=calls, answer="2" if success else None, stop_reason="answer",
                         reward=float(success), success=success, model_s=0.25 * turns, tool_s=0.01, total_s=1.0)


def test_episode_tables_commit_and_read_back(tmp_path: Path) -> None:
    """The rollout path: EpisodeResults -> episode_tables -> commit_shard -> read."""
    ctx = EpisodeContext("run", 0, "rollout", 1, "arithmetic", "run/iter-0")
    tables = episode_tables([(0, _result("t0", 3, True)), (1, _result("t0", 1, False))], ctx)
    store = RunStore(StorageLocation(str(tmp_path)), "run")
    m = store.commit_shard(KEY, tables, extra={"summary": {"episodes": 2}})
    assert m["rows"] == {"episodes": 2, "turns": 4, "tool_calls": 2} and m["summary"] == {"episodes": 2}
    eps = store.read("episodes").sort_by("sample_index")
    assert eps["episode_id"].to_pylist() == ["i0-t0-s0", "i0-t0-s1"]
    assert eps["num_tool_errors"].to_pylist() == [1, 0] and eps["response_tokens"].to_pylist() == [9, 3]
    assert store.read("turns", columns=["turn_index"])["turn_index"].to_pylist() == [0, 1, 2, 0]
    assert store.read("tool_calls")["error"].to_pylist() == ["ToolError: boom", None]


def test_layout_manifest_and_atomic_files(tmp_path: Path) -> None:
    store = RunStore(StorageLocation(f"file://{tmp_path}"), "run")
    m = store.commit_shard(KEY, synthetic_shard("run", KEY, 12))
    run = tmp_path / "run"
    manifest_path = run / "_commits/iteration=0/phase=rollout/shard-00001.json"
    assert json.loads(manifest_path.read_text()) == m
    assert m["schema_version"] == SCHEMA_VERSION and len(m["attempt"]) == 12
    for table, rel in m["files"].items():
        assert rel == f"{table}/iteration=0/phase=rollout/shard-00001-{m['attempt']}.parquet"
        assert (run / rel).stat().st_size == m["bytes"][table]
        assert pq.read_schema(run / rel).equals(TABLES[table])
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]  # no temp files left behind


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    store = RunStore(StorageLocation(str(tmp_path)), "run")
    tables = synthetic_shard("run", KEY, 5)
    with pytest.raises(StorageError, match="unknown table"):
        store.commit_shard(KEY, {**tables, "rewards": tables["turns"]})
    with pytest.raises(StorageError, match="do not match the schema"):
        store.commit_shard(KEY, {"turns": tables["turns"].drop_columns(["response_ids"])})
    assert not (tmp_path / "run").exists()
    with pytest.raises(StorageError, match="invalid run id"):
        RunStore(StorageLocation(str(tmp_path)), "a/b")


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(StorageLocation(str(tmp_path)), "run")

    def failing_write(table, where, **kwargs):  # noqa: ANN001
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", failing_write)
    with pytest.raises(StorageError, match="disk full"):
        store.commit_shard(KEY, synthetic_shard("run", KEY, 5))
    assert [p for p in (tmp_path / "run").rglob("*") if p.is_file()] == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 6), st.booleans()), min_size=1, max_size=8))
def test_exactly_once_under_retries_and_crashes(tmp_path_factory: pytest.TempPathFactory,
                                                ops: list[tuple[int, int, bool]]) -> None:
    """Any sequence of (shard, turns, crashes-before-manifest): readers see each shard's last good commit."""
    store = RunStore(StorageLocation(str(tmp_path_factory.mktemp("s"))), "run")
    original = store._write_bytes_atomic
    expected: dict[int, int] = {}
    for i, (shard, turns, crash) in enumerate(ops):
        key = ShardKey(0, "rollout", shard)

        def write(rel: str, payload: bytes, crash: bool = crash) -> None:
            if crash and rel.startswith("_commits/"):
                raise OSError("killed")
            original(rel, payload)

        store._write_bytes_atomic = write  # type: ignore[method-assign]
        if crash:
            with pytest.raises(StorageError):
                store.commit_shard(key, synthetic_shard("run", key, turns, seed=i))
        else:
            store.commit_shard(key, synthetic_shard("run", key, turns, seed=i))
            expected[shard] = turns
    reader = RunStore(store.location, "run")
    assert {m["shard"]: m["rows"]["turns"] for m in reader.manifests()} == expected
    turns_t = reader.read("turns", columns=["shard"])
    assert turns_t.num_rows == sum(expected.values())
    counts = turns_t.group_by("shard").aggregate([("shard", "count")]).to_pylist()
    assert {c["shard"]: c["shard_count"] for c in counts} == expected


def test_filters_on_iteration_and_phase(tmp_path: Path) -> None:
    store = RunStore(StorageLocation(str(tmp_path)), "run")
    for it, phase, n in [(0, "rollout", 3), (0, "eval", 4), (1, "rollout", 5), (10, "rollout", 6)]:
        key = ShardKey(it, phase, 0)
        store.commit_shard(key, synthetic_shard("run", key, n))
    assert store.read("turns").num_rows == 18
    assert store.read("turns", iteration=1).num_rows == 5  # not iteration=10
    assert store.read("turns", phase="rollout").num_rows == 14
    assert store.read("turns", iteration=0, phase="eval").num_rows == 4
    assert [(m["iteration"], m["phase"]) for m in store.manifests()] == [(0, "eval"), (0, "rollout"),
                                                                           (1, "rollout"), (10, "rollout")]


def test_manifests_of_older_layout_still_read(tmp_path: Path) -> None:
    """Runs committed before attempt-scoped file names (e.g. runs/smoke1) read unchanged."""
    run = tmp_path / "old"
    tables = synthetic_shard("old", KEY, 6)
    rel = KEY.rel("turns")  # shard-00001.parquet, no attempt
    (run / rel).parent.mkdir(parents=True)
    pq.write_table(tables["turns"], run / rel)
    commit = run / KEY.rel("_commits", "json")
    commit.parent.mkdir(parents=True)
    commit.write_text(json.dumps({"schema_version": "1.0", "run_id": "old", "iteration": 0, "phase": "rollout",
                                  "shard": 1, "files": {"turns": rel}, "rows": {"turns": 6}, "committed_at": 0}))
    assert RunStore(StorageLocation(str(tmp_path)), "old").read("turns").num_rows == 6


def _commit_raw(run: Path, key: ShardKey, table: str, data: pa.Table, version: str) -> None:
    rel = key.rel(table, attempt="x")
    (run / rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, run / rel)
    commit = run / key.rel("_commits", "json")
    commit.parent.mkdir(parents=True, exist_ok=True)
    commit.write_text(json.dumps({"schema_version": version, "run_id": run.name, "iteration": key.iteration,
                                  "phase": key.phase, "shard": key.shard, "files": {table: rel},
                                  "rows": {table: data.num_rows}}))


def test_minor_evolution_reads_missing_columns_as_null(tmp_path: Path) -> None:
    old = synthetic_shard("run", KEY, 4)["turns"].drop_columns(["observation_ids", "model_latency_s"])
    _commit_raw(tmp_path / "run", KEY, "turns", old, "1.0")
    t = RunStore(StorageLocation(str(tmp_path)), "run").read("turns")
    assert t.schema.equals(TURNS) and t["model_latency_s"].null_count == 4


def test_major_evolution_needs_a_reader_shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cur = synthetic_shard("run", KEY, 4)["turns"]
    v0 = cur.rename_columns(["latency" if c == "model_latency_s" else c for c in cur.column_names])
    _commit_raw(tmp_path / "run", KEY, "turns", v0, "0.3")
    key2 = ShardKey(1, "rollout", 0)
    RunStore(StorageLocation(str(tmp_path)), "run").commit_shard(key2, {"turns": synthetic_shard("run", key2, 3)["turns"]})
    store = RunStore(StorageLocation(str(tmp_path)), "run")
    with pytest.raises(StorageError, match="schema major version 0.*no shim"):
        store.read("turns")
    monkeypatch.setitem(READER_SHIMS, ("turns", 0),
                        lambda t: t.rename_columns(["model_latency_s" if c == "latency" else c for c in t.column_names]))
    t = store.read("turns")
    assert t.num_rows == 7 and t["model_latency_s"].null_count == 0
    _commit_raw(tmp_path / "run", ShardKey(2, "rollout", 0), "turns", cur, "2.0")
    with pytest.raises(StorageError, match="upgrade aworld-recipe"):
        store.read("turns")


def test_json_state_roundtrip(tmp_path: Path) -> None:
    store = RunStore(StorageLocation(str(tmp_path)), "run")
    assert store.read_json("state.json") is None
    store.write_json("state.json", {"iteration": 2, "stage": "train"})
    assert store.read_json("state.json") == {"iteration": 2, "stage": "train"}


def test_exists_list_runs_and_reads_never_create_directories(tmp_path: Path) -> None:
    loc = StorageLocation(str(tmp_path / "nowhere"))
    assert not RunStore(loc, "run").exists() and RunStore(loc, "run").manifests() == []
    assert list_runs(loc) == [] and not (tmp_path / "nowhere").exists()
    check_access(loc, write=True)
    assert (tmp_path / "nowhere").is_dir()
    RunStore(loc, "b").commit_shard(KEY, synthetic_shard("b", KEY, 2))
    RunStore(loc, "a").write_json("state.json", {})
    (tmp_path / "nowhere" / "not-a-run").mkdir()
    assert list_runs(loc) == ["a", "b"] and RunStore(loc, "a").exists()


def test_orphans_spare_young_files_and_vacuum_keeps_committed_data(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(StorageLocation(str(tmp_path)), "run")
    store.commit_shard(KEY, synthetic_shard("run", KEY, 8, seed=2))
    original = store._write_bytes_atomic

    def crash_before_manifest(rel: str, payload: bytes) -> None:
        if rel.startswith("_commits/"):
            raise OSError("crash")
        original(rel, payload)

    monkeypatch.setattr(store, "_write_bytes_atomic", crash_before_manifest)
    with pytest.raises(StorageError):  # a crashed re-attempt leaves three unreferenced files
        store.commit_shard(KEY, synthetic_shard("run", KEY, 5, seed=1))
    committed = {store.path(r) for r in store.manifest(KEY)["files"].values()}
    crashed = {str(p) for p in (tmp_path / "run").rglob("*.parquet")} - committed
    assert len(crashed) == 3
    assert store.orphans() == []  # younger than an hour: maybe a commit in flight
    old = time.time() - 7200
    for p in crashed | committed:
        os.utime(p, (old, old))
    assert set(store.orphans()) == crashed
    assert set(store.vacuum()) == crashed and store.read("turns").num_rows == 8
    assert {str(p) for p in (tmp_path / "run").rglob("*.parquet")} == committed


def test_recommit_deletes_the_superseded_files_only(tmp_path: Path) -> None:
    store = RunStore(StorageLocation(str(tmp_path)), "run")
    other = ShardKey(0, "rollout", 2)
    store.commit_shard(other, synthetic_shard("run", other, 4))
    for seed in range(3):
        store.commit_shard(KEY, synthetic_shard("run", KEY, 5 + seed, seed=seed))
    expected = {store.path(r) for m in store.manifests() for r in m["files"].values()}
    assert {str(p) for p in (tmp_path / "run").rglob("*.parquet")} == expected and len(expected) == 6
    assert store.read("turns").num_rows == 4 + 7


def test_episodes_schema_is_what_docs_describe() -> None:
    """docs/schema.md documents every column of every table."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "schema.md").read_text()
    for name, schema in TABLES.items():
        section = doc.split(f"## {name}", 1)[1].split("\n## ", 1)[0]
        for field in schema:
            assert f"`{field.name}`" in section, f"{name}.{field.name} missing from docs/schema.md"
    assert EPISODES.field("reward").type == pa.float32()
