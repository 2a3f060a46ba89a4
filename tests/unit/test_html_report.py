"""`aworld report RUN --html OUT.html` and the per-iteration artifact content, on a small committed run."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from aworld_cli.analysis import register
from aworld_core.analysis import REPORTS, connect
from aworld_core.analysis.html_report import CHARTS
from aworld_core.analysis.iterations import ITERATION_COLUMNS, artifact_key, iteration_rows, iteration_artifacts
from aworld_core.storage.schema import EVALUATIONS, SCHEMA_VERSION
from aworld_core.storage.store import RunStore, ShardKey
from aworld_core.storage.synthetic import synthetic_shard
from aworld_core.storage.uri import StorageLocation

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def commit_small_run(root: Path, run_id: str, iterations: int = 2) -> RunStore:
    """Eval + rollout shards per iteration (synthetic rows), one evaluations row each, a config.json."""
    store = RunStore(StorageLocation(str(root)), run_id)
    for i in range(iterations):
        for phase in ("eval", "rollout"):
            key = ShardKey(i, phase, 0)
            store.commit_shard(key, synthetic_shard(run_id, key, 30, seed=10 * i + len(phase)))
        eps = store.read("episodes", iteration=i, phase="eval").to_pylist()
        row = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "iteration": i,
               "policy_checkpoint": f"{run_id}/iter-{i}", "environment": "arithmetic", "split": "heldout",
               "episodes": len(eps), "successes": sum(e["success"] for e in eps),
               "success_rate": sum(e["success"] for e in eps) / len(eps),
               "mean_reward": sum(e["reward"] for e in eps) / len(eps), "temperature": 1.0, "created_at": 0.0}
        store.commit_shard(ShardKey(i, "summary", 0), {"evaluations": pa.Table.from_pylist([row], schema=EVALUATIONS)})
    store.write_json("config.json", {"run_id": run_id, "iterations": iterations, "env": {"name": "arithmetic"},
                                     "train": {"backend": "torch", "lr": 1e-5}, "storage": {"uri": str(root)}})
    store.write_json("state.json", {"completed_iterations": iterations - 1})
    return store


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    commit_small_run(root, "run1")
    RunStore(StorageLocation(str(root)), "empty").write_json("state.json", {})
    return root


def test_html_report_has_every_section_chart_and_table(app: typer.Typer, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "run1.html"
    r = runner.invoke(app, ["report", "run1", "--uri", str(root), "--html", str(out)])
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.stdout
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "AWorld run <code>run1</code>" in text and str(root / "run1") in text  # run id, storage location
    for sid in ["iterations", *(c[0] for c in CHARTS), "tables", "config"]:
        assert f'id="{sid}"' in text, sid
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 1 + len(CHARTS), [alt for alt, _ in images]  # success/reward + one per chart section
    for alt, b64 in images:
        png = base64.b64decode(b64)
        assert png.startswith(PNG) and len(png) > 5_000, alt
    for name in REPORTS:  # every canned report as an HTML table
        assert f'id="table-{name}"' in text, name
    assert "<th>p99</th>" in text and "<th>error_rate</th>" in text and "<th>stop_reason</th>" in text
    for col in ITERATION_COLUMNS:
        assert f"<th>{col}</th>" in text
    assert "train.backend" in text and "torch" in text  # config summary from config.json
    assert "completed iterations: 1" in text
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched


def test_html_report_of_an_empty_run_exits_2(app: typer.Typer, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    r = runner.invoke(app, ["report", "empty", "--uri", str(root), "--html", str(out)])
    assert r.exit_code == 2, r.output
    assert "no committed episodes or evaluations" in r.output and "Traceback" not in r.output
    assert not out.exists()
    r = runner.invoke(app, ["report", "missing", "--uri", str(root), "--html", str(out)])
    assert r.exit_code == 2 and "no run 'missing'" in r.output


def test_iteration_rows_and_artifact_content(root: Path) -> None:
    location = StorageLocation(str(root))
    con = connect(location, "run1")
    try:
        rows = iteration_rows(con)
        # the recipe's in-memory summaries override the held-out columns; an iteration not yet in the views is added
        overridden = iteration_rows(con, [{"iteration": 1, "checkpoint": "run1/iter-1", "episodes": 99,
                                           "success_rate": 0.5, "mean_reward": 0.25},
                                          {"iteration": 2, "checkpoint": "run1/iter-2", "episodes": 4,
                                           "success_rate": 1.0, "mean_reward": 1.0}])
    finally:
        con.close()
    assert [r["iteration"] for r in rows] == [0, 1] and list(rows[0]) == list(ITERATION_COLUMNS)
    assert all(r["rollout_episodes"] > 0 and r["heldout_episodes"] > 0 and r["tokens_per_episode"] > 0 for r in rows)
    assert all(0 <= r["heldout_success"] <= 1 and r["episode_p95_s"] >= r["episode_p50_s"] for r in rows)
    assert overridden[1]["heldout_episodes"] == 99 and overridden[1]["heldout_success"] == 0.5
    assert overridden[2]["rollout_episodes"] == 0 and overridden[2]["rollout_success"] is None
    json.dumps(overridden)  # what the Prefect table artifact gets must be plain JSON

    content = iteration_artifacts("run1", 1, rows, location)
    assert content.table == rows and content.chart is not None and content.chart.startswith(PNG)
    md = content.markdown
    assert "![success and reward per iteration](data:image/png;base64," in md
    assert "| held-out success |" in md and "| 0 | `run1/iter-0` |" in md and "| 1 | `run1/iter-1` |" in md
    assert f"[{root / 'run1'}]({(root / 'run1').as_uri()})" in md  # where the Parquet is

    s3 = iteration_artifacts("r", 0, [], StorageLocation("s3://bucket/runs", s3_endpoint_url="http://127.0.0.1:8333"))
    assert s3.chart is None and "No committed episodes" in s3.markdown
    assert "`s3://bucket/runs/r` at endpoint `http://127.0.0.1:8333`" in s3.markdown


@pytest.mark.parametrize("parts,key", [
    (("progress", "run1"), "progress-run1"),
    (("iterations", "20261125-014911-a1b2c3"), "iterations-20261125-014911-a1b2c3"),
    (("progress", "My_Run.v2"), "progress-my-run-v2"),
    (("progress", "--x--"), "progress-x"),
])
def test_artifact_keys_are_lowercase_letters_digits_dashes(parts: tuple[str, ...], key: str) -> None:
    assert artifact_key(*parts) == key
    assert re.fullmatch(r"[a-z0-9-]+", key)


def test_build_iteration_artifacts_from_a_config(root: Path) -> None:
    from aworld_core.config import RecipeConfig
    from tasks.artifacts import build_iteration_artifacts

    cfg = RecipeConfig(run_id="run1", storage={"uri": str(root)})
    content = build_iteration_artifacts(cfg, 1, [])
    assert [r["iteration"] for r in content.table] == [0, 1] and "data:image/png;base64," in content.markdown


def test_publishing_never_fails_the_run(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    from aworld_core.config import RecipeConfig
    from tasks.artifacts import publish_iteration_artifacts

    cfg = RecipeConfig(run_id="missing", storage={"uri": str(root)})
    publish_iteration_artifacts(cfg, 0, [])  # no such run: a warning, no exception (and no Prefect call)
    assert "could not publish progress artifacts of run missing" in caplog.text
