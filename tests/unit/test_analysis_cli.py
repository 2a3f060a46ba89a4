"""``aworld query`` / ``aworld report`` through typer's CliRunner on a small local run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from aworld_cli.analysis import register
from aworld_core.analysis import REPORTS
from aworld_core.storage.store import RunStore, ShardKey
from aworld_core.storage.synthetic import synthetic_shard
from aworld_core.storage.uri import StorageLocation

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("runs")
    store = RunStore(StorageLocation(str(root)), "run1")
    for key in (ShardKey(0, "rollout", 0), ShardKey(0, "eval", 0), ShardKey(1, "rollout", 0)):
        store.commit_shard(key, synthetic_shard("run1", key, 40, seed=key.iteration))
    RunStore(StorageLocation(str(root)), "empty").write_json("state.json", {})
    return str(root)


def test_query_formats(app: typer.Typer, uri: str) -> None:
    sql = "SELECT iteration, phase, count(*) AS turns FROM turns GROUP BY ALL ORDER BY ALL"
    r = runner.invoke(app, ["query", sql, "--run", "run1", "--uri", uri, "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [{"iteration": 0, "phase": "eval", "turns": 40},
                                    {"iteration": 0, "phase": "rollout", "turns": 40},
                                    {"iteration": 1, "phase": "rollout", "turns": 40}]
    r = runner.invoke(app, ["query", sql, "-r", "run1", "--uri", uri, "-f", "csv"])
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == '"iteration","phase","turns"'
    assert r.stdout.splitlines()[1:] == ['0,"eval",40', '0,"rollout",40', '1,"rollout",40']
    r = runner.invoke(app, ["query", sql, "--run", "run1", "--uri", uri])
    assert r.exit_code == 0 and "rollout" in r.stdout and "turns" in r.stdout
    r = runner.invoke(app, ["query", "SELECT * FROM turns", "--run", "run1", "--uri", uri, "--limit", "3"])
    assert r.exit_code == 0 and "showing 3 of 120 rows" in r.stdout


def test_query_over_all_runs_and_env_default(app: typer.Typer, uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWORLD_STORAGE_URI", uri)
    r = runner.invoke(app, ["query", "SELECT DISTINCT run_id FROM episodes", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [{"run_id": "run1"}]


def test_report_all_and_named(app: typer.Typer, uri: str) -> None:
    r = runner.invoke(app, ["report", "run1", "--uri", uri])
    assert r.exit_code == 0, r.output
    for name in REPORTS:
        assert f"{name} (run1" in r.stdout
    r = runner.invoke(app, ["report", "run1", "--uri", uri, "--canned", "latency", "--canned", "stop_reasons",
                            "--format", "json"])
    out = json.loads(r.stdout)
    assert list(out) == ["latency", "stop_reasons"]
    assert {row["metric"] for row in out["latency"]} >= {"episode_total_s", "turn_model_latency_s"}
    r = runner.invoke(app, ["report", "empty", "--uri", uri, "--canned", "all"])
    assert r.exit_code == 0 and r.stdout.count("(no rows)") == len(REPORTS)


@pytest.mark.parametrize("args,message", [
    (["report", "missing"], "no run 'missing'"),
    (["query", "SELECT 1", "--run", "missing"], "no run 'missing'"),
    (["query", "SELEC * FROM episodes", "--run", "run1"], "Parser Error"),
    (["query", "SELECT * FROM rewards", "--run", "run1"], "rewards"),
    (["report", "run1", "--canned", "nope"], "unknown report"),
    (["query", "SELECT 1", "--s3-endpoint", "http://127.0.0.1:1"], "not an s3:// URI"),
])
def test_bad_input_exits_2_with_a_message(app: typer.Typer, uri: str, args: list[str], message: str) -> None:
    r = runner.invoke(app, [*args, "--uri", uri])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_storage_failure_exits_3(app: typer.Typer, tmp_path: Path) -> None:
    run = tmp_path / "broken"
    (run / "_commits").mkdir(parents=True)
    (run / "_commits" / "shard-00000.json").write_text("{not json")
    r = runner.invoke(app, ["report", "broken", "--uri", str(tmp_path)])
    assert r.exit_code == 3, r.output
    assert "error:" in r.output
