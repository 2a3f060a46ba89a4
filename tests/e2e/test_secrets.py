"""No secret from the environment ends up anywhere a run writes: a real `aworld recipe run` (vLLM CPU,
Dask, Prefect's ephemeral API) with fake credentials set, then every output is searched for them.

Searched: the CLI's stdout/stderr; every file under the working directory the CLI ran in (the run
directory with its Parquet files, JSON files, checkpoints and vLLM logs, plus anything written relative
to the cwd), Parquet files both as bytes and decoded through pyarrow (they are compressed); and every
file under the subprocess' own PREFECT_HOME (the ephemeral API's SQLite database with the artifacts
and logs, result storage).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

KEY_ENV = "AWORLD_TEST_POLICY_API_KEY"  # named by serve.api_key_env: the client sends it to vLLM


@pytest.fixture(scope="module")
def secret_run(cli_recipe_run):
    """The session's one `aworld recipe run` (tests/e2e/conftest.py, shared with test_recipe_cli.py):
    fake AWS/OpenAI/HF credentials and a fake policy API key in its environment, its own cwd and
    PREFECT_HOME, no PREFECT_*/AWS_* inherited, ``--json --log-json``, the model created by the run
    itself under its cwd, local storage under ``<cwd>/runs``, ``serve.api_key_env`` set to ``KEY_ENV``."""
    run = cli_recipe_run
    assert run.key_env == KEY_ENV
    assert set(run.fake) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "HF_TOKEN", KEY_ENV}
    return run.proc, run.fake, run.work, run.run_dir, run.prefect_home


def _hits(blob: bytes, fake: dict[str, str]) -> list[str]:
    return [name for name, value in fake.items() if value.encode() in blob]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_run_used_local_storage_and_the_key_env(secret_run):
    _, _, work, run_dir, _ = secret_run
    assert (run_dir / "summary.json").exists() and list((run_dir / "episodes").rglob("*.parquet"))
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["serve"]["api_key_env"] == KEY_ENV  # the name is recorded, the value must not be
    assert cfg["storage"]["uri"] == str(work / "runs")


def test_no_secret_in_cli_output(secret_run):
    proc, fake, *_ = secret_run
    assert proc.stdout.strip() and proc.stderr.strip()  # both streams were produced and are searched
    assert _hits(proc.stdout.encode(), fake) == []
    assert _hits(proc.stderr.encode(), fake) == []


def test_no_secret_in_any_file_the_run_wrote(secret_run):
    _, fake, work, run_dir, _ = secret_run
    files = _files(work)
    logs = [f for f in files if f.parent == run_dir / "logs"]
    assert any(f.name.startswith("vllm") and f.stat().st_size > 0 for f in logs), logs
    assert (run_dir / "config.json") in files and (run_dir / "summary.json") in files
    leaks = {str(f.relative_to(work)): hit for f in files if (hit := _hits(f.read_bytes(), fake))}
    assert leaks == {}


def test_no_secret_in_parquet_contents(secret_run):
    """Parquet pages are compressed: a leaked string would not show as bytes, so decode every value."""
    _, fake, work, _, _ = secret_run
    files = [f for f in _files(work) if f.suffix == ".parquet"]
    assert len(files) >= 4, files
    leaks = {}
    for f in files:
        table = pq.read_table(f, partitioning=None)
        text = json.dumps(table.to_pylist(), default=repr, ensure_ascii=False)
        text += repr(table.schema.metadata) + repr(pq.read_metadata(f).metadata)
        if hit := _hits(text.encode(), fake):
            leaks[str(f.relative_to(work))] = hit
    assert leaks == {}, leaks


def test_no_secret_in_prefect_home(secret_run):
    """Artifacts, logs, flow/task run parameters and persisted results: the ephemeral API's own files."""
    _, fake, _, _, prefect_home = secret_run
    files = _files(prefect_home)
    dbs = [f for f in files if f.suffix == ".db"]
    assert dbs, files
    with sqlite3.connect(dbs[0]) as db:
        assert db.execute("select count(*) from artifact").fetchone()[0] > 0
        assert db.execute("select count(*) from flow_run").fetchone()[0] > 0
        assert db.execute("select count(*) from log").fetchone()[0] > 0
    # the run's parameters are in there (the key's NAME is one of its overrides): the scan sees them
    assert any(KEY_ENV.encode() in f.read_bytes() for f in dbs)
    leaks = {str(f.relative_to(prefect_home)): hit for f in files if (hit := _hits(f.read_bytes(), fake))}
    assert leaks == {}
    # and through SQLite, in case a value sits in a page the raw scan splits (overflow pages)
    with sqlite3.connect(dbs[0]) as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        for t in tables:
            for row in db.execute(f'select * from "{t}"'):
                blob = repr(row).encode()
                assert _hits(blob, fake) == [], t
