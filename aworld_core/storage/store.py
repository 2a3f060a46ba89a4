"""A run's data on disk or S3, with atomic, exactly-once shard commits.

Layout under ``<uri>/<run_id>/``::

    episodes/iteration=<i>/phase=<p>/shard-00003-<attempt>.parquet   (also turns/, tool_calls/)
    evaluations/iteration=<i>/phase=summary/shard-00000-<attempt>.parquet
    _commits/iteration=<i>/phase=<p>/shard-00003.json                 the commit marker (a manifest)
    state.json                                                        recipe progress, for resume

Why it is exactly-once: the manifest's name is a pure function of (iteration, phase, shard) and it is
written last, as one atomic object (a local rename, or one S3 PUT, which S3 makes visible all at once or
not at all). Readers find data only through manifests, never by listing data folders. So:

* a shard that crashed after writing data files but before its manifest is invisible;
* re-committing a shard replaces its manifest, so its rows are counted once, never twice;
* each attempt writes its own data files (``<attempt>`` is random), so two attempts racing on the
  same shard (a retry while a straggler still runs) never mix files: readers see exactly one
  attempt's complete set, whichever manifest landed last.

Garbage: after replacing a manifest, a commit deletes the files the replaced manifest listed (only
ever files of a manifest that is no longer current). Files of attempts that crashed before their
manifest, or lost a race, stay unreferenced; :meth:`RunStore.orphans` lists them and
:meth:`RunStore.vacuum` deletes them. Do not re-commit a shard while something is reading it: a
reader that listed the old manifest may find its files gone (the recipe never does this).

Manifests written before attempt-scoped names (``shard-00003.parquet``) read the same way.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from aworld_core.errors import StorageError
from aworld_core.storage.schema import READER_SHIMS, SCHEMA_VERSION, TABLES, schema_major
from aworld_core.storage.uri import StorageLocation

log = logging.getLogger(__name__)

# Parquet settings, measured with benchmarks/storage.py (one 62,500-turn shard, CPU seconds to encode
# episodes + turns + tool_calls): pyarrow defaults (snappy, dictionary on every column) 0.66 s / 60 MB;
# zstd level 1 with dictionaries only on low-cardinality strings 0.27 s / 56 MB; lz4 0.21 s / 78 MB.
# zstd 1 it is: bytes matter on S3. Min/max statistics only for scalar columns (what filters use;
# statistics of token-id lists cost CPU and prune nothing). Row groups of up to 128k rows.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 1, "row_group_size": 131_072}
_DICTIONARY_COLUMNS = ["schema_version", "run_id", "phase", "environment", "split", "policy_checkpoint",
                       "stop_reason", "finish_reason", "name", "error", "task_id"]

_ACCESS_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                  "ExpiredToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed", "403"}
_NO_BUCKET = {"NoSuchBucket", "404"}
# Errors of an S3 endpoint that is down, restarting or overloaded: worth waiting for, never a reason to
# lose a shard. (Auth errors and missing buckets are not here: retrying cannot fix them.)
_TRANSIENT = ("NETWORK_CONNECTION", "curlCode", "Could not connect", "Connection reset", "Connection refused",
              "timed out", "Timeout", "SlowDown", "SLOW_DOWN", "ServiceUnavailable", "SERVICE_UNAVAILABLE",
              "InternalError", "INTERNAL_FAILURE", "REQUEST_TIMEOUT")
S3_RETRY_WINDOW_S = 120.0


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and any(m in str(exc) for m in _TRANSIENT)


class RunNotFound(StorageError):
    """No data at all is stored for the requested run id."""


@dataclass(frozen=True)
class ShardKey:
    iteration: int
    phase: str
    shard: int

    def rel(self, table: str, ext: str = "parquet", attempt: str | None = None) -> str:
        suffix = f"-{attempt}" if attempt else ""
        return f"{table}/iteration={self.iteration}/phase={self.phase}/shard-{self.shard:05d}{suffix}.{ext}"


def _is_not_found(exc: OSError) -> bool:
    text = str(exc).lower()
    return isinstance(exc, FileNotFoundError) or "nosuchkey" in text or "not found" in text or "404" in text


def check_access(location: StorageLocation, write: bool = False) -> None:
    """Fail early and clearly if ``location`` cannot be used.

    S3: one ListObjectsV2 (max 1 key) on the bucket with boto3, the same credential sources as the
    writer (environment first). Wrong keys, a missing bucket and an unreachable endpoint each become a
    :class:`StorageError` saying what to do. Local: for ``write``, the base directory must be creatable
    (reading never creates it).
    """
    if not location.is_s3:
        if write:
            try:
                pafs.LocalFileSystem().create_dir(location.base, recursive=True)
            except OSError as exc:
                raise StorageError(f"cannot create or use local storage {location.base}: {exc}") from exc
        return
    import boto3
    import botocore.exceptions as bex
    from botocore.config import Config

    bucket, _, prefix = location.base.partition("/")
    endpoint = location.s3_endpoint_url or "AWS S3 (default endpoint)"
    creds_hint = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary "
                  "credentials) in the environment of every process that reads or writes runs")
    try:
        # a fresh session: boto3's default one caches the credentials it found first, the environment
        # may have changed since (and pyarrow, the writer, reads it anew for every filesystem)
        client = boto3.session.Session().client("s3", endpoint_url=location.s3_endpoint_url, region_name=location.s3_region,
                              config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=30,
                                            retries={"max_attempts": 2}))
        client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except bex.NoCredentialsError as exc:
        raise StorageError(f"no S3 credentials found for {location.display()} at {endpoint}: {creds_hint}") from exc
    except bex.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _NO_BUCKET:
            raise StorageError(
                f"S3 bucket {bucket!r} does not exist at {endpoint}; create it first, e.g. "
                f"`aws s3 mb s3://{bucket}" + (f" --endpoint-url {location.s3_endpoint_url}`"
                                               if location.s3_endpoint_url else "`")) from exc
        if code in _ACCESS_DENIED or status == 403:
            raise StorageError(
                f"S3 at {endpoint} refused access to bucket {bucket!r} ({code}: "
                f"{exc.response.get('Error', {}).get('Message', '')}); check the keys: {creds_hint}") from exc
        raise StorageError(f"S3 at {endpoint} failed on bucket {bucket!r}: {exc}") from exc
    except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError) as exc:
        raise StorageError(f"no answer from S3 endpoint {endpoint} ({exc}); check storage.s3_endpoint_url "
                           "and that the server is running") from exc
    except bex.BotoCoreError as exc:
        raise StorageError(f"S3 at {endpoint} for {location.display()}: {exc}") from exc


def list_runs(location: StorageLocation) -> list[str]:
    """Run ids under ``location``: folders that hold committed shards (``_commits``) or a ``state.json``."""
    check_access(location)
    fs = location.filesystem()
    try:
        infos = fs.get_file_info(pafs.FileSelector(location.base, recursive=False, allow_not_found=True))
    except OSError as exc:
        raise StorageError(f"cannot list runs under {location.display()}: {exc}") from exc
    runs = []
    for info in infos:
        if info.type != pafs.FileType.Directory:
            continue
        name = info.path.rsplit("/", 1)[-1]
        marks = fs.get_file_info([f"{info.path}/_commits", f"{info.path}/state.json"])
        if any(m.type != pafs.FileType.NotFound for m in marks):
            runs.append(name)
    return sorted(runs)


class RunStore:
    """Read and commit one run's tables."""

    def __init__(self, location: StorageLocation, run_id: str, retry_window_s: float = S3_RETRY_WINDOW_S) -> None:
        if not run_id or "/" in run_id or run_id in (".", ".."):
            raise StorageError(f"invalid run id {run_id!r}: use a plain name such as 'smoke1'")
        self.location, self.run_id = location, run_id
        self.fs = location.filesystem()
        self.root = location.join(run_id)
        self._access_checked: set[bool] = set()
        self.retry_window_s = retry_window_s

    def _s3_retry(self, fn: Callable[[], Any], what: str) -> Any:
        """Run one S3 request, retrying transient failures (endpoint down or restarting) with backoff for
        up to ``retry_window_s``. Each request is a whole-object PUT or GET, so a retry never exposes a
        partial object: S3 shows an object complete or not at all."""
        if not self.location.is_s3:
            return fn()
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

        def warn(state: Any) -> None:
            log.warning("S3 %s failed (%s); retrying, attempt %d", what, state.outcome.exception(),
                        state.attempt_number)

        for attempt in Retrying(retry=retry_if_exception(_is_transient), stop=stop_after_delay(self.retry_window_s),
                                wait=wait_exponential(multiplier=0.2, max=5.0), reraise=True, before_sleep=warn):
            with attempt:
                return fn()
        raise AssertionError("unreachable")  # pragma: no cover

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def display(self, rel: str = "") -> str:
        return self.location.display(self.run_id, rel)

    def check_access(self, write: bool = False) -> None:
        """Once per store: raise a clear :class:`StorageError` if the location is unusable (see
        :func:`check_access`). Called before the first write and the first listing."""
        if write not in self._access_checked:
            check_access(self.location, write)
            self._access_checked.update({write, False} if self.location.is_s3 else {write})

    def exists(self) -> bool:
        """Whether anything of this run is stored (committed shards, state, config)."""
        self.check_access()
        try:
            return self.fs.get_file_info(self.root).type != pafs.FileType.NotFound
        except OSError as exc:
            raise StorageError(f"cannot look up run {self.display()}: {exc}") from exc

    # -- writing ---------------------------------------------------------------------------------
    def _write_atomic(self, rel: str, write: Callable[[pa.NativeFile], None]) -> None:
        """Run ``write(stream)`` so that ``rel`` appears complete or not at all."""
        path = self.path(rel)
        if self.location.is_s3:  # buffered, then one PUT (or multipart upload): all at once or never
            sink = pa.BufferOutputStream()
            write(sink)
            payload = sink.getvalue()

            def put() -> None:
                with self.fs.open_output_stream(path) as f:
                    f.write(payload)

            self._s3_retry(put, f"write of {rel}")
            return
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open_output_stream(tmp) as f:
                write(f)
            self.fs.move(tmp, path)  # rename: atomic on a POSIX filesystem
        except BaseException:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            raise

    def _write_bytes_atomic(self, rel: str, payload: bytes) -> None:
        self._write_atomic(rel, lambda f: f.write(payload))

    def _write_table_atomic(self, rel: str, table: pa.Table) -> int:
        dictionary = [c for c in _DICTIONARY_COLUMNS if c in table.column_names]
        stats = [f.name for f in table.schema if not pa.types.is_nested(f.type)]
        size = 0

        def write(f: pa.NativeFile) -> None:
            nonlocal size
            pq.write_table(table, f, use_dictionary=dictionary, write_statistics=stats, **PARQUET_OPTIONS)
            size = f.tell()

        self._write_atomic(rel, write)
        return size

    def commit_shard(self, key: ShardKey, tables: dict[str, pa.Table],
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write a shard's tables, then its manifest (the commit point). Safe to repeat and to race."""
        unknown = sorted(set(tables) - set(TABLES))
        if unknown:
            raise StorageError(f"unknown table(s) {unknown}; known: {sorted(TABLES)}")
        try:
            cast = {name: t.cast(TABLES[name]) for name, t in tables.items()}
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
            raise StorageError(f"shard {key}: rows do not match the schema: {exc}") from exc
        self.check_access(write=True)
        previous = self.manifest(key)
        attempt = uuid.uuid4().hex[:12]
        files: dict[str, str] = {}
        rows: dict[str, int] = {}
        sizes: dict[str, int] = {}
        try:
            for name, table in cast.items():
                rel = key.rel(name, attempt=attempt)
                sizes[name] = self._write_table_atomic(rel, table)
                files[name], rows[name] = rel, table.num_rows
            manifest = {"schema_version": SCHEMA_VERSION, "run_id": self.run_id,
                        "iteration": key.iteration, "phase": key.phase, "shard": key.shard,
                        "attempt": attempt, "files": files, "rows": rows, "bytes": sizes,
                        "committed_at": time.time(), **(extra or {})}
            self._write_bytes_atomic(key.rel("_commits", "json"), json.dumps(manifest).encode())
        except OSError as exc:
            raise StorageError(f"could not commit shard {key} to {self.display()}: {exc}") from exc
        log.debug("committed %s attempt %s: %s", key, attempt, rows)
        if previous is not None:  # the superseded attempt's files: no manifest references them any more
            self._delete_quietly(set(previous.get("files", {}).values()) - set(files.values()))
        return manifest

    def _delete_quietly(self, rels: set[str]) -> None:
        for rel in sorted(rels):
            try:
                self.fs.delete_file(self.path(rel))
            except OSError as exc:  # already gone, or no delete permission: vacuum() can retry later
                log.debug("could not delete superseded %s: %s", rel, exc)

    def write_json(self, rel: str, obj: Any) -> None:
        self.check_access(write=True)
        try:
            self._write_bytes_atomic(rel, json.dumps(obj, indent=2, sort_keys=True).encode())
        except OSError as exc:
            raise StorageError(f"could not write {self.display(rel)}: {exc}") from exc

    def _read_bytes(self, path: str) -> bytes:
        """A whole object (``path`` inside the filesystem), retried while S3 is down or restarting."""
        def get() -> bytes:
            with self.fs.open_input_stream(path) as f:
                return f.read()

        return self._s3_retry(get, f"read of {path}")

    def read_json(self, rel: str) -> Any | None:
        """The JSON object at ``rel``, or None if there is none."""
        try:
            raw = self._read_bytes(self.path(rel))
        except OSError as exc:
            if self.location.is_s3:
                self.check_access()  # turns wrong keys / a missing bucket into a clear error
            if _is_not_found(exc):
                return None
            raise StorageError(f"could not read {self.display(rel)}: {exc}") from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise StorageError(f"{self.display(rel)} is not valid JSON: {exc}") from exc

    # -- reading ---------------------------------------------------------------------------------
    def manifest(self, key: ShardKey) -> dict[str, Any] | None:
        return self.read_json(key.rel("_commits", "json"))

    def manifests(self, iteration: int | None = None, phase: str | None = None) -> list[dict[str, Any]]:
        """Committed shards, sorted; the only files readers ever see."""
        self.check_access()
        sel = pafs.FileSelector(self.path("_commits"), recursive=True, allow_not_found=True)
        try:
            paths = [i.path for i in self._s3_retry(lambda: self.fs.get_file_info(sel), "listing of _commits")
                     if i.type == pafs.FileType.File and i.path.endswith(".json")]
            if iteration is not None or phase is not None:  # cheap pre-filter on the hive-style path
                paths = [p for p in paths
                         if (iteration is None or f"/iteration={iteration}/" in p)
                         and (phase is None or f"/phase={phase}/" in p)]

            def load(p: str) -> dict[str, Any]:
                raw = self._read_bytes(p)
                try:
                    m = json.loads(raw)
                    if not {"iteration", "phase", "shard", "files"} <= set(m):
                        raise ValueError("missing iteration/phase/shard/files")
                    return m
                except ValueError as exc:
                    raise StorageError(f"corrupt commit manifest {p}: {exc}; it was not written by RunStore "
                                       "(whose writes are atomic): move it away to drop that shard") from exc

            if self.location.is_s3 and len(paths) > 1:  # one GET each: overlap the round trips
                with ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:
                    loaded = list(pool.map(load, paths))
            else:
                loaded = [load(p) for p in paths]
        except OSError as exc:
            raise StorageError(f"could not list commits of {self.display()}: {exc}") from exc
        out = [m for m in loaded
               if (iteration is None or m["iteration"] == iteration) and (phase is None or m["phase"] == phase)]
        return sorted(out, key=lambda m: (m["iteration"], m["phase"], m["shard"]))

    def committed_files(self, table: str, iteration: int | None = None, phase: str | None = None) -> list[str]:
        return [self.path(m["files"][table]) for m in self.manifests(iteration, phase) if table in m["files"]]

    def dataset(self, table: str, iteration: int | None = None, phase: str | None = None) -> pads.Dataset:
        """A pyarrow dataset over the committed files of ``table`` (empty if none)."""
        if table not in TABLES:
            raise StorageError(f"unknown table {table!r}; known: {sorted(TABLES)}")
        return dataset_from_manifests(self.fs, [(self.root, m) for m in self.manifests(iteration, phase)], table)

    def read(self, table: str, iteration: int | None = None, phase: str | None = None,
             columns: list[str] | None = None) -> pa.Table:
        try:
            return self.dataset(table, iteration, phase).to_table(columns=columns)
        except OSError as exc:
            raise StorageError(f"could not read {table} of {self.display()}: {exc}") from exc

    # -- housekeeping ----------------------------------------------------------------------------
    def orphans(self, min_age_s: float = 3600.0) -> list[str]:
        """Data files no manifest references (crashed or superseded attempts) older than ``min_age_s``.

        The age guard keeps files of a commit still in flight (written, manifest not yet) off the list.
        """
        referenced = {self.path(rel) for m in self.manifests() for rel in m["files"].values()}
        now = time.time()
        out = []
        for table in TABLES:
            sel = pafs.FileSelector(self.path(table), recursive=True, allow_not_found=True)
            for info in self.fs.get_file_info(sel):
                if info.type != pafs.FileType.File or info.path in referenced:
                    continue
                mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
                if now - mtime >= min_age_s:
                    out.append(info.path)
        return sorted(out)

    def vacuum(self, min_age_s: float = 3600.0) -> list[str]:
        """Delete :meth:`orphans`; returns what was deleted."""
        gone = self.orphans(min_age_s)
        for p in gone:
            self.fs.delete_file(p)
        return gone


def dataset_from_manifests(fs: pafs.FileSystem, committed: list[tuple[str, dict[str, Any]]],
                           table: str) -> pads.Dataset:
    """One dataset over ``table``'s files listed by ``(run_root, manifest)`` pairs.

    Files written under the current schema major are scanned lazily (projection and filter pushdown).
    Each file carries its manifest's (run_id, iteration, phase) as a partition expression, so a filter
    on those skips whole files without opening them (no footer read, which matters on S3). Files of an
    older major go through the reader shim registered in ``schema.READER_SHIMS``.
    """
    schema = TABLES[table]
    current = schema_major(SCHEMA_VERSION)
    by_major: dict[int, list[tuple[str, pc.Expression]]] = {}
    for root, m in committed:
        if table not in m["files"]:
            continue
        known = pc.field("run_id") == pa.scalar(m["run_id"], pa.string())
        known = known & (pc.field("iteration") == pa.scalar(m["iteration"], pa.int32()))
        if "phase" in schema.names:
            known = known & (pc.field("phase") == pa.scalar(m["phase"], pa.string()))
        try:
            major = schema_major(m.get("schema_version", SCHEMA_VERSION))
        except ValueError as exc:
            raise StorageError(f"manifest of {root} shard {m.get('iteration')}/{m.get('phase')}/"
                               f"{m.get('shard')}: {exc}") from exc
        by_major.setdefault(major, []).append((f"{root}/{m['files'][table]}", known))
    files = by_major.pop(current, [])
    parts: list[pads.Dataset] = [pads.FileSystemDataset.from_paths(
        [f for f, _ in files], schema=schema, format=pads.ParquetFileFormat(), filesystem=fs,
        partitions=[k for _, k in files])]
    for major, old_files in sorted(by_major.items()):
        shim = READER_SHIMS.get((table, major))
        if shim is None:
            raise StorageError(
                f"{len(old_files)} {table} file(s) use schema major version {major}, this reader knows "
                f"{current} and has no shim for it (e.g. {old_files[0][0]}); "
                + ("upgrade aworld-recipe" if major > current else "add one to schema.READER_SHIMS"))
        old = pads.dataset([f for f, _ in old_files], format="parquet", filesystem=fs).to_table()
        parts.append(pads.dataset(shim(old).select(schema.names).cast(schema)))
    return parts[0] if len(parts) == 1 else pads.dataset(parts)
