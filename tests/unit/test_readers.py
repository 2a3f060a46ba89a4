"""read_file on every attachment type of the invented GAIA fixture set, plus confinement and limits."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from aworld_core.tools import readers
from aworld_core.tools.base import ToolError, build_tool
from aworld_core.tools.readers import ReadFileTool, Transcriber, html_to_text, truncate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
VALIDATION = FIXTURES / "gaia_mini" / "2023" / "validation"

from testkit import load_scripted_policy


def _servers() -> ModuleType:
    return load_scripted_policy()


def _attachment(ext: str) -> Path:
    (path,) = [p for p in VALIDATION.glob(f"*.{ext}") if p.name != "metadata.jsonl"]
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An episode working directory: every attachment copied in, the metadata (answers) left out."""
    wd = tmp_path / "work"
    wd.mkdir()
    for path in VALIDATION.iterdir():
        if path.name != "metadata.jsonl":
            shutil.copy(path, wd / path.name)
    return wd


def read(tool: ReadFileTool, path: str, **kw: object) -> str:
    return asyncio.run(tool.run(**tool.validate({"path": path, **kw})))


@pytest.mark.parametrize("ext, expected", [
    ("txt", ["The river bends where the willows lean,", "and the River hums as it did before."]),
    ("json", ['"database": {', '"timeout_seconds": 30', '"timeout_seconds": 5']),
    ("jsonl", ["JSON Lines: 10 records", '"level": "error", "message": "disk quota exceeded"']),
    ("md", ["| Northern Ledger | Tomas Reyne | 1992 |"]),
    ("xml", ["<title>Blue Harbor</title>", '<price currency="USD">31.25</price>']),
    ("html", ["Title: Contact us", "Support | support@example.org", "Team | Email"]),
    ("csv", ["CSV: 5 data rows x 3 columns", "city | country | population", "Port Alder | Valdoria | 412300"]),
    ("xlsx", ["--- sheet 'Sales': 9 rows ---", "Region | Product | Units", "North | Toaster | 22"]),
    ("docx", ["moved from Room 2A to Room 4B", "--- table 1 ---", "11:15 | Hiring plan"]),
    ("pptx", ["Presentation: 3 slide(s)", "--- slide 2 ---", "Q3: 2.1 M EUR", "Grow the Kettle line"]),
    ("pdf", ["PDF: 1 page(s)", "Widget B: 5 x 80.00 = 400.00", "Shipping: 25.00", "Total due: $1,134.50"]),
    ("png", ["Image: PNG, 64 x 32 pixels (width x height), mode RGB"]),
    ("wav", ["WAV: 1 channel(s), 8000 Hz, 16-bit, 12000 frames, duration 1.5 seconds"]),
])
def test_each_attachment_type_reads_as_text(workdir: Path, ext: str, expected: list[str]) -> None:
    text = read(ReadFileTool(workdir, transcriber=None), _attachment(ext).name)
    for piece in expected:
        assert piece in text


def test_html_drops_scripts_and_styles_and_keeps_link_targets() -> None:
    html = ("<html><head><title>T</title><style>p{}</style><script>var secret=1;</script></head>"
            "<body><p>Hello <b>world</b></p><a href='https://example.org/x'>more</a></body></html>")
    text = html_to_text(html)
    assert "secret" not in text and "p{}" not in text
    assert "Hello world" in text and "more (https://example.org/x)" in text and text.startswith("Title: T")


def test_zip_is_listed_extracted_and_members_are_readable(workdir: Path) -> None:
    tool = ReadFileTool(workdir, transcriber=None)
    listing = read(tool, _attachment("zip").name)
    stem = _attachment("zip").stem
    assert "3 file(s)" in listing
    assert f"{stem}_extracted/expenses/q1.csv  (32 bytes)" in listing
    member = read(tool, f"{stem}_extracted/expenses/q2.csv")
    assert "repairs | 340" in member
    assert "Quarterly expense files" in read(tool, f"{stem}_extracted/expenses/README.txt")
    assert "q1.csv" in read(tool, f"{stem}_extracted")  # a directory lists its files


def test_zip_members_with_unsafe_paths_are_not_extracted(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("../escaped.txt", "nope")
        archive.writestr("ok/inside.txt", "fine")
    text = read(ReadFileTool(tmp_path, transcriber=None), "evil.zip")
    assert "../escaped.txt  (skipped: unsafe path)" in text
    assert not (tmp_path.parent / "escaped.txt").exists()
    assert (tmp_path / "evil_extracted" / "ok" / "inside.txt").read_text() == "fine"


@pytest.mark.parametrize("path", ["../metadata.jsonl", "/etc/passwd", str(VALIDATION / "metadata.jsonl")])
def test_paths_outside_the_working_directory_are_refused(workdir: Path, path: str) -> None:
    with pytest.raises(ToolError, match="outside the task's working directory"):
        read(ReadFileTool(workdir), path)


def test_a_symlink_pointing_out_is_refused(workdir: Path) -> None:
    (workdir / "answers.jsonl").symlink_to(VALIDATION / "metadata.jsonl")
    with pytest.raises(ToolError, match="outside"):
        read(ReadFileTool(workdir), "answers.jsonl")


def test_missing_file_lists_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ToolError, match=r"no file 'b.txt'.*a\.txt"):
        read(ReadFileTool(tmp_path), "b.txt")


def test_long_output_is_truncated_with_a_marker_and_offset_reads_on(tmp_path: Path) -> None:
    (tmp_path / "long.txt").write_text("".join(f"{i:05d}\n" for i in range(1000)))  # 6000 chars
    tool = ReadFileTool(tmp_path, max_chars=1000)
    first = read(tool, "long.txt")
    assert first.startswith("00000\n") and "[... truncated: 6000 characters in all" in first
    assert "call again with offset=1000" in first
    second = read(tool, "long.txt", offset=1000)
    assert second.startswith("6\n00167\n") and "starting at character 1000" in second
    assert "offset 9999 is past the end" in read(tool, "long.txt", offset=9999)
    assert truncate("short", 10) == "short"


def test_image_ocr_is_reported_unavailable_without_tesseract(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers.shutil, "which", lambda name: None)
    text = read(ReadFileTool(workdir), _attachment("png").name)
    assert "OCR unavailable: no tesseract binary on PATH" in text


def test_image_ocr_runs_when_tesseract_is_present(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytesseract

    monkeypatch.setattr(readers.shutil, "which", lambda name: "/usr/bin/tesseract")
    monkeypatch.setattr(pytesseract, "image_to_string", lambda image: "HELLO 42\n")
    assert "OCR text:\nHELLO 42" in read(ReadFileTool(workdir), _attachment("png").name)


def test_audio_without_transcription_endpoint_says_how_to_configure(workdir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWORLD_TRANSCRIBE_URL", raising=False)
    text = read(ReadFileTool(workdir), _attachment("wav").name)
    assert "duration 1.5 seconds" in text
    assert "Transcription unavailable" in text and "AWORLD_TRANSCRIBE_URL" in text


def test_audio_is_transcribed_by_a_configured_endpoint(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _servers().FixtureWebServer(transcript="Turn left at the mill.") as web:
        monkeypatch.setenv("AWORLD_TRANSCRIBE_URL", f"{web.root}/v1")
        monkeypatch.setenv("AWORLD_TRANSCRIBE_API_KEY", "secret-key")
        tool = ReadFileTool(workdir)
        assert "secret-key" not in repr(tool.transcriber)
        text = read(tool, _attachment("wav").name)
        assert "Transcript:\nTurn left at the mill." in text and "duration 1.5 seconds" in text
        assert web.hits["/v1/audio/transcriptions"] == 1


def test_transcriber_from_env_is_none_when_unset() -> None:
    assert Transcriber.from_env({}) is None
    t = Transcriber.from_env({"AWORLD_TRANSCRIBE_URL": "http://127.0.0.1:1/v1/"})
    assert t is not None and t.base_url == "http://127.0.0.1:1/v1" and t.model == "whisper-1"


def test_damaged_and_binary_files_are_tool_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "data.bin").write_bytes(b"\x00\x01\x02" * 10)
    (tmp_path / "notes.unknown").write_text("plain text after all")
    tool = ReadFileTool(tmp_path)
    with pytest.raises(ToolError, match="could not read broken.docx"):
        read(tool, "broken.docx")
    with pytest.raises(ToolError, match="unsupported binary file type .bin"):
        read(tool, "data.bin")
    assert read(tool, "notes.unknown") == "plain text after all"


def test_registered_by_name_with_an_openai_schema(tmp_path: Path) -> None:
    tool = build_tool("read_file", root=tmp_path)
    schema = tool.schema()
    assert schema["type"] == "function" and schema["function"]["name"] == "read_file"
    assert schema["function"]["parameters"]["required"] == ["path"]
    with pytest.raises(ToolError, match="needs argument 'path'"):
        tool.validate({})
