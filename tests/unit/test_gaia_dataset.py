"""Loading GAIA-shaped data, on the project's invented fixture set (tests/fixtures/gaia_mini)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import wave
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import ValidationError

from aworld_core.errors import AWorldError
from aworld_core.evaluation.gaia_dataset import (
    BenchmarkTask,
    DatasetNotFound,
    MissingAttachment,
    load_gaia,
)
from aworld_core.evaluation.gaia_scoring import question_scorer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GAIA_MINI = FIXTURES / "gaia_mini"
VALIDATION_DIR = GAIA_MINI / "2023" / "validation"
ATTACHMENT_TYPES = {"pdf", "docx", "xlsx", "csv", "pptx", "txt", "md", "json", "jsonl", "xml", "html", "png", "wav", "zip"}


def _metadata_rows(split_dir: Path = VALIDATION_DIR) -> list[dict]:
    return [json.loads(line) for line in (split_dir / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]


def _copy_split(dst: Path, split: str = "validation") -> Path:
    """Copy one fixture split to ``dst/2023/split`` and return the new split folder."""
    target = dst / "2023" / split
    shutil.copytree(GAIA_MINI / "2023" / split, target)
    return target


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_gaia_mini", FIXTURES / "make_gaia_mini.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


# --- the fixture set itself -------------------------------------------------------------------


def test_fixture_covers_levels_and_attachment_types() -> None:
    rows = _metadata_rows()
    assert len(rows) >= 12
    for level in (1, 2, 3):
        assert sum(r["Level"] == level for r in rows) >= 3
    extensions = {r["file_name"].rsplit(".", 1)[1] for r in rows if r["file_name"]}
    assert ATTACHMENT_TYPES <= extensions
    assert list(rows[0]) == ["task_id", "Question", "Level", "Final answer", "file_name", "Annotator Metadata"]


def test_fixture_is_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    _generator().build(tmp_path / "regen")
    committed = sorted(p.relative_to(GAIA_MINI) for p in GAIA_MINI.rglob("*") if p.is_file())
    regenerated = sorted(p.relative_to(tmp_path / "regen") for p in (tmp_path / "regen").rglob("*") if p.is_file())
    assert committed == regenerated
    for rel in committed:
        assert (GAIA_MINI / rel).read_bytes() == (tmp_path / "regen" / rel).read_bytes(), rel


def test_fixture_stays_small() -> None:
    assert sum(p.stat().st_size for p in GAIA_MINI.rglob("*") if p.is_file()) < 300_000


def _attachment(extension: str) -> tuple[dict, Path]:
    row = next(r for r in _metadata_rows() if r["file_name"].endswith("." + extension))
    return row, VALIDATION_DIR / row["file_name"]


def test_fixture_answers_follow_from_attachments_stdlib() -> None:
    """Spot-check that the known answers really are in the files, reading them with the stdlib only."""
    row, path = _attachment("wav")
    with wave.open(str(path)) as audio:
        assert question_scorer(str(audio.getnframes() / audio.getframerate()), row["Final answer"])

    row, path = _attachment("docx")
    document = zipfile.ZipFile(path).read("word/document.xml").decode()
    assert "Room " + row["Final answer"] in document

    row, path = _attachment("pdf")
    raw = path.read_bytes()
    assert raw.startswith(b"%PDF-1.4") and raw.rstrip().endswith(b"%%EOF")
    total = float(re.search(rb"Total due: \$([\d,.]+)", raw).group(1).replace(b",", b""))
    shipping = float(re.search(rb"Shipping: ([\d.]+)", raw).group(1))
    assert question_scorer(str(total - shipping), row["Final answer"])

    row, path = _attachment("zip")
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        amounts = [
            float(line.split(",")[1])
            for name in archive.namelist()
            if name.endswith(".csv")
            for line in archive.read(name).decode().splitlines()[1:]
        ]
    assert question_scorer(str(sum(amounts)), row["Final answer"])

    row, path = _attachment("png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(path.read_bytes()[16:20], "big"), int.from_bytes(path.read_bytes()[20:24], "big")
    assert question_scorer(f"{width}, {height}", row["Final answer"])


def test_fixture_office_files_open_with_their_libraries() -> None:
    """Runs where python-docx, openpyxl and python-pptx are installed (the agent's file tools need them)."""
    docx = pytest.importorskip("docx")
    openpyxl = pytest.importorskip("openpyxl")
    pptx = pytest.importorskip("pptx")

    row, path = _attachment("docx")
    assert any(row["Final answer"] in p.text for p in docx.Document(str(path)).paragraphs)
    row, path = _attachment("xlsx")
    sheet = openpyxl.load_workbook(path).active
    north = sum(r[2] for r in sheet.iter_rows(min_row=2, values_only=True) if r[0] == "North")
    assert question_scorer(str(north), row["Final answer"])
    row, path = _attachment("pptx")
    text = " ".join(s.text_frame.text for slide in pptx.Presentation(str(path)).slides for s in slide.shapes)
    assert row["Final answer"] + ":" in text


# --- load_gaia ----------------------------------------------------------------------------------


def test_load_validation_split_in_file_order() -> None:
    rows = _metadata_rows()
    tasks = load_gaia(GAIA_MINI)
    assert [t.task_id for t in tasks] == [r["task_id"] for r in rows]
    first = tasks[0]
    assert isinstance(first, BenchmarkTask)
    assert first.question == rows[0]["Question"]
    assert first.level == rows[0]["Level"]
    assert first.final_answer == rows[0]["Final answer"]
    assert first.annotator_metadata == rows[0]["Annotator Metadata"]
    for task, row in zip(tasks, rows):
        if row["file_name"]:
            assert task.file_name == row["file_name"]
            assert task.file_path is not None and task.file_path.is_absolute() and task.file_path.is_file()
            assert task.file_path == (VALIDATION_DIR / row["file_name"]).resolve()
        else:
            assert task.file_name is None and task.file_path is None


def test_test_split_hides_answers_and_reads_string_levels() -> None:
    tasks = load_gaia(GAIA_MINI, split="test")
    assert len(tasks) == 2
    assert [t.final_answer for t in tasks] == [None, None]
    assert [t.level for t in tasks] == [1, 2]
    assert tasks[0].file_path is not None and tasks[1].file_path is None


@pytest.mark.parametrize(
    "root",
    [
        pytest.param(GAIA_MINI, id="dataset-root"),
        pytest.param(str(GAIA_MINI), id="root-as-string"),
        pytest.param(GAIA_MINI / "2023", id="year-folder"),
        pytest.param(VALIDATION_DIR, id="split-folder"),
    ],
)
def test_root_layouts(root: Path | str) -> None:
    assert len(load_gaia(root)) == len(_metadata_rows())


def test_split_folder_of_the_other_split_is_not_accepted() -> None:
    with pytest.raises(DatasetNotFound):
        load_gaia(VALIDATION_DIR, split="test")


def test_filter_by_level() -> None:
    rows = _metadata_rows()
    tasks = load_gaia(GAIA_MINI, levels=[1, 3])
    assert {t.level for t in tasks} == {1, 3}
    assert len(tasks) == sum(r["Level"] in (1, 3) for r in rows)


def test_filter_by_task_ids_keeps_file_order() -> None:
    rows = _metadata_rows()
    wanted = [rows[5]["task_id"], rows[1]["task_id"]]
    assert [t.task_id for t in load_gaia(GAIA_MINI, task_ids=wanted)] == [rows[1]["task_id"], rows[5]["task_id"]]


def test_filters_combine() -> None:
    rows = _metadata_rows()
    level_two = [r["task_id"] for r in rows if r["Level"] == 2]
    level_one = [r["task_id"] for r in rows if r["Level"] == 1]
    tasks = load_gaia(GAIA_MINI, levels=[2], task_ids=level_two[:1] + level_one[:1])
    assert [t.task_id for t in tasks] == level_two[:1]


def test_unknown_task_id_is_an_error() -> None:
    with pytest.raises(ValueError, match="no-such-task"):
        load_gaia(GAIA_MINI, task_ids=["no-such-task"])


def test_unknown_split_names_valid_ones() -> None:
    with pytest.raises(ValueError, match="validation, test"):
        load_gaia(GAIA_MINI, split="train")


@pytest.mark.parametrize("levels", [[0], [4], [1, 5], ["1"], [True]])
def test_bad_level_names_valid_ones(levels: list) -> None:
    with pytest.raises(ValueError, match="1, 2, 3"):
        load_gaia(GAIA_MINI, levels=levels)


def test_missing_dataset_explains_how_to_get_gaia(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound) as err:
        load_gaia(tmp_path / "nowhere")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "2023" / "validation") in message
    assert "gaia-benchmark/GAIA" in message
    assert "huggingface-cli download gaia-benchmark/GAIA --repo-type dataset --local-dir" in message
    assert "accept" in message and "never be committed" in message
    assert isinstance(err.value, AWorldError)


def test_parquet_metadata_matches_jsonl(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    split_dir = _copy_split(tmp_path)
    rows = _metadata_rows(split_dir)
    (split_dir / "metadata.jsonl").unlink()
    pq.write_table(pa.Table.from_pylist(rows), split_dir / "metadata.parquet")
    from_parquet = load_gaia(tmp_path)
    from_jsonl = load_gaia(GAIA_MINI)
    assert [t.model_dump(exclude={"file_path"}) for t in from_parquet] == [
        t.model_dump(exclude={"file_path"}) for t in from_jsonl
    ]
    assert all(t.file_path is None or t.file_path.parent == split_dir.resolve() for t in from_parquet)


def _hf_snapshot(cache: Path, name: str, keep: int) -> Path:
    """A fake hub-cache snapshot holding the first ``keep`` fixture tasks."""
    snapshot = cache / "datasets--gaia-benchmark--GAIA" / "snapshots" / name
    split_dir = _copy_split(snapshot)
    rows = _metadata_rows(split_dir)[:keep]
    (split_dir / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return snapshot


def test_hf_cache_uses_newest_snapshot(tmp_path: Path) -> None:
    old = _hf_snapshot(tmp_path, "aaaa1111", keep=3)
    new = _hf_snapshot(tmp_path, "bbbb2222", keep=5)
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(new, (2_000_000, 2_000_000))
    tasks = load_gaia(tmp_path)
    assert len(tasks) == 5
    assert tasks[0].file_path is not None and new.resolve() in tasks[0].file_path.parents


def test_hf_cache_prefers_refs_main(tmp_path: Path) -> None:
    pinned = _hf_snapshot(tmp_path, "aaaa1111", keep=3)
    newer = _hf_snapshot(tmp_path, "bbbb2222", keep=5)
    os.utime(pinned, (1_000_000, 1_000_000))
    os.utime(newer, (2_000_000, 2_000_000))
    refs = tmp_path / "datasets--gaia-benchmark--GAIA" / "refs"
    refs.mkdir()
    (refs / "main").write_text("aaaa1111\n", encoding="utf-8")
    assert len(load_gaia(tmp_path)) == 3


def test_missing_attachment_strict_lists_task_and_path(tmp_path: Path) -> None:
    split_dir = _copy_split(tmp_path)
    row = next(r for r in _metadata_rows() if r["file_name"].endswith(".pdf"))
    (split_dir / row["file_name"]).unlink()
    with pytest.raises(MissingAttachment) as err:
        load_gaia(tmp_path)
    assert row["task_id"] in str(err.value)
    assert str((split_dir / row["file_name"]).resolve()) in str(err.value)
    assert isinstance(err.value, FileNotFoundError)


def test_missing_attachment_lenient_keeps_task_without_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    split_dir = _copy_split(tmp_path)
    row = next(r for r in _metadata_rows() if r["file_name"].endswith(".pdf"))
    (split_dir / row["file_name"]).unlink()
    with caplog.at_level(logging.WARNING, logger="aworld_core.evaluation.gaia_dataset"):
        tasks = load_gaia(tmp_path, strict=False)
    task = next(t for t in tasks if t.task_id == row["task_id"])
    assert task.file_path is None and task.file_name == row["file_name"]
    assert len(tasks) == len(_metadata_rows())
    assert any(row["task_id"] in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_missing_attachment_of_filtered_out_task_is_ignored(tmp_path: Path) -> None:
    split_dir = _copy_split(tmp_path)
    pdf_row = next(r for r in _metadata_rows() if r["file_name"].endswith(".pdf"))
    (split_dir / pdf_row["file_name"]).unlink()
    assert pdf_row["Level"] == 3
    assert all(t.level == 1 for t in load_gaia(tmp_path, levels=[1]))


def _write_rows(tmp_path: Path, rows: list[dict]) -> None:
    split_dir = tmp_path / "2023" / "validation"
    split_dir.mkdir(parents=True)
    (split_dir / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _row(**overrides: object) -> dict:
    row = {"task_id": "t1", "Question": "q?", "Level": 1, "Final answer": "secret-answer-xyz", "file_name": ""}
    row.update(overrides)
    return row


@pytest.mark.parametrize("level", [4, "0", "high", None])
def test_bad_level_in_data_is_an_error_that_hides_the_answer(tmp_path: Path, level: object) -> None:
    _write_rows(tmp_path, [_row(Level=level)])
    with pytest.raises(ValueError, match="t1") as err:
        load_gaia(tmp_path)
    assert "secret-answer-xyz" not in str(err.value)


def test_duplicate_task_ids_are_an_error(tmp_path: Path) -> None:
    _write_rows(tmp_path, [_row(), _row(Question="again")])
    with pytest.raises(ValueError, match="duplicate task ids.*t1"):
        load_gaia(tmp_path)


def test_invalid_json_line_names_file_and_line(tmp_path: Path) -> None:
    _write_rows(tmp_path, [_row()])
    metadata = tmp_path / "2023" / "validation" / "metadata.jsonl"
    metadata.write_text(metadata.read_text() + "{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"metadata\.jsonl:2"):
        load_gaia(tmp_path)


def test_question_mark_and_missing_answer_fields_read_as_none(tmp_path: Path) -> None:
    no_answer_field = _row(task_id="t3")
    del no_answer_field["Final answer"]
    _write_rows(tmp_path, [_row(**{"Final answer": " ? "}), _row(task_id="t2", **{"Final answer": 7}), no_answer_field])
    assert [t.final_answer for t in load_gaia(tmp_path)] == [None, "7", None]


def test_logs_never_contain_answers(caplog: pytest.LogCaptureFixture) -> None:
    answers = [r["Final answer"] for r in _metadata_rows() if len(r["Final answer"]) >= 4]
    assert answers, "fixture should have answers long enough to search logs for"
    with caplog.at_level(logging.DEBUG):
        load_gaia(GAIA_MINI)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "loaded 15 of 15 tasks" in logged
    for answer in answers:
        assert answer not in logged


def test_benchmark_task_validates_level_and_is_frozen() -> None:
    with pytest.raises(ValidationError):
        BenchmarkTask(task_id="x", question="q", level=0)
    task = BenchmarkTask(task_id="x", question="q", level=2)
    with pytest.raises(ValidationError):
        task.level = 3  # type: ignore[misc]
