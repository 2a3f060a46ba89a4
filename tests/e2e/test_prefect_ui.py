"""The progress artifacts as a person sees them: published by a flow to a real Prefect server, read
back through its API, and rendered by the Prefect UI in headless Chromium (a screenshot is checked).

Needs Debian chromium (`bash bin/setup-browser`). No vLLM: the run's rows are synthetic (the artifacts of a
real recipe run are rendered in test_deployment.py), committed with
the real store, and the held-out evaluations go through the recipe's own `summarize_evaluation`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from aworld_core import recipe
from aworld_core.config import RecipeConfig
from aworld_core.rollout.shard import ShardSummary
from aworld_core.storage.store import ShardKey
from aworld_core.storage.synthetic import synthetic_shard
from browser import assert_not_blank, render

pytestmark = pytest.mark.slow
RUN_ID = "ui-Run_1"  # upper case and '_' on purpose: artifact keys must come out as [a-z0-9-]
def commit_run(cfg: RecipeConfig) -> list[recipe.EvalSummary]:
    """Two iterations of synthetic eval + rollout rows, and the recipe's held-out evaluation of each."""
    store = recipe.run_store(cfg)
    store.write_json("config.json", cfg.model_dump(mode="json"))
    evals = []
    for i in range(2):
        summaries = []
        for phase in ("eval", "rollout"):
            key = ShardKey(i, phase, 0)
            tables = synthetic_shard(cfg.run_id, key, 60, seed=3 * i + len(phase))
            store.commit_shard(key, tables)
            eps = tables["episodes"].to_pylist()
            if phase == "eval":
                summaries.append(ShardSummary(0, len(eps), sum(e["success"] for e in eps),
                                              sum(e["reward"] for e in eps), 0, 0, 0.0, 0.0))
        evals.append(recipe.summarize_evaluation(cfg, i, summaries))
    return evals


def test_progress_artifacts_render_in_the_prefect_ui(prefect_server, clean_env, tmp_path: Path) -> None:
    from prefect import flow
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from aworld_core.analysis.iterations import artifact_key
    from tasks.artifacts import publish_iteration_artifacts

    api = prefect_server["url"]
    cfg = RecipeConfig(run_id=RUN_ID, iterations=1, storage={"uri": str(tmp_path / "runs")})
    evals = commit_run(cfg)

    @flow(name="aworld-artifacts-ui", flow_run_name=f"artifacts-{RUN_ID}")
    def publish() -> None:
        publish_iteration_artifacts(cfg, 1, evals)

    t0 = time.monotonic()
    with temporary_settings({PREFECT_API_URL: api}):
        state = publish(return_state=True)
    assert state.is_completed(), state
    flow_run_id = str(state.state_details.flow_run_id)
    publish_s = time.monotonic() - t0

    # the artifacts through the API: keys, the table's rows, the markdown's text
    found = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}},
                       timeout=30).raise_for_status().json()
    by_key = {a["key"]: a for a in found}
    table_key, md_key = artifact_key("iterations", RUN_ID), artifact_key("progress", RUN_ID)
    assert set(by_key) == {table_key, md_key}, sorted(by_key)
    assert table_key == "iterations-ui-run-1" and by_key[table_key]["type"] == "table"
    rows = json.loads(by_key[table_key]["data"]) if isinstance(by_key[table_key]["data"], str) \
        else by_key[table_key]["data"]
    assert [r["iteration"] for r in rows] == [0, 1]
    assert [r["heldout_success"] for r in rows] == [round(e.success_rate, 4) for e in evals]
    assert all(r["rollout_episodes"] > 0 and r["tokens_per_episode"] > 0 and r["episode_p95_s"] > 0 for r in rows)
    markdown = by_key[md_key]["data"]
    (tmp_path / "progress.md").write_text(markdown)
    assert by_key[md_key]["type"] == "markdown"
    assert f"Run `{RUN_ID}`: success and reward per iteration (after iteration 1)" in markdown
    assert "](data:image/png;base64,iVBOR" in markdown  # the chart, embedded
    assert f"| 1 | `{RUN_ID}/iter-1` | {evals[1].success_rate:.1%} |" in markdown
    assert str(tmp_path / "runs" / RUN_ID) in markdown  # where the Parquet is

    # the UI. Default (v1) UI: the markdown artifact's page (the chart, rendered) and the table
    # artifact's page. The flow run's Artifacts tab from the v2 UI: the v1 UI hides that tab until the
    # run has loaded and falls back to Logs, so `?tab=Artifacts` loses the race there.
    ui = api.removesuffix("/api")
    t1 = time.monotonic()
    page, dom, text = render(f"{ui}/artifacts/artifact/{by_key[md_key]['id']}", tmp_path / "artifact.png", tmp_path)
    assert "success and reward per iteration (after iteration 1)" in text, text[:2000]
    assert f"{RUN_ID}/iter-1" in text and f"{evals[1].success_rate:.1%}" in text
    assert re.search(r'<img[^>]+src="data:image/png;base64,', dom), "the chart is not an <img> on the page"
    table, _, table_text = render(f"{ui}/artifacts/artifact/{by_key[table_key]['id']}", tmp_path / "table.png",
                                  tmp_path)
    assert "heldout_success" in table_text and f"{RUN_ID}/iter-1" in table_text, table_text[:2000]
    tab, _, tab_text = render(f"{ui}/v2/runs/flow-run/{flow_run_id}?tab=Artifacts",
                              tmp_path / "flow-run-artifacts.png", tmp_path)
    assert table_key in tab_text and md_key in tab_text, tab_text[:2000]
    shot_s = time.monotonic() - t1
    for png in (page, table, tab):
        assert_not_blank(png)
    print(f"publish {publish_s:.1f} s, UI renders {shot_s:.1f} s; markdown in {tmp_path / 'progress.md'}")
