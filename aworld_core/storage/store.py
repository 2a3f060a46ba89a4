"""A run's data on disk or S3, with atomic, idempotent shard commits.

Layout under ``<uri>/<run_id>/``::

    episodes/iteration=<i>/phase=<p>/shard-00003.parquet     (also turns/, tool_calls/)
    evaluations/iteration=<i>/phase=eval/shard-00000.parquet
    _commits/iteration=<i>/phase=<p>/shard-00003.json        the commit marker (a manifest)
    state.json                                               recipe progress, for resume

Why it is exactly-once: data file names are a pure function of (table, iteration, phase, shard), so
re-running a crashed shard overwrites the same objects instead of adding rows; a file becomes
visible to readers only when the shard's manifest (written last) lists it. Each file itself is
written atomically: locally to a temporary name then renamed, on S3 as one PUT/multipart upload,
which S3 makes visible all at once or not at all.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from aworld_core.errors import StorageError
from aworld_core.storage.schema import SCHEMA_VERSION, TABLES
from aworld_core.storage.uri import StorageLocation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardKey:
    iteration: int
    phase: str
    shard: int

    def rel(self, table: str, ext: str = "parquet") -> str:
        return f"{table}/iteration={self.iteration}/phase={self.phase}/shard-{self.shard:05d}.{ext}"


class RunStore:
    """Read and commit one run's tables."""

    def __init__(self, location: StorageLocation, run_id: str) -> None:
        self.location, self.run_id = location, run_id
        self.fs = location.filesystem()
        self.root = location.join(run_id)

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def display(self, rel: str = "") -> str:
        return self.location.display(self.run_id, rel)

    # -- writing ---------------------------------------------------------------------------------
    def _write_bytes_atomic(self, rel: str, payload: bytes) -> None:
        path = self.path(rel)
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if self.location.is_s3:
            with self.fs.open_output_stream(path) as f:
                f.write(payload)
            return
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(payload)
        self.fs.move(tmp, path)

    def _write_table_atomic(self, rel: str, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self._write_bytes_atomic(rel, sink.getvalue().to_pybytes())

    def commit_shard(self, key: ShardKey, tables: dict[str, pa.Table],
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write a shard's tables, then its manifest (the commit point). Safe to repeat."""
        files: dict[str, str] = {}
        rows: dict[str, int] = {}
        try:
            for name, table in tables.items():
                if name not in TABLES:
                    raise StorageError(f"unknown table {name!r}; known: {sorted(TABLES)}")
                rel = key.rel(name)
                self._write_table_atomic(rel, table.cast(TABLES[name]))
                files[name], rows[name] = rel, table.num_rows
            manifest = {"schema_version": SCHEMA_VERSION, "run_id": self.run_id,
                        "iteration": key.iteration, "phase": key.phase, "shard": key.shard,
                        "files": files, "rows": rows, "committed_at": time.time(), **(extra or {})}
            self._write_bytes_atomic(key.rel("_commits", "json"), json.dumps(manifest).encode())
        except OSError as exc:
            raise StorageError(f"could not commit shard {key} to {self.display()}: {exc}") from exc
        return manifest

    def write_json(self, rel: str, obj: Any) -> None:
        self._write_bytes_atomic(rel, json.dumps(obj, indent=2, sort_keys=True).encode())

    def read_json(self, rel: str) -> Any | None:
        try:
            with self.fs.open_input_stream(self.path(rel)) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
        except OSError as exc:
            if "NoSuchKey" in str(exc) or "not found" in str(exc).lower():
                return None
            raise

    # -- reading ---------------------------------------------------------------------------------
    def manifest(self, key: ShardKey) -> dict[str, Any] | None:
        return self.read_json(key.rel("_commits", "json"))

    def manifests(self, iteration: int | None = None, phase: str | None = None) -> list[dict[str, Any]]:
        """Committed shards, sorted; the only files readers ever see."""
        sel = pafs.FileSelector(self.path("_commits"), recursive=True, allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(sel):
            if info.type != pafs.FileType.File or not info.path.endswith(".json"):
                continue
            with self.fs.open_input_stream(info.path) as f:
                m = json.loads(f.read())
            if (iteration is None or m["iteration"] == iteration) and (phase is None or m["phase"] == phase):
                out.append(m)
        return sorted(out, key=lambda m: (m["iteration"], m["phase"], m["shard"]))

    def committed_files(self, table: str, iteration: int | None = None, phase: str | None = None) -> list[str]:
        return [self.path(m["files"][table]) for m in self.manifests(iteration, phase) if table in m["files"]]

    def dataset(self, table: str, iteration: int | None = None, phase: str | None = None) -> pads.Dataset:
        """A pyarrow dataset over the committed files of ``table`` (empty if none)."""
        files = self.committed_files(table, iteration, phase)
        return pads.dataset(files, schema=TABLES[table], format="parquet", filesystem=self.fs)

    def read(self, table: str, iteration: int | None = None, phase: str | None = None,
             columns: list[str] | None = None) -> pa.Table:
        return self.dataset(table, iteration, phase).to_table(columns=columns)
