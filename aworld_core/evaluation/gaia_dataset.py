"""Load GAIA (or any benchmark published in the same shape) from a local folder.

Why local only: GAIA is gated on the Hugging Face hub (``gaia-benchmark/GAIA``). Its terms must be
accepted by a person, and the machines that run this recipe may have no internet at all, so the data
is downloaded once by hand and this loader only reads what is on disk. See ``DatasetNotFound``.

The layout read is the published one::

    ROOT/2023/validation/metadata.jsonl   (or metadata.parquet)
    ROOT/2023/validation/<attachment files named by the file_name field>
    ROOT/2023/test/...

``ROOT`` may also be the split folder itself, the year folder, or a Hugging Face cache folder that
holds ``datasets--gaia-benchmark--GAIA/snapshots/<hash>/2023/...`` (the newest snapshot is used).

Each record has the fields ``task_id``, ``Question``, ``Level`` (an int, or a string such as
``"1"``), ``Final answer`` (empty or ``"?"`` on the test split, read as ``None``), ``file_name``
(``""`` when there is no attachment) and ``Annotator Metadata``. Any other benchmark written in this
shape (one metadata file per split, attachments beside it) loads with the same function: that is
how the project's invented fixture set under ``tests/fixtures/gaia_mini`` is read.

GAIA's authors ask that answers never leak, so this module logs counts and paths only, never a
question's answer, and the data itself must never be committed or re-shared.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aworld_core.errors import AWorldError

__all__ = [
    "BenchmarkTask",
    "DatasetNotFound",
    "MissingAttachment",
    "VALID_LEVELS",
    "VALID_SPLITS",
    "find_split_dir",
    "load_gaia",
]

logger = logging.getLogger(__name__)

VALID_SPLITS: tuple[str, ...] = ("validation", "test")
VALID_LEVELS: tuple[int, ...] = (1, 2, 3)
METADATA_FILES: tuple[str, ...] = ("metadata.jsonl", "metadata.parquet")
HF_CACHE_DIR = "datasets--gaia-benchmark--GAIA"
# Placeholders GAIA uses for answers it does not publish (the test split).
_HIDDEN_ANSWERS = frozenset({"", "?"})


class DatasetNotFound(AWorldError):
    """The benchmark's metadata file is not on disk where it was looked for.

    The message lists every path tried and how to obtain GAIA, because the fix is always a manual
    download that no code here can do.
    """

    def __init__(self, root: Path, split: str, year: str, tried: Iterable[Path]) -> None:
        tried_lines = "\n".join(f"  - {p}" for p in tried)
        super().__init__(
            f"no GAIA {year}/{split} metadata (one of {', '.join(METADATA_FILES)}) found under {root}.\n"
            f"Looked in:\n{tried_lines}\n"
            "GAIA is gated on the Hugging Face hub (gaia-benchmark/GAIA). To obtain it: log in to the hub, "
            "accept the dataset's terms on its page, then on a machine with internet run\n"
            f"  huggingface-cli download gaia-benchmark/GAIA --repo-type dataset --local-dir PATH\n"
            f"and copy PATH to this machine; pass PATH (or PATH/{year}/{split}) as the root. "
            "The data and its answers must never be committed to a repository or re-shared."
        )
        self.root = root
        self.split = split
        self.tried = list(tried)


class MissingAttachment(AWorldError, FileNotFoundError):
    """One or more tasks name an attachment that is not beside the metadata file."""

    def __init__(self, missing: Sequence[tuple[str, Path]]) -> None:
        lines = "\n".join(f"  - task {task_id}: {path}" for task_id, path in missing)
        super().__init__(
            f"{len(missing)} attachment(s) named in the metadata are missing on disk:\n{lines}\n"
            "Copy the whole split folder (attachments included), or load with strict=False to keep "
            "these tasks without their files."
        )
        self.missing = list(missing)


class BenchmarkTask(BaseModel):
    """One benchmark question, with its attachment resolved to an absolute path.

    ``final_answer`` is ``None`` where the benchmark does not publish it (GAIA's test split);
    ``file_path`` is ``None`` when there is no attachment (or, with ``strict=False``, when the named
    attachment is missing).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str = Field(min_length=1)
    question: str
    level: int = Field(ge=1, le=3)
    final_answer: str | None = None
    file_name: str | None = None
    file_path: Path | None = None
    annotator_metadata: dict[str, Any] | None = None


def load_gaia(
    root: Path | str,
    split: str = "validation",
    levels: Sequence[int] | None = None,
    task_ids: Sequence[str] | None = None,
    year: str = "2023",
    strict: bool = True,
) -> list[BenchmarkTask]:
    """Read one split of GAIA-shaped data under ``root``, in the order of its metadata file.

    ``levels`` and ``task_ids`` narrow the result (both may be given). A requested task id that is
    not in the split is an error rather than a silent omission, since it is almost always a typo or
    the wrong split. With ``strict`` (the default) a missing attachment raises ``MissingAttachment``;
    otherwise the task keeps ``file_path=None`` and a warning is logged.
    """
    _check_split(split)
    wanted_levels = _check_levels(levels)
    root_path = Path(root).expanduser()
    split_dir = find_split_dir(root_path, split=split, year=year)
    metadata_path = _metadata_file(split_dir)
    records = _read_records(metadata_path)

    tasks = [_to_task(record, split_dir, position) for position, record in enumerate(records, start=1)]
    _check_unique_ids(tasks, metadata_path)

    if task_ids is not None:
        known = {t.task_id for t in tasks}
        unknown = [tid for tid in task_ids if tid not in known]
        if unknown:
            raise ValueError(f"task ids not in {metadata_path}: {', '.join(unknown)}")
        wanted_ids = set(task_ids)
        tasks = [t for t in tasks if t.task_id in wanted_ids]
    if wanted_levels is not None:
        tasks = [t for t in tasks if t.level in wanted_levels]

    tasks = _resolve_attachments(tasks, strict=strict)
    logger.info(
        "loaded %d of %d tasks from %s (%d with attachments, %d with published answers)",
        len(tasks),
        len(records),
        metadata_path,
        sum(t.file_path is not None for t in tasks),
        sum(t.final_answer is not None for t in tasks),
    )
    return tasks


def find_split_dir(root: Path, split: str = "validation", year: str = "2023") -> Path:
    """Return the folder holding ``split``'s metadata file, trying each accepted layout in turn.

    Order: ``root/year/split``, ``root/split`` (root is the year folder), ``root`` itself (already
    the split folder), then the newest Hugging Face cache snapshot under ``root``. ``root`` itself is
    skipped when it is named after the *other* split, so ``load_gaia(".../validation", "test")``
    fails loudly instead of returning validation tasks as test tasks. Raises ``DatasetNotFound``
    listing every folder tried.
    """
    candidates = [root / year / split, root / split]
    if root.name == split or root.name not in VALID_SPLITS:
        candidates.append(root)
    for snapshot in _hf_snapshots(root):
        candidates.append(snapshot / year / split)
    for candidate in candidates:
        if any((candidate / name).is_file() for name in METADATA_FILES):
            return candidate.resolve()
    raise DatasetNotFound(root, split, year, candidates)


def _hf_snapshots(root: Path) -> list[Path]:
    """Snapshot folders of a local hub cache under ``root``, best first.

    The snapshot named by ``refs/main`` comes first (it is what the hub client would load); the rest
    follow newest first by modification time, then by name so the order is deterministic.
    """
    repo_dirs = [root / HF_CACHE_DIR, root / "hub" / HF_CACHE_DIR]
    if root.name == HF_CACHE_DIR:
        repo_dirs.insert(0, root)
    found: list[Path] = []
    for repo_dir in repo_dirs:
        snapshots_dir = repo_dir / "snapshots"
        if not snapshots_dir.is_dir():
            continue
        snapshots = sorted(
            (p for p in snapshots_dir.iterdir() if p.is_dir()),
            key=lambda p: (-p.stat().st_mtime, p.name),
        )
        ref_file = repo_dir / "refs" / "main"
        if ref_file.is_file():
            ref = ref_file.read_text(encoding="utf-8").strip()
            snapshots.sort(key=lambda p: p.name != ref)  # stable: keeps mtime order for the rest
        found.extend(snapshots)
    return found


def _metadata_file(split_dir: Path) -> Path:
    """The metadata file in ``split_dir``; JSON Lines wins when both forms are present."""
    for name in METADATA_FILES:
        path = split_dir / name
        if path.is_file():
            return path
    raise AssertionError(f"find_split_dir returned {split_dir} without a metadata file")  # pragma: no cover


def _read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a metadata file as dicts, in file order."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # local: only parquet users pay the import

        return pq.read_table(path).to_pylist()
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({err.msg})") from None
    return records


def _to_task(record: dict[str, Any], split_dir: Path, position: int) -> BenchmarkTask:
    """Map one GAIA record onto ``BenchmarkTask``; the attachment is resolved later."""
    task_id = str(record.get("task_id") or "").strip()
    where = f"record {position} (task {task_id or '?'}) in {split_dir}"
    if not task_id or record.get("Question") is None or record.get("Level") in (None, ""):
        raise ValueError(f"{where}: needs the fields task_id, Question and Level")
    level = _parse_level(record["Level"], where)
    answer = record.get("Final answer")
    if answer is not None:
        answer = str(answer)
        if answer.strip() in _HIDDEN_ANSWERS:
            answer = None
    file_name = record.get("file_name") or None
    metadata = record.get("Annotator Metadata") or None
    try:
        return BenchmarkTask(
            task_id=task_id,
            question=str(record["Question"]),
            level=level,
            final_answer=answer,
            file_name=file_name,
            file_path=(split_dir / file_name).resolve() if file_name else None,
            annotator_metadata=metadata if isinstance(metadata, dict) else None,
        )
    except ValidationError as err:
        # Pydantic's message would echo the input, answer included; report only the fields at fault.
        fields = ", ".join(".".join(map(str, e["loc"])) for e in err.errors())
        raise ValueError(f"{where}: invalid field(s): {fields}") from None


def _parse_level(raw: Any, where: str) -> int:
    """GAIA stores Level as an int in parquet and as a string such as ``"1"`` in JSON Lines."""
    try:
        level = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{where}: Level {raw!r} is not one of {list(VALID_LEVELS)}") from None
    if level not in VALID_LEVELS:
        raise ValueError(f"{where}: Level {raw!r} is not one of {list(VALID_LEVELS)}")
    return level


def _check_unique_ids(tasks: Sequence[BenchmarkTask], metadata_path: Path) -> None:
    """Refuse duplicate task ids: results are keyed by task id, so a duplicate would overwrite one."""
    seen: set[str] = set()
    duplicates: set[str] = set()
    for task in tasks:
        if task.task_id in seen:
            duplicates.add(task.task_id)
        seen.add(task.task_id)
    if duplicates:
        raise ValueError(f"duplicate task ids in {metadata_path}: {', '.join(sorted(duplicates))}")


def _resolve_attachments(tasks: list[BenchmarkTask], strict: bool) -> list[BenchmarkTask]:
    """Check every named attachment exists; raise, or drop the path with a warning when not strict."""
    missing = [(t.task_id, t.file_path) for t in tasks if t.file_path is not None and not t.file_path.is_file()]
    if not missing:
        return tasks
    if strict:
        raise MissingAttachment(missing)
    missing_ids = {task_id for task_id, _ in missing}
    for task_id, path in missing:
        logger.warning("task %s: attachment %s is missing; keeping the task without it", task_id, path)
    return [t.model_copy(update={"file_path": None}) if t.task_id in missing_ids else t for t in tasks]


def _check_split(split: str) -> None:
    if split not in VALID_SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(VALID_SPLITS)}")


def _check_levels(levels: Sequence[int] | None) -> frozenset[int] | None:
    if levels is None:
        return None
    bad = [lvl for lvl in levels if isinstance(lvl, bool) or lvl not in VALID_LEVELS]
    if bad:
        raise ValueError(f"invalid level(s) {bad}; valid levels: {', '.join(map(str, VALID_LEVELS))}")
    return frozenset(levels)
