"""``read_file``: turn a task's attachment (or a file extracted from it) into text the model can read.

Why one tool with a dispatch table rather than one tool per format: the model should not have to know
which reader fits which file; GAIA attachments come in a dozen formats and the file name says which.
Each format is read with a maintained library (pypdf, python-docx, openpyxl, xlrd, python-pptx,
BeautifulSoup, Pillow) or the standard library, and each reader is a plain function
``(path, context) -> str`` registered in ``READERS`` by extension, so adding a format touches one place.

Confinement: only paths inside the tool's ``root`` (the episode's working directory, which holds a
copy of the attachment) can be read; ``..``, absolute paths elsewhere and symlinks pointing out are
refused. That matters for GAIA: the metadata file beside the attachments holds every answer.

Output is capped at ``max_chars`` with a marker that says how to read on (``offset``).

Images: size and format always (Pillow); text via OCR only when a ``tesseract`` binary is on PATH
(``pytesseract`` is just a wrapper around it). Audio: WAV metadata always (stdlib ``wave``); a
transcript when an OpenAI-compatible ``/v1/audio/transcriptions`` endpoint is configured with
``AWORLD_TRANSCRIBE_URL`` (base URL ending in /v1), ``AWORLD_TRANSCRIBE_API_KEY`` and
``AWORLD_TRANSCRIBE_MODEL`` (default ``whisper-1``). Archives (zip): listed and extracted into the
working directory (with size and path checks), so their members can be read in turn.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import wave
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from aworld_core.tools.base import SyncTool, ToolError, register_tool

log = logging.getLogger(__name__)

__all__ = ["READERS", "ReadFileTool", "ReaderContext", "Transcriber", "html_to_text", "read_path", "truncate"]

DEFAULT_MAX_CHARS = 20_000
MAX_ZIP_MEMBERS = 1_000
MAX_ZIP_BYTES = 200 * 1024 * 1024
MAX_TABLE_ROWS = 2_000
TEXT_EXTENSIONS = frozenset({".txt", ".md", ".markdown", ".rst", ".log", ".py", ".js", ".ts", ".java", ".c",
                             ".cpp", ".h", ".sh", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".tex", ".sql",
                             ".xml", ".svg", ".pdb", ".srt", ".vtt"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".webm", ".aac"})


def truncate(text: str, max_chars: int, offset: int = 0) -> str:
    """``text[offset:offset+max_chars]``, with a marker saying what was left out and how to get it."""
    total = len(text)
    if offset >= total and total:
        return f"[offset {offset} is past the end: the text has {total} characters]"
    end = offset + max_chars
    piece = text[offset:end]
    if offset == 0 and end >= total:
        return piece
    notes = []
    if offset > 0:
        notes.append(f"starting at character {offset}")
    if end < total:
        notes.append(f"{total - end} more characters; call again with offset={end} to read on")
    return f"{piece}\n[... truncated: {total} characters in all, {'; '.join(notes)} ...]"


# --------------------------------------------------------------------------------------------------
# HTML (shared with web.py's fetch_page).

_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "iframe", "head")
_BLOCK_TAGS = ("p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "li", "ul", "ol",
               "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "br", "hr", "dt", "dd", "figure",
               "figcaption", "form", "caption")


def html_to_text(html: str | bytes) -> str:
    """Readable text of an HTML document: scripts and styles dropped, tables as ``a | b`` rows.

    BeautifulSoup (MIT, maintained) with the stdlib parser: no heuristics that might drop the one
    table row a question is about, which main-content extractors sometimes do on short pages.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    for table in soup.find_all("table"):
        rows = []
        for tr in table.find_all("tr"):
            cells = [c.get_text(" ", strip=True) for c in tr.find_all(["td", "th"])]
            if any(cells):
                rows.append(" | ".join(cells))
        table.replace_with(soup.new_string("\n" + "\n".join(rows) + "\n"))
    for a in soup.find_all("a", href=True):
        text, href = a.get_text(" ", strip=True), a["href"]
        if href.startswith(("http://", "https://")) and text and text != href:
            a.replace_with(soup.new_string(f"{text} ({href})"))
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    lines = [" ".join(line.split()) for line in soup.get_text().splitlines()]
    body = "\n".join(line for line in lines if line)
    return f"Title: {title}\n\n{body}" if title else body


# --------------------------------------------------------------------------------------------------
# Audio transcription (optional, through an OpenAI-compatible endpoint).


@dataclass(frozen=True)
class Transcriber:
    """An OpenAI-compatible ``/audio/transcriptions`` endpoint. ``api_key`` is never logged."""

    base_url: str
    model: str = "whisper-1"
    api_key: str | None = None
    timeout_s: float = 120.0

    def __repr__(self) -> str:
        return f"Transcriber({self.base_url!r}, model={self.model!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Transcriber | None":
        env = os.environ if env is None else env
        url = env.get("AWORLD_TRANSCRIBE_URL")
        if not url:
            return None
        return cls(url.rstrip("/"), env.get("AWORLD_TRANSCRIBE_MODEL") or "whisper-1",
                   env.get("AWORLD_TRANSCRIBE_API_KEY") or None)

    def transcribe(self, path: Path) -> str:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            with path.open("rb") as handle:
                resp = httpx.post(f"{self.base_url}/audio/transcriptions", headers=headers,
                                  data={"model": self.model, "response_format": "json"},
                                  files={"file": (path.name, handle)}, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise ToolError(f"transcription endpoint {self.base_url} failed: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise ToolError(f"transcription endpoint answered HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            return str(resp.json()["text"]).strip()
        except (ValueError, KeyError, TypeError):
            return resp.text.strip()


# --------------------------------------------------------------------------------------------------
# Readers: (path, context) -> text.


@dataclass(frozen=True)
class ReaderContext:
    root: Path
    transcriber: Transcriber | None = None


Reader = Callable[[Path, ReaderContext], str]


def _read_text(path: Path, _ctx: ReaderContext) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _read_json(path: Path, _ctx: ReaderContext) -> str:
    raw = path.read_bytes().decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except json.JSONDecodeError:
        return raw


def _read_jsonl(path: Path, _ctx: ReaderContext) -> str:
    raw = path.read_bytes().decode("utf-8", errors="replace")
    records = [line for line in raw.splitlines() if line.strip()]
    return f"JSON Lines: {len(records)} records\n" + "\n".join(records)


def _format_rows(rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v).replace("\n", " ")

    return "\n".join(" | ".join(cell(v) for v in row) for row in rows)


def _read_csv(path: Path, _ctx: ReaderContext) -> str:
    raw = path.read_bytes().decode("utf-8-sig", errors="replace")
    try:
        dialect: Any = csv.Sniffer().sniff(raw[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    rows = list(csv.reader(io.StringIO(raw), dialect))
    width = max((len(r) for r in rows), default=0)
    shown = rows[:MAX_TABLE_ROWS + 1]
    more = f"\n[... {len(rows) - len(shown)} more rows ...]" if len(rows) > len(shown) else ""
    return f"CSV: {max(len(rows) - 1, 0)} data rows x {width} columns (first row shown as header)\n" \
           f"{_format_rows(shown)}{more}"


def _read_pdf(path: Path, _ctx: ReaderContext) -> str:
    return pdf_text(path.read_bytes())


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError) as exc:
        raise ToolError(f"cannot read the PDF: {exc}") from None
    parts = [f"PDF: {len(pages)} page(s)"]
    for number, text in enumerate(pages, start=1):
        parts.append(f"--- page {number} ---\n{text.strip()}")
    return "\n".join(parts)


def _read_docx(path: Path, _ctx: ReaderContext) -> str:
    import docx

    document = docx.Document(str(path))
    parts = [p.text for p in document.paragraphs if p.text.strip()]
    for number, table in enumerate(document.tables, start=1):
        rows = [[cell.text.strip() for cell in row.cells] for row in table.rows]
        parts.append(f"--- table {number} ---\n{_format_rows(rows)}")
    return "\n".join(parts)


def _read_xlsx(path: Path, _ctx: ReaderContext) -> str:
    import openpyxl

    workbook = openpyxl.load_workbook(str(path), read_only=True, data_only=True)
    try:
        parts = []
        for sheet in workbook.worksheets:
            rows = [list(r) for r in sheet.iter_rows(values_only=True)]
            while rows and all(v is None for v in rows[-1]):
                rows.pop()
            shown = rows[:MAX_TABLE_ROWS]
            more = f"\n[... {len(rows) - len(shown)} more rows ...]" if len(rows) > len(shown) else ""
            parts.append(f"--- sheet {sheet.title!r}: {len(rows)} rows ---\n{_format_rows(shown)}{more}")
        return "\n".join(parts)
    finally:
        workbook.close()


def _read_xls(path: Path, _ctx: ReaderContext) -> str:
    import xlrd

    book = xlrd.open_workbook(str(path))
    parts = []
    for sheet in book.sheets():
        rows = [sheet.row_values(i) for i in range(min(sheet.nrows, MAX_TABLE_ROWS))]
        parts.append(f"--- sheet {sheet.name!r}: {sheet.nrows} rows ---\n{_format_rows(rows)}")
    return "\n".join(parts)


def _read_pptx(path: Path, _ctx: ReaderContext) -> str:
    from pptx import Presentation

    presentation = Presentation(str(path))
    parts = []
    for number, slide in enumerate(presentation.slides, start=1):
        lines = []
        for shape in slide.shapes:
            if shape.has_text_frame:
                lines += [p.text for p in shape.text_frame.paragraphs if p.text.strip()]
            if getattr(shape, "has_table", False) and shape.has_table:
                lines.append(_format_rows([[c.text for c in row.cells] for row in shape.table.rows]))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                lines.append(f"(notes) {notes}")
        parts.append(f"--- slide {number} ---\n" + "\n".join(lines))
    return f"Presentation: {len(parts)} slide(s)\n" + "\n".join(parts)


def _read_html(path: Path, _ctx: ReaderContext) -> str:
    return html_to_text(path.read_bytes())


def _read_image(path: Path, _ctx: ReaderContext) -> str:
    from PIL import ExifTags, Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            lines = [f"Image: {image.format}, {width} x {height} pixels (width x height), mode {image.mode}"]
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                lines.append(f"frames: {frames}")
            exif = {ExifTags.TAGS.get(k, str(k)): v for k, v in image.getexif().items()}
            for key in ("DateTime", "Make", "Model", "Software", "ImageDescription", "Artist"):
                if key in exif:
                    lines.append(f"EXIF {key}: {exif[key]}")
            lines.append(_ocr(image))
    except UnidentifiedImageError:
        raise ToolError(f"{path.name} is not an image Pillow can read") from None
    return "\n".join(lines)


def _ocr(image: Any) -> str:
    if shutil.which("tesseract") is None:
        return ("OCR unavailable: no tesseract binary on PATH (install tesseract-ocr to read text in images); "
                "the picture itself cannot be described by this tool")
    import pytesseract

    try:
        text = pytesseract.image_to_string(image.convert("RGB")).strip()
    except (pytesseract.TesseractError, OSError) as exc:
        return f"OCR failed: {exc}"
    return f"OCR text:\n{text}" if text else "OCR found no text"


def _read_audio(path: Path, ctx: ReaderContext) -> str:
    lines = [f"Audio file: {path.name} ({path.stat().st_size} bytes)"]
    if path.suffix.lower() == ".wav":
        try:
            with wave.open(str(path), "rb") as w:
                frames, rate = w.getnframes(), w.getframerate()
                lines.append(f"WAV: {w.getnchannels()} channel(s), {rate} Hz, {8 * w.getsampwidth()}-bit, "
                             f"{frames} frames, duration {frames / rate:g} seconds")
        except (wave.Error, EOFError) as exc:
            lines.append(f"WAV header unreadable: {exc}")
    if ctx.transcriber is None:
        lines.append("Transcription unavailable: no speech-to-text endpoint configured (set AWORLD_TRANSCRIBE_URL "
                     "to an OpenAI-compatible base URL ending in /v1, and AWORLD_TRANSCRIBE_API_KEY if it needs one)")
    else:
        lines.append(f"Transcript:\n{ctx.transcriber.transcribe(path)}")
    return "\n".join(lines)


def _read_zip(path: Path, ctx: ReaderContext) -> str:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ToolError(f"{path.name} is not a valid zip archive") from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > MAX_ZIP_MEMBERS:
            raise ToolError(f"archive has {len(infos)} files; more than {MAX_ZIP_MEMBERS} are not extracted")
        if sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
            raise ToolError(f"archive expands to more than {MAX_ZIP_BYTES // 2**20} MiB; not extracted")
        target = path.parent / f"{path.stem}_extracted"
        root = ctx.root.resolve()
        lines = [f"Zip archive {path.name}: {len(infos)} file(s), extracted into "
                 f"{target.resolve().relative_to(root).as_posix()}/"]
        for info in infos:
            rel = PurePosixPath(info.filename)
            if rel.is_absolute() or ".." in rel.parts:
                lines.append(f"  {info.filename}  (skipped: unsafe path)")
                continue
            dest = target.joinpath(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out)
            lines.append(f"  {dest.resolve().relative_to(root).as_posix()}  ({info.file_size} bytes)")
    lines.append("Read a member with read_file(path=...) using the paths above.")
    return "\n".join(lines)


READERS: dict[str, Reader] = {
    ".pdf": _read_pdf, ".docx": _read_docx, ".xlsx": _read_xlsx, ".xlsm": _read_xlsx, ".xls": _read_xls,
    ".csv": _read_csv, ".tsv": _read_csv, ".pptx": _read_pptx, ".json": _read_json, ".jsonld": _read_json,
    ".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".html": _read_html, ".htm": _read_html, ".zip": _read_zip,
    **{ext: _read_text for ext in TEXT_EXTENSIONS},
    **{ext: _read_image for ext in IMAGE_EXTENSIONS},
    **{ext: _read_audio for ext in AUDIO_EXTENSIONS},
}


def read_path(path: Path, ctx: ReaderContext) -> str:
    """Text of ``path`` by its extension; unknown extensions are read as text when they decode."""
    reader = READERS.get(path.suffix.lower())
    if reader is not None:
        return reader(path, ctx)
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise ToolError(f"cannot read {path.name}: unsupported binary file type {path.suffix or '(none)'} "
                        f"({len(data)} bytes); supported: {', '.join(sorted(READERS))}")
    return data.decode("utf-8", errors="replace")


def resolve_inside(root: Path, requested: str) -> Path:
    """``requested`` (relative to ``root``, or absolute inside it) as a path; ToolError if outside."""
    root = root.resolve()
    candidate = Path(requested).expanduser()
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise ToolError(f"{requested!r} is outside the task's working directory; only the attachment and "
                        "files extracted from it can be read")
    if not resolved.exists():
        available = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())[:50]
        raise ToolError(f"no file {requested!r} in the working directory; files there: "
                        f"{', '.join(available) or 'none'}")
    return resolved


@register_tool("read_file")
class ReadFileTool(SyncTool):
    """Read an attachment (PDF, Office, CSV, JSON, HTML, text, image, audio, zip) as text."""

    name = "read_file"
    description = ("Read a file from your working directory (the question's attachment, or files extracted "
                   "from an archive) and return its content as text. Handles pdf, docx, xlsx/xls, pptx, csv, "
                   "json/jsonl, xml, html, txt/md and code, images (size, OCR when available), audio (WAV "
                   "details, transcript when available) and zip (lists and extracts members). Long output "
                   "is cut; pass offset to read on.")
    parameters = {"type": "object",
                  "properties": {"path": {"type": "string", "description": "file name, relative to the working directory"},
                                 "offset": {"type": "integer", "description": "character offset to start at (default 0)"}},
                  "required": ["path"]}

    def __init__(self, root: str | Path, max_chars: int = DEFAULT_MAX_CHARS,
                 transcriber: Transcriber | None | str = "env") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ToolError(f"read_file root {self.root} is not a directory")
        self.max_chars = max_chars
        self.transcriber = Transcriber.from_env() if transcriber == "env" else transcriber

    def run_sync(self, **arguments: Any) -> str:
        path = resolve_inside(self.root, str(arguments["path"]))
        offset = int(arguments.get("offset") or 0)
        if offset < 0:
            raise ToolError("offset must be >= 0")
        if path.is_dir():
            entries = sorted(p.relative_to(self.root.resolve()).as_posix() for p in path.rglob("*") if p.is_file())
            text = f"{arguments['path']} is a directory with {len(entries)} file(s):\n" + "\n".join(entries)
        else:
            try:
                text = read_path(path, ReaderContext(self.root, self.transcriber))
            except ToolError:
                raise
            except Exception as exc:  # a library choking on a damaged file: tell the model, keep going
                raise ToolError(f"could not read {path.name}: {type(exc).__name__}: {exc}") from None
        return truncate(text, self.max_chars, offset)
