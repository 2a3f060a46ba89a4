"""DuckDB views and canned reports, checked against numbers computed independently with numpy/pyarrow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aworld_core.analysis import REPORTS, QueryError, connect, query, run_reports
from aworld_core.analysis.reports import REWARD_BUCKETS
from aworld_core.storage.store import RunNotFound, RunStore, ShardKey
from aworld_core.storage.synthetic import synthetic_shard
from aworld_core.storage.uri import StorageLocation

SHARDS = [ShardKey(0, "rollout", 0), ShardKey(0, "rollout", 1), ShardKey(0, "eval", 0), ShardKey(1, "rollout", 0)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[StorageLocation, dict[str, pa.Table]]:
    """A run of 4 shards (rewards made continuous for the histogram), plus the tables as written."""
    loc = StorageLocation(str(tmp_path_factory.mktemp("runs")))
    store = RunStore(loc, "r")
    written: dict[str, list[pa.Table]] = {}
    rng = np.random.default_rng(0)
    for i, key in enumerate(SHARDS):
        tables = synthetic_shard("r", key, 300 + 50 * i, seed=i)
        eps = tables["episodes"]
        tables["episodes"] = eps.set_column(eps.schema.get_field_index("reward"), "reward",
                                            pa.array(rng.uniform(-1, 3, eps.num_rows).astype(np.float32)))
        store.commit_shard(key, tables)
        for name, t in tables.items():
            written.setdefault(name, []).append(t)
    # a crashed shard (data, no manifest) that must not be counted anywhere
    orphan = synthetic_shard("r", ShardKey(1, "eval", 0), 999, seed=9)
    for name, t in orphan.items():
        store._write_table_atomic(ShardKey(1, "eval", 0).rel(name, attempt="crashed"), t)
    return loc, {name: pa.concat_tables(ts) for name, ts in written.items()}


def _reports(loc: StorageLocation) -> dict[str, list[dict]]:
    return {r.name: r.table.to_pylist() for r in run_reports(loc, "r")}


def test_views_hold_exactly_the_committed_rows(run) -> None:
    loc, tables = run
    with connect(loc, "r") as con:
        for name in ("episodes", "turns", "tool_calls"):
            assert con.sql(f"SELECT count(*) FROM {name}").fetchall() == [(tables[name].num_rows,)]
        assert con.sql("SELECT count(*), sum(turns) FROM commits").fetchall() == [(4, tables["turns"].num_rows)]
        # joins work across views
        joined = con.sql("SELECT count(*) FROM turns t JOIN episodes e USING (episode_id)").fetchall()
        assert joined == [(tables["turns"].num_rows,)]


def test_query_pushes_projection_and_filters_into_the_arrow_scan(run) -> None:
    loc, _ = run
    with connect(loc, "r") as con:
        plan = "\n".join(r[1] for r in con.sql(
            "EXPLAIN SELECT avg(reward) FROM episodes WHERE iteration = 1 AND phase = 'rollout'").fetchall())
    assert "ARROW_SCAN" in plan
    scan = plan[plan.index("ARROW_SCAN"):]
    assert "Projections: reward" in scan and '"iteration" = 1' in scan and "\"phase\" = 'rollout'" in scan


def test_query_returns_arrow(run) -> None:
    loc, tables = run
    t = query(loc, "r", "SELECT phase, count(*) AS n FROM turns GROUP BY phase ORDER BY phase")
    expected = tables["turns"].group_by("phase").aggregate([("phase", "count")]).sort_by("phase")
    assert t.column("phase").to_pylist() == expected["phase"].to_pylist()
    assert t.column("n").to_pylist() == expected["phase_count"].to_pylist()


def test_success_report(run) -> None:
    loc, tables = run
    rows = {(r["iteration"], r["phase"]): r for r in _reports(loc)["success"]}
    eps = tables["episodes"]
    assert set(rows) == {(0, "eval"), (0, "rollout"), (1, "rollout")}
    for (it, phase), r in rows.items():
        sel = eps.filter(pc.and_(pc.equal(eps["iteration"], it), pc.equal(eps["phase"], phase)))
        success = np.asarray(sel["success"])
        reward = np.asarray(sel["reward"], dtype=np.float64)
        assert r["episodes"] == sel.num_rows and r["successes"] == success.sum()
        assert r["success_rate"] == pytest.approx(success.mean())
        assert r["mean_reward"] == pytest.approx(reward.mean(), rel=1e-6)
        assert r["std_reward"] == pytest.approx(reward.std(ddof=1), rel=1e-5)


def test_reward_distribution_report(run) -> None:
    loc, tables = run
    rows = _reports(loc)["reward_distribution"]
    eps = tables["episodes"]
    all_rewards = np.asarray(eps["reward"], dtype=np.float64)
    edges = np.linspace(all_rewards.min(), all_rewards.max(), REWARD_BUCKETS + 1)
    for it, phase in [(0, "eval"), (0, "rollout"), (1, "rollout")]:
        sel = eps.filter(pc.and_(pc.equal(eps["iteration"], it), pc.equal(eps["phase"], phase)))
        hist, _ = np.histogram(np.asarray(sel["reward"], dtype=np.float64), bins=edges)
        got = {r["bucket"]: r for r in rows if (r["iteration"], r["phase"]) == (it, phase)}
        assert {b: r["episodes"] for b, r in got.items()} == {b: int(n) for b, n in enumerate(hist) if n}
        assert sum(r["fraction"] for r in got.values()) == pytest.approx(1.0)
        for b, r in got.items():
            assert r["reward_from"] == pytest.approx(edges[b], rel=1e-6, abs=1e-6)
            assert r["reward_to"] == pytest.approx(edges[b + 1], rel=1e-6, abs=1e-6)


def test_tool_usage_report(run) -> None:
    loc, tables = run
    rows = {r["tool"]: r for r in _reports(loc)["tool_usage"]}
    calls = tables["tool_calls"]
    names = set(calls["name"].to_pylist())
    assert set(rows) == names
    for name in names:
        sel = calls.filter(pc.equal(calls["name"], name))
        errors = sel.num_rows - sel["error"].null_count
        assert rows[name]["calls"] == sel.num_rows and rows[name]["errors"] == errors
        assert rows[name]["error_rate"] == pytest.approx(errors / sel.num_rows)
        lat = np.asarray(sel["latency_s"], dtype=np.float64)
        assert rows[name]["p95_latency_s"] == pytest.approx(np.quantile(lat, 0.95), rel=1e-5)
    counts = [r["calls"] for r in _reports(loc)["tool_usage"]]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("metric,table,column", [
    ("episode_total_s", "episodes", "total_s"), ("episode_model_s", "episodes", "model_s"),
    ("episode_tool_s", "episodes", "tool_s"), ("turn_model_latency_s", "turns", "model_latency_s")])
def test_latency_report(run, metric: str, table: str, column: str) -> None:
    loc, tables = run
    rows = [r for r in _reports(loc)["latency"] if r["metric"] == metric]
    assert {r["phase"] for r in rows} == {"rollout", "eval"}
    t = tables[table]
    for r in rows:
        v = np.asarray(t.filter(pc.equal(t["phase"], r["phase"]))[column], dtype=np.float64)
        assert r["n"] == len(v)
        for q in (50, 95, 99):
            assert r[f"p{q}"] == pytest.approx(np.quantile(v, q / 100), rel=1e-5), q
        assert r["max"] == pytest.approx(v.max())


def test_tokens_report(run) -> None:
    loc, tables = run
    eps = tables["episodes"]
    rows = _reports(loc)["tokens"]
    assert {r["metric"] for r in rows} == {"prompt_tokens", "response_tokens", "total_tokens"}
    for r in rows:
        v = np.asarray(eps.filter(pc.equal(eps["phase"], r["phase"]))[r["metric"]], dtype=np.float64)
        assert r["episodes"] == len(v) and r["mean"] == pytest.approx(v.mean())
        assert r["p50"] == pytest.approx(np.quantile(v, 0.5)) and r["p95"] == pytest.approx(np.quantile(v, 0.95))


def test_stop_reasons_report(run) -> None:
    loc, tables = run
    eps = tables["episodes"]
    rows = _reports(loc)["stop_reasons"]
    expected = eps.group_by(["iteration", "phase", "stop_reason"]).aggregate([("stop_reason", "count")])
    assert sorted((r["iteration"], r["phase"], r["stop_reason"], r["episodes"]) for r in rows) == \
        sorted((e["iteration"], e["phase"], e["stop_reason"], e["stop_reason_count"]) for e in expected.to_pylist())


def test_every_report_works_on_an_empty_run(tmp_path: Path) -> None:
    loc = StorageLocation(str(tmp_path))
    RunStore(loc, "empty").write_json("state.json", {"iteration": 0})  # exists, nothing committed
    zero = RunStore(loc, "zero")  # committed shards with zero rows
    zero.commit_shard(SHARDS[0], {name: t.slice(0, 0) for name, t in synthetic_shard("zero", SHARDS[0], 3).items()})
    for run_id in ("empty", "zero"):
        results = run_reports(loc, run_id)
        assert [r.name for r in results] == list(REPORTS)
        assert all(r.table.num_rows == 0 for r in results), run_id


def test_all_runs_and_errors(run, tmp_path: Path) -> None:
    loc, tables = run
    other = RunStore(loc, "other")
    other.commit_shard(SHARDS[0], synthetic_shard("other", SHARDS[0], 10))
    try:
        t = query(loc, None, "SELECT run_id, count(*) AS n FROM turns GROUP BY run_id ORDER BY run_id")
        assert t.to_pylist() == [{"run_id": "other", "n": 10}, {"run_id": "r", "n": tables["turns"].num_rows}]
        assert {r["run_id"] for r in run_reports(loc, None, "success")[0].table.to_pylist()} == {"other", "r"}
    finally:
        import shutil

        shutil.rmtree(Path(loc.base) / "other")
    with pytest.raises(RunNotFound, match="no run 'nope'.*runs there: r"):
        query(loc, "nope", "SELECT 1")
    with pytest.raises(QueryError, match="(?s)Parser Error.*views: episodes"):
        query(loc, "r", "SELEC 1")
    with pytest.raises(QueryError, match="no_such_column"):
        query(loc, "r", "SELECT no_such_column FROM episodes")
    with pytest.raises(QueryError, match="unknown report"):
        run_reports(loc, "r", "nope")
    assert query(StorageLocation(str(tmp_path / "none")), None, "SELECT count(*) AS n FROM episodes").to_pylist() \
        == [{"n": 0}]


def test_every_example_query_in_the_docs_runs(tmp_path: Path) -> None:
    """docs/analysis.md's SQL stays valid: each example runs on a run built by the rollout code path."""
    import re

    from aworld_core.agent.loop import EpisodeResult, ToolCallRecord, TurnRecord
    from aworld_core.envs.base import Task
    from aworld_core.storage.schema import EpisodeContext, episode_tables

    def result(k: int) -> EpisodeResult:
        turns = [TurnRecord(0, 30, [5, 6], [-0.5, -0.1], "<tool_call>..</tool_call>", "stop", 0.2, [9]),
                 TurnRecord(1, 33, [7], [-0.2], "<answer>2</answer>", "stop", 0.1)]
        return EpisodeResult(Task(f"t{k // 2}", "1+1?", "2", "train"), [1, 2], [1, 2, 5, 6, 9, 7], [0, 0, 1, 1, 0, 1],
                             [0, 0, -0.5, -0.1, 0, -0.2],
                             [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "<answer>2</answer>"}],
                             turns, [ToolCallRecord(0, 0, "calculator", "{}", "2", 0.01, None if k % 3 else "bad")],
                             "2", "answer" if k % 4 else "max_new_tokens", reward=float(k % 2), success=bool(k % 2))

    loc = StorageLocation(str(tmp_path))
    store = RunStore(loc, "docs")
    for phase in ("rollout", "eval"):
        ctx = EpisodeContext("docs", 0, phase, 0, "arithmetic", "docs/iter-0")
        store.commit_shard(ShardKey(0, phase, 0), episode_tables([(k, result(k)) for k in range(6)], ctx))
    doc = (Path(__file__).resolve().parents[2] / "docs" / "analysis.md").read_text()
    examples = re.findall(r"```sql\n(.*?)```", doc, re.S)
    assert len(examples) >= 6
    with connect(loc, "docs") as con:
        for text in examples:
            con.sql(text.replace("i0-arith-heldout-1234-0-s0", "i0-t0-s0")).to_arrow_table()
        transcript = con.sql(examples[-2].replace("i0-arith-heldout-1234-0-s0", "i0-t0-s0")).fetchall()
        assert transcript == [("user", "1+1?"), ("assistant", "<answer>2</answer>")]
