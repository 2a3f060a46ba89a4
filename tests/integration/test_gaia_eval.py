"""GAIA evaluation end to end on the invented fixture set, against a scripted loopback policy.

Every task has two scripted variants (sample 0 plays variant 0, sample 1 variant 1): tool calls
that really read the attachment, run code in the sandbox or search the fixture web, then a final
answer that is only given if the tool output held the expected evidence. Wrong answers, an unknown
tool, malformed JSON arguments, a crashing script, a turn-limit run, a cut-off response and a 503
are mixed in, so the expected scores below are exact:

============  =====  =========  =======  =======
level         tasks  correct    pass@2   avg@2
============  =====  =========  =======  =======
1             6      10 / 12    6/6      10/12
2             5      5 / 10     4/5      5/10
3             4      5 / 8      4/4      5/8
all           15     20 / 30    14/15    10/15
============  =====  =========  =======  =======
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pyarrow.parquet as pq
import pytest

from aworld_core.agent.chat_loop import ChatLimits
from aworld_core.evaluation.gaia_dataset import load_gaia
from aworld_core.evaluation.gaia_eval import (
    GaiaEvalConfig,
    ToolCacheConfig,
    evaluate,
    load_results,
    load_transcripts,
    pass_at_k,
    summarize,
)
from aworld_core.evaluation.report import compare_reports, render_chart, render_comparison_markdown, render_markdown

HERE = Path(__file__).resolve().parent
GAIA_MINI = HERE.parent / "fixtures" / "gaia_mini"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


sp = _load("scripted_policy")
call, answer, tools, Step = sp.call, sp.answer, sp.tools, sp.Step

TASKS = load_gaia(GAIA_MINI, "validation")
GROUND_TRUTH = {t.task_id: t.final_answer for t in TASKS}

# A phrase of each question -> the task (markers find the conversation's script on the server).
MARKERS = {
    "poem": "lines of the attached poem", "config": "timeout in seconds of the database",
    "html": "email address does the attached web page", "md": "who wrote the book published in 1992",
    "png": "width and height of the attached image", "plain": "What is 17 multiplied by 3",
    "csv": "combined population of all cities in Valdoria", "xlsx": "units sold in the North region",
    "docx": "in which room will the quarterly review", "jsonl": "events with level 'error'",
    "wav": "How long is the attached audio recording", "pdf": "total of the attached invoice excluding",
    "pptx": "in which quarter was revenue highest", "xml": "titles of the books in the attached catalog",
    "zip": "archive holds quarterly expense files",
}


def _file(slug: str) -> str:
    (task,) = [t for t in TASKS if MARKERS[slug] in t.question]
    assert task.file_name is not None or slug == "plain"
    return task.file_name or ""


def read(slug: str) -> tuple[str, str]:
    return call("read_file", path=_file(slug))


def py(code: str) -> tuple[str, str]:
    return call("python_exec", code=code)


def scripts(web_root: str) -> dict[str, Any]:
    """Per task: [variant for sample 0, variant for sample 1]."""
    zip_stem = Path(_file("zip")).stem
    s: dict[str, Any] = {
        "poem": [[tools(read("poem")), answer("3", require="River hums")]] * 2,
        "config": [[tools(read("config")), answer("30", require='"timeout_seconds": 30')],
                   [tools(read("config")), answer("5")]],  # wrong: the cache section
        "html": [[tools(read("html")), answer("support@example.org", require="Support | support@example.org")],
                 [tools(read("html"), hermes=True),  # Hermes <tool_call> text instead of tool_calls
                  answer("support@example.org", require="Support | support@example.org")]],
        "md": [[tools(call("open_file", path=_file("md"))),  # unknown tool -> error, then recovers
                tools(read("md")), answer("Tomas Reyne", require="Northern Ledger | Tomas Reyne")]] * 2,
        "png": [[tools(read("png")), answer("64, 32", require="64 x 32 pixels")],
                [answer("32, 64")]],  # wrong, no tool
        "plain": [[tools(py("print(17 * 3)")), answer("51", require="51")],
                  [Step(content="Seventeen times three is fifty-one."), answer("51")]],  # nudged to the format
        "csv": [[tools(py("import csv\nprint(sum(int(r['population']) for r in csv.DictReader(open("
                          f"'{_file('csv')}')) if r['country'] == 'Valdoria'))")),
                 answer("504935", require="504935")],
                [tools(read("csv")), tools(("python_exec", '{"code": "print(1)"')),  # malformed JSON arguments
                 answer("489315")]],  # wrong
        "xlsx": [[tools(read("xlsx")), answer("50", require="North | Toaster | 22")]] * 2,
        "docx": [[tools(read("docx")), answer("2A")], [answer("Room 2A")]],  # both wrong
        "jsonl": [[tools(py("print(1 / 0)")),  # the script fails in the sandbox -> tool error
                   tools(py(f"import json\nprint(sum(json.loads(l)['level'] == 'error' for l in open('{_file('jsonl')}')))")),
                   answer("4", require="[stdout]\n4")],
                  [tools(read("jsonl")), answer("3")]],  # wrong
        "wav": [[tools(read("wav")), answer("1.5", require="duration 1.5 seconds")],
                [tools(read("wav"))]],  # reads forever: turn limit
        "pdf": [[tools(read("pdf")), tools(py("print(360 + 400 + 349.5)")), answer("1109.5", require="1109.5")],
                [tools(read("pdf")), answer("1134.5")]],  # wrong: shipping included
        "pptx": [[tools(read("pptx")), answer("Q3", require="Q3: 2.1 M EUR")]] * 2,
        "xml": [[tools(read("xml")), answer("Blue Harbor, Quiet Engines", require="<title>Quiet Engines</title>")],
                [tools(call("web_search", query="used book catalog prices")),
                 tools(call("fetch_page", url=f"{web_root}/pages/used-books.html")),
                 answer("Red Kite", require="Red Kite: 6.00")]],  # wrong, but both web tools worked
        "zip": [[tools(read("zip")),
                 tools(py("import csv, glob\nprint(sum(int(r['amount']) for f in sorted(glob.glob("
                          f"'{zip_stem}_extracted/expenses/*.csv')) for r in csv.DictReader(open(f))))")),
                 answer("3085", require="3085")],
                [Step(content="Let me think about every file in the archive in turn, starting", finish_reason="length")]],
    }
    return {MARKERS[slug]: variants for slug, variants in s.items()}


EXPECTED_LEVELS = {  # level: (tasks, episodes, correct, pass@2, avg@2)
    "1": (6, 12, 10, 1.0, 10 / 12), "2": (5, 10, 5, 0.8, 0.5), "3": (4, 8, 5, 1.0, 0.625),
    "all": (15, 30, 20, 14 / 15, 10 / 15),
}
EXPECTED_TOOL_ERRORS = {"open_file": 2, "python_exec": 2}
EXPECTED_STOPS = {"answer": 28, "max_tokens": 1, "max_turns": 1}
EXPECTED_TOOL_CALLS = 37
LIMITS = ChatLimits(max_turns=5, tool_timeout_s=60)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Any, Any]]:
    web = sp.FixtureWebServer().start()
    saved = {k: os.environ.get(k) for k in ("AWORLD_SEARCH_PROVIDER", "AWORLD_SEARXNG_URL", "AWORLD_TRANSCRIBE_URL")}
    os.environ.update(web.env("searxng"))
    os.environ.pop("AWORLD_TRANSCRIBE_URL", None)
    policy = sp.ScriptedPolicyServer(scripts(web.root), model="scripted-policy",
                                     fail_first={MARKERS["poem"]: 1}).start()
    try:
        yield policy, web
    finally:
        policy.stop()
        web.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def config(policy: Any, tmp: Path, run_id: str, **kw: Any) -> GaiaEvalConfig:
    base: dict[str, Any] = dict(run_id=run_id, dataset=str(GAIA_MINI), endpoint=policy.base_url, model="scripted-policy",
                                samples=2, shards=3, concurrency=4, storage_uri=str(tmp / "runs"), limits=LIMITS,
                                scratch_dir=str(tmp / "scratch"),
                                cache=ToolCacheConfig(mode="read_write", directory=str(tmp / "cache")))
    return GaiaEvalConfig(**{**base, **kw})


def _assert_scores(report: Any) -> None:
    rows = {s.level: s for s in [*report.levels, report.overall]}
    assert set(rows) == set(EXPECTED_LEVELS)
    for level, (n_tasks, episodes, correct, pk, ak) in EXPECTED_LEVELS.items():
        s = rows[level]
        assert (s.tasks, s.episodes, s.scored, s.correct) == (n_tasks, episodes, episodes, correct), level
        assert s.accuracy == pytest.approx(correct / episodes), level
        assert s.pass_at_k == pytest.approx(pk), level
        assert s.avg_at_k == pytest.approx(ak), level
    assert report.k == 2 and report.tasks == 15 and report.episodes == 30
    assert report.tool_errors == 4 and report.tool_errors_by_tool == EXPECTED_TOOL_ERRORS
    assert report.tool_calls == EXPECTED_TOOL_CALLS
    assert report.stop_reasons == EXPECTED_STOPS
    assert report.episode_errors == 0
    assert 0 < report.latency_p50_s <= report.latency_p95_s


def _leaks(text: str) -> list[str]:
    """Ground-truth answers distinctive enough to search for (short numbers occur in any log)."""
    found = []
    for truth in GROUND_TRUTH.values():
        assert truth is not None
        if len(truth) < 6 and not re.search(r"[A-Za-z]", truth):
            continue
        if re.search(rf"(?<![0-9A-Za-z]){re.escape(truth)}(?![0-9A-Za-z])", text):
            found.append(truth)
    return found


@pytest.mark.slow
def test_library_evaluation_on_dask_scores_exactly(servers: tuple[Any, Any], tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    policy, web = servers
    cfg = config(policy, tmp_path, "lib-run")
    served_before = (policy.prompt_tokens_served, policy.completion_tokens_served)
    with caplog.at_level(logging.DEBUG):
        report = evaluate(cfg)
    _assert_scores(report)
    assert (report.prompt_tokens, report.completion_tokens) == (
        policy.prompt_tokens_served - served_before[0], policy.completion_tokens_served - served_before[1])
    assert policy.failures_sent == 1  # the 503 was retried, not counted as an error

    # Parquet rows, one per episode, with the documented columns and no ground-truth text.
    table = load_results(cfg.storage_uri, "lib-run")
    assert table.num_rows == 30
    rows = table.to_pylist()
    assert {(r["task_id"], r["sample_index"]) for r in rows} == {(t.task_id, s) for t in TASKS for s in (0, 1)}
    by = {(r["task_id"], r["sample_index"]): r for r in rows}
    wav = next(t.task_id for t in TASKS if MARKERS["wav"] in t.question)
    assert by[(wav, 1)]["stop_reason"] == "max_turns" and by[(wav, 1)]["turns"] == 5
    assert by[(wav, 1)]["answer"] is None and by[(wav, 1)]["correct"] is False
    md = next(t.task_id for t in TASKS if MARKERS["md"] in t.question)
    assert by[(md, 0)]["tool_error_tools"] == ["open_file"] and by[(md, 0)]["correct"] is True
    results_dir = Path(cfg.storage_uri) / "lib-run" / "gaia" / "validation"
    files = sorted(p.name for p in (results_dir / "results").iterdir())
    assert files == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    schema_names = pq.read_schema(results_dir / "results" / "shard-00000.parquet").names
    for column in ("run_id", "task_id", "level", "sample_index", "answer", "correct", "stop_reason", "turns",
                   "tool_calls", "tool_errors", "prompt_tokens", "completion_tokens", "latency_s", "error"):
        assert column in schema_names

    # Transcripts beside them; they hold the conversation but never the task's answer field.
    transcripts = load_transcripts(cfg.storage_uri, "lib-run")
    assert len(transcripts) == 30
    xml = next(t.task_id for t in TASKS if MARKERS["xml"] in t.question)
    web_episode = next(t for t in transcripts if t["task_id"] == xml and t["sample_index"] == 1)
    assert [c["name"] for c in web_episode["tool_calls"]] == ["web_search", "fetch_page"]
    assert all(c["error"] is None for c in web_episode["tool_calls"])
    assert "Used book catalog" in web_episode["messages"][3]["content"]
    assert not any("Final answer" in json.dumps(t) or "final_answer\"" in json.dumps(t) for t in transcripts)
    assert "Final answer" not in (results_dir / "config.json").read_text()
    assert json.loads((results_dir / "report.json").read_text())["overall"]["correct"] == 20

    # The web tools were cached; re-running the run commits nothing new (every shard is skipped).
    assert (tmp_path / "cache" / "tool_cache.sqlite").is_file()
    requests_before = len(policy.requests)
    again = evaluate(cfg)
    assert len(policy.requests) == requests_before
    assert again.overall == report.overall

    # No ground truth (nor the equal, correct model answers) in any log line or console output.
    captured = capfd.readouterr()
    everything = caplog.text + captured.out + captured.err
    assert "gaia shard" in caplog.text
    assert _leaks(everything) == []

    # Rendering.
    markdown = render_markdown(report)
    assert "| **all** | 15 | 30 | 20/30 | 66.7% | 93.3% | 66.7% |" in markdown
    assert "| 2 | 5 | 10 | 5/10 | 50.0% | 80.0% | 50.0% |" in markdown
    assert "`open_file`: 2" in markdown and "max_turns: 1" in markdown
    assert render_chart(report).startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.slow
def test_prefect_flow_replays_web_tools_offline_and_compares(servers: tuple[Any, Any], tmp_path: Path,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    from flows.gaia import aworld_compare_gaia, aworld_eval_gaia

    policy, web = servers
    # Record a run first (library), then replay it through Prefect with the cache in replay_only mode:
    # the web server must see no new search or page request.
    evaluate(config(policy, tmp_path, "recorded", shards=2))
    web_hits = dict(web.hits)
    settings = {"limits": LIMITS.model_dump(), "scratch_dir": str(tmp_path / "scratch"),
                "cache": {"mode": "replay_only", "directory": str(tmp_path / "cache")}}
    with prefect_test_harness():
        result = aworld_eval_gaia(dataset=str(GAIA_MINI), endpoint=policy.base_url, model="scripted-policy",
                                  samples=2, shards=2, concurrency=4, out=str(tmp_path / "runs"), run_id="flow-run",
                                  settings=settings)
        comparison = aworld_compare_gaia(run_a="recorded", run_b="flow-run", out=str(tmp_path / "runs"))
        with get_client(sync_client=True) as client:
            artifacts = {a.key: a for a in client.read_artifacts()}
    assert web.hits == web_hits
    assert result["run_id"] == "flow-run" and result["shards"] == 2
    report = summarize(load_results(str(tmp_path / "runs"), "flow-run"), k=2)
    _assert_scores(report)
    assert result["report"]["overall"]["correct"] == 20
    run_dir = tmp_path / "runs" / "flow-run" / "gaia" / "validation"
    assert (run_dir / "report.png").read_bytes().startswith(b"\x89PNG")
    assert "| **all** | 15 | 30 | 20/30 |" in (run_dir / "report.md").read_text()

    # Artifacts: the report table with the chart inline, and the comparison.
    report_md = artifacts["gaia-flow-run-validation"].data
    assert "| **all** | 15 | 30 | 20/30 | 66.7% | 93.3% | 66.7% |" in report_md
    assert "](data:image/png;base64,iVBORw0KGgo" in report_md
    assert "| **all** | 66.7% | 66.7% | +0.0 |" in artifacts["gaia-compare-recorded-flow-run"].data
    assert all(r["accuracy_delta"] == 0 for r in comparison["rows"])
    assert comparison["only_a"] == comparison["only_b"] == []
    assert (run_dir / "compare-recorded.md").is_file()

    captured = capfd.readouterr()
    assert _leaks(captured.out + captured.err) == []


def test_comparison_of_two_result_sets() -> None:
    import pyarrow as pa

    from aworld_core.evaluation.gaia_eval import RESULTS_SCHEMA

    def rows(run: str, correct: dict[str, list[bool]]) -> pa.Table:
        out = []
        for task, marks in correct.items():
            for i, ok in enumerate(marks):
                out.append({"run_id": run, "split": "validation", "task_id": task, "level": int(task[-1]),
                            "sample_index": i, "model": run, "answer": "x", "correct": ok, "stop_reason": "answer",
                            "turns": 1, "tool_calls": 0, "tool_errors": 0, "tool_error_tools": [],
                            "prompt_tokens": 10, "completion_tokens": 5, "latency_s": 1.0 + i, "model_s": 1.0,
                            "tool_s": 0.0, "error": None, "shard": 0})
        return pa.Table.from_pylist(out, schema=RESULTS_SCHEMA)

    a = summarize(rows("base", {"a-1": [True, False], "b-1": [False, False], "c-2": [True, True]}))
    b = summarize(rows("tuned", {"a-1": [True, True], "b-1": [True, False], "c-2": [False, False]}))
    c = compare_reports(a, b)
    by_level = {r["level"]: r for r in c.rows}
    assert by_level["1"]["accuracy_a"] == pytest.approx(0.25) and by_level["1"]["accuracy_b"] == pytest.approx(0.75)
    assert by_level["1"]["accuracy_delta"] == pytest.approx(0.5)
    assert by_level["2"]["pass_at_k_delta"] == pytest.approx(-1.0)
    assert c.only_a == ["c-2"] and c.only_b == ["b-1"]
    text = render_comparison_markdown(c)
    assert "| 1 | 25.0% | 75.0% | +50.0 |" in text and "| **all** |" in text


def test_test_split_is_run_but_not_scored(servers: tuple[Any, Any], tmp_path: Path) -> None:
    policy, _ = servers
    cfg = config(policy, tmp_path, "test-split", split="test", samples=1, shards=1,
                 cache=ToolCacheConfig(mode="off"), tools=("read_file", "calculator"))
    report = evaluate(cfg)  # no script matches the test questions: the server answers 400
    assert report.episodes == 2 and report.overall.scored == 0
    assert report.overall.accuracy is None and report.overall.pass_at_k is None
    assert report.stop_reasons == {"error": 2} and report.episode_errors == 2
    assert "| **all** | 2 | 2 | 0/0 | n/a | n/a | n/a |" in render_markdown(report)
    assert [r["correct"] for r in load_results(cfg.storage_uri, "test-split", "test").to_pylist()] == [None, None]


def test_unknown_tools_and_levels_are_refused_before_anything_runs(servers: tuple[Any, Any], tmp_path: Path) -> None:
    from pydantic import ValidationError

    from aworld_core.errors import ConfigError
    from aworld_core.evaluation.gaia_eval import preflight

    policy, _ = servers
    with pytest.raises(ConfigError, match=r"unknown tool\(s\) \['browser'\]"):
        preflight(config(policy, tmp_path, "bad", tools=("read_file", "browser")))
    with pytest.raises(ValidationError, match="levels must be among 1, 2, 3"):
        config(policy, tmp_path, "bad", levels=(4,))


def test_pass_at_k_estimator() -> None:
    assert pass_at_k(2, 0, 2) == 0.0 and pass_at_k(2, 1, 2) == 1.0 and pass_at_k(2, 1, 1) == 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(1, 1, 5) == 1.0  # k is capped at n


def test_cli_exits_2_for_missing_dataset_and_unreachable_endpoint(servers: tuple[Any, Any], tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from aworld_cli.gaia import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command, so typer keeps sub-command names
        pass

    policy, _ = servers
    runner = CliRunner()
    missing = runner.invoke(app, ["eval-gaia", "--dataset", str(tmp_path / "nowhere"), "--endpoint", policy.base_url,
                                  "--model", "m", "--out", str(tmp_path / "runs")])
    assert missing.exit_code == 2 and "no GAIA 2023/validation metadata" in missing.output
    down = runner.invoke(app, ["eval-gaia", "--dataset", str(GAIA_MINI), "--endpoint", "http://127.0.0.1:9/v1",
                               "--model", "m", "--out", str(tmp_path / "runs")])
    assert down.exit_code == 2 and "cannot reach http://127.0.0.1:9/v1/models" in down.output
    bad = runner.invoke(app, ["eval-gaia", "--dataset", str(GAIA_MINI), "--endpoint", policy.base_url, "--model", "m",
                              "--level", "7", "--out", str(tmp_path / "runs")])
    assert bad.exit_code == 2


def test_cli_runs_a_small_selection_without_prefect(servers: tuple[Any, Any], tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from aworld_cli.gaia import register

    app = typer.Typer()
    register(app)
    policy, _ = servers
    (poem,) = [t.task_id for t in TASKS if MARKERS["poem"] in t.question]
    (docx,) = [t.task_id for t in TASKS if MARKERS["docx"] in t.question]
    result = CliRunner().invoke(app, ["eval-gaia", "--dataset", str(GAIA_MINI), "--endpoint", policy.base_url,
                                      "--model", "scripted-policy", "--task-id", poem, "--task-id", docx,
                                      "--samples", "2", "--out", str(tmp_path / "runs"), "--run-id", "cli-run",
                                      "--no-prefect", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["overall"]["correct"] == 2 and report["overall"]["pass_at_k"] == pytest.approx(0.5)
    assert report["results"].endswith("cli-run/gaia/validation")
