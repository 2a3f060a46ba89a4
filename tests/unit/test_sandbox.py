"""A hostile battery for the Python sandbox: each test is code an agent might really write.

Every test asserts the specific status and message, so a layer that silently stops working
(privilege drop, namespaces, the audit hook, a limit) turns a test red instead of passing by luck.
Tests that exercise one layer alone switch the others off with monkeypatch.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from pathlib import Path

import pytest

from aworld_core.tools import sandbox
from aworld_core.tools.sandbox import SandboxLimits, SandboxResult, run_python

FAST = SandboxLimits(wall_time_s=10, cpu_time_s=5, memory_mb=256)
IS_ROOT = os.geteuid() == 0
NETNS, PIDNS = sandbox._unshare_support()


@pytest.fixture(params=["full", "no_namespaces"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with every layer, and again without namespaces (killpg and hook paths)."""
    if request.param == "no_namespaces":
        monkeypatch.setattr(sandbox, "_unshare_support", lambda: (False, False))
    return request.param


@pytest.fixture
def hook_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the audit hook stands: no namespaces, no privilege drop (what a non-root user gets)."""
    monkeypatch.setattr(sandbox, "_unshare_support", lambda: (False, False))
    monkeypatch.setattr(sandbox, "_interpreter", lambda explicit: (os.path.realpath(sys.executable), False))


@pytest.fixture
def listener() -> socket.socket:
    """A real server on our loopback that the sandbox must not reach."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


def _assert_no_connection(server: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        server.accept()


def _live_processes(match: bytes | None = None, uid: int | None = None) -> list[int]:
    """Pids (not zombies) whose command line contains ``match`` or that run as ``uid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith("Z"):
            continue
        if (match is not None and match in cmdline) or (uid is not None and
                                                         int(fields["Uid"].split()[0]) == uid):
            pids.append(int(entry.name))
    return pids


def _eventually_none(match: bytes | None = None, uid: int | None = None, within_s: float = 3.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while (left := _live_processes(match, uid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# ---- ordinary code ------------------------------------------------------------------------------


def test_ok_run_prints_writes_and_reads_a_file() -> None:
    code = ("import os\n"
            "open('out.txt', 'w').write('forty-two')\n"
            "print(open('out.txt').read(), os.getcwd() == os.environ['HOME'] == os.environ['TMPDIR'])\n"
            "print(os.getcwd())\n")
    result = run_python(code, FAST)
    assert result.status == "ok" and result.ok and result.error is None
    assert result.exit_code == 0
    first, cwd = result.stdout.splitlines()
    assert first == "forty-two True"
    assert result.files == ["out.txt"]
    assert not Path(cwd).exists(), "the temporary working directory must be removed"
    assert 0 < result.wall_s < 5


def test_provided_files_are_readable() -> None:
    files = {"data.csv": b"a,b\n1,2\n", "sub/notes.txt": "héllo".encode()}
    code = "import csv\nprint(list(csv.DictReader(open('data.csv'))))\nprint(open('sub/notes.txt').read())"
    result = run_python(code, FAST, files=files)
    assert result.status == "ok", result.stderr
    assert result.stdout == "[{'a': '1', 'b': '2'}]\nhéllo\n"
    assert result.files == ["data.csv", "sub"]


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape.txt", ""])
def test_file_names_must_stay_inside_the_working_directory(name: str) -> None:
    with pytest.raises(ValueError, match="relative path"):
        run_python("pass", FAST, files={name: b"x"})


def test_traceback_is_an_error_with_the_exception_message() -> None:
    result = run_python("def f(x):\n    return x / 0\n\nf(1)\n", FAST)
    assert result.status == "error"
    assert result.error == "ZeroDivisionError: division by zero"
    assert result.exit_code == 1
    assert 'File "<sandbox>", line 2, in f' in result.stderr
    assert "return x / 0" in result.stderr       # source lines are shown
    assert "supervise" not in result.stderr and "exec(compile" not in result.stderr  # no bootstrap frames


def test_syntax_error_is_reported_like_python_does() -> None:
    result = run_python("print('unclosed'\n", FAST)
    assert result.status == "error"
    assert result.error.startswith("SyntaxError:")


def test_non_zero_exit_code() -> None:
    result = run_python("import sys\nprint('bye', file=sys.stderr)\nsys.exit(3)", FAST)
    assert (result.status, result.exit_code, result.error) == ("error", 3, "exited with code 3: bye")


# ---- time, memory, processes ----------------------------------------------------------------------


def test_endless_loop_hits_the_wall_time_limit() -> None:
    result = run_python("while True: pass", SandboxLimits(wall_time_s=1.5, cpu_time_s=30))
    assert result.status == "timeout"
    assert result.error.startswith("wall-time limit of 1.5 s exceeded")
    assert result.exit_code is None
    assert 1.5 <= result.wall_s < 3.5


def test_endless_loop_hits_the_cpu_limit() -> None:
    result = run_python("while True: pass", SandboxLimits(wall_time_s=10, cpu_time_s=1))
    assert result.status == "cpu_time"
    assert result.error == "CPU-time limit of 1 s exceeded"
    assert result.wall_s < 5


@pytest.mark.parametrize("code", [
    "x = bytearray(10**10)",
    "hoard = []\nwhile True:\n    hoard.append(bytearray(10**6))",
    "def grow(n):\n    big = [0] * n\n    return grow(n * 2)\ngrow(10**6)",
], ids=["one-huge-allocation", "growing-list", "growing-locals"])
def test_memory_bomb_hits_the_memory_limit(code: str) -> None:
    result = run_python(code, SandboxLimits(wall_time_s=20, cpu_time_s=10, memory_mb=256))
    assert result.status == "memory", (result.error, result.stderr[-500:])
    assert result.error.startswith("memory limit of 256 MB exceeded")
    assert "MemoryError" in result.stderr
    assert result.wall_s < 15


def test_fork_bomb_is_stopped_and_leaves_no_process(mode: str) -> None:
    if not IS_ROOT:
        pytest.skip("RLIMIT_NPROC only holds a fork bomb after a privilege drop (root needed)")
    limits = SandboxLimits(wall_time_s=15, cpu_time_s=10, memory_mb=256, max_processes=20)
    result = run_python("import os\nwhile True:\n    os.fork()\n", limits)
    assert result.status == "process_limit", (result.error, result.stderr[-500:])
    assert "process limit of 20" in result.error and "Resource temporarily unavailable" in result.error
    assert result.run_as_uid is not None
    assert _eventually_none(uid=result.run_as_uid) == []
    assert result.wall_s < 10


def test_thread_bomb_is_stopped() -> None:
    if not IS_ROOT:
        pytest.skip("RLIMIT_NPROC needs the privilege drop")
    code = ("import threading, time\n"
            "while True:\n    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n")
    result = run_python(code, SandboxLimits(wall_time_s=15, max_processes=16))
    assert result.status == "process_limit", (result.error, result.stderr[-500:])
    assert "can't start new thread" in result.error


def test_background_grandchild_is_killed_after_the_call(mode: str) -> None:
    marker = f"{100 + secrets.randbelow(10**6) / 10**7:.7f}"
    code = (f"import subprocess\np = subprocess.Popen(['sleep', '{marker}'])\n"
            "print('alive' if p.poll() is None else 'dead')\n")
    result = run_python(code, FAST)
    assert result.status == "ok", result.stderr
    assert result.stdout == "alive\n"
    assert _eventually_none(match=b"sleep\0" + marker.encode()) == []


@pytest.mark.skipif(not PIDNS, reason="needs a PID namespace (root + unshare)")
def test_grandchild_that_escapes_the_process_group_is_killed_too() -> None:
    marker = f"{200 + secrets.randbelow(10**6) / 10**7:.7f}"
    code = f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
    result = run_python(code, FAST)
    assert result.status == "ok", result.stderr
    assert _eventually_none(match=b"sleep\0" + marker.encode()) == []


# ---- network ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)",
    "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=3)",
    "import urllib.request\nurllib.request.urlopen('http://example.com/', timeout=3)",
    "import socket\nsocket.getaddrinfo('example.com', 443)",
], ids=["socket", "urllib-loopback", "urllib-dns", "dns"])
def test_network_is_refused(call: str, listener: socket.socket, mode: str) -> None:
    result = run_python(call.format(port=listener.getsockname()[1]), FAST)
    assert result.status == "network_denied", (result.error, result.stderr[-500:])
    assert result.error == "network access is disabled in the sandbox"  # the hook's refusal, not a DNS failure
    assert result.network_isolation == ("netns+audit_hook" if NETNS and mode == "full" else "audit_hook")
    _assert_no_connection(listener)


@pytest.mark.skipif(not NETNS, reason="needs a network namespace (root + unshare)")
def test_network_namespace_holds_without_the_audit_hook(listener: socket.socket) -> None:
    # A child interpreter has no audit hook: only the namespace stands between it and our loopback.
    probe = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=3)\n"
             "    print('CONNECTED')\nexcept OSError as e:\n    print('BLOCKED', e.strerror)\n"
             % listener.getsockname()[1])
    code = f"import subprocess, sys\nsubprocess.run([sys.executable, '-I', '-c', {probe!r}])"
    result = run_python(code, FAST)
    assert result.status == "ok", result.stderr
    assert result.stdout.startswith("BLOCKED Network is unreachable")
    _assert_no_connection(listener)


def test_audit_hook_alone_refuses_network(listener: socket.socket, hook_only: None) -> None:
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {listener.getsockname()[1]}))"
    result = run_python(code, FAST)
    assert result.status == "network_denied"
    assert result.isolation == ["clean_env", "rlimits", "audit_hook", "no_new_privs"]
    _assert_no_connection(listener)


def test_allow_network_really_connects(listener: socket.socket) -> None:
    # The positive control: the refusals above are the sandbox's doing, not a broken loopback.
    port = listener.getsockname()[1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\nprint('ok')"
    result = run_python(code, FAST.model_copy(update={"allow_network": True}))
    assert result.status == "ok", result.stderr
    assert result.network_isolation == "none"
    listener.setblocking(True)
    listener.settimeout(3)
    listener.accept()[0].close()


# ---- files and secrets ------------------------------------------------------------------------------


@pytest.fixture
def private_file(tmp_path: Path) -> Path:
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2\n")
    secret.chmod(0o600)
    return secret


def test_reading_outside_the_working_directory_is_refused(private_file: Path, mode: str) -> None:
    for path in [private_file, Path("/root/.bashrc")]:  # refused before the kernel is even asked
        result = run_python(f"print(open({str(path)!r}).read())", FAST)
        assert result.status == "access_denied", (path, result.error)
        assert result.error == f"file access refused: reading '{path}' is not allowed " \
                               "(only the working directory and system paths are readable)"
        assert "hunter2" not in result.stdout + result.stderr


def test_audit_hook_alone_refuses_reading_a_private_file(private_file: Path, hook_only: None) -> None:
    result = run_python(f"print(open({str(private_file)!r}).read())", FAST)
    assert result.status == "access_denied"
    assert result.run_as_uid is None
    assert "hunter2" not in result.stdout


def test_privilege_drop_alone_refuses_reading_a_private_file(private_file: Path) -> None:
    if not IS_ROOT:
        pytest.skip("privilege drop needs root")
    # `cat` is not Python: the audit hook cannot see it, only the kernel's permission check can.
    result = run_python(f"import subprocess\nsubprocess.run(['cat', {str(private_file)!r}], check=True)", FAST)
    assert result.status == "error"
    assert "Permission denied" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_writing_outside_the_working_directory_is_refused(tmp_path: Path, mode: str) -> None:
    target = Path("/tmp") / f"aworld-sandbox-escape-{secrets.token_hex(4)}"
    for code in [f"open({str(target)!r}, 'w').write('x')",
                 f"import os\nos.open({str(target)!r}, os.O_CREAT | os.O_WRONLY)",
                 f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
                 f"import os\nos.symlink('/root', 'root')\nopen('root/.planted', 'w')"]:
        result = run_python(code, FAST)
        assert result.status == "access_denied", (code, result.error)
        assert "writing" in result.error and "is not allowed" in result.error
    assert not target.exists() and tmp_path.exists() and not Path("/root/.planted").exists()


def test_environment_secrets_are_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWORLD_TEST_SECRET", "s3cr3t")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("OPENAI_API_KEY", "s3cr3t")
    code = ("import os, subprocess\n"
            "print(dict(os.environ))\n"
            "subprocess.run(['env'])\n"
            f"for pid in ({os.getpid()}, 1, os.getppid()):\n"
            "    try:\n"
            "        print(pid, open(f'/proc/{pid}/environ', 'rb').read())\n"
            "    except OSError as e:\n"
            "        print(pid, type(e).__name__)\n")
    result = run_python(code, FAST)
    assert result.status == "ok", result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr
    assert "AWORLD_TEST_SECRET" not in result.stdout and "OPENAI_API_KEY" not in result.stdout
    assert "'PATH': '/usr/local/bin:/usr/bin:/bin'" in result.stdout


# ---- disk and output -------------------------------------------------------------------------------


def test_disk_filling_stops_at_the_file_size_limit(tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    code = "with open('big.bin', 'wb') as f:\n    for _ in range(100):\n        f.write(b'\\0' * 1_000_000)\n"
    result = run_python(code, FAST.model_copy(update={"max_file_bytes": 2_000_000}), workdir=workdir)
    assert result.status == "file_size", (result.error, result.stderr[-300:])
    assert result.error.startswith("file-size limit of 2,000,000 bytes exceeded")
    assert "File too large" in result.error
    big = workdir / "big.bin"
    assert big.stat().st_size <= 2_000_000
    assert big.stat().st_uid == os.geteuid(), "a caller's workdir is handed back to its owner"


def test_huge_output_is_truncated_with_a_marker_keeping_head_and_tail() -> None:
    limits = FAST.model_copy(update={"max_output_bytes": 10_000})
    result = run_python("for i in range(200_000):\n    print(i)", limits)
    assert result.status == "output_truncated" and result.ok
    assert result.output_truncated
    assert sandbox.TRUNCATION_MARKER in result.stdout
    assert result.stdout.startswith("0\n1\n2\n")
    assert result.stdout.endswith("199998\n199999\n")
    assert len(result.stdout) < 10_200


def test_endless_output_is_bounded_and_times_out() -> None:
    limits = SandboxLimits(wall_time_s=1.5, max_output_bytes=5_000)
    result = run_python("import sys\nwhile True:\n    sys.stdout.write('y' * 1000)\n", limits)
    assert result.status == "timeout"
    assert result.output_truncated and len(result.stdout) < 5_200


def test_stderr_tail_survives_a_stdout_flood() -> None:
    code = "print('x' * 100_000)\nraise ValueError('the real problem')"
    result = run_python(code, FAST.model_copy(update={"max_output_bytes": 2_000}))
    assert result.status == "error" and result.error == "ValueError: the real problem"
    assert result.stderr.rstrip().endswith("ValueError: the real problem")


# ---- the layers themselves ----------------------------------------------------------------------------


def test_active_layers_are_reported_honestly() -> None:
    result = run_python("import os\nprint(os.getuid(), os.getpid())", FAST)
    assert result.status == "ok"
    if IS_ROOT:
        uid, pid = map(int, result.stdout.split())
        assert "privilege_drop" in result.isolation and "no_new_privs" in result.isolation
        assert uid == result.run_as_uid != 0
        if PIDNS:
            assert "pidns" in result.isolation and pid == 2  # pid 1 is the sandbox's supervisor
        if NETNS:
            assert "netns" in result.isolation
    assert isinstance(result, SandboxResult)


def test_capture_keeps_head_and_tail_within_budget() -> None:
    capture = sandbox._Capture(cap=10)
    for chunk in (b"0123456789", b"abcdefghij", b"KLMNOPQRST"):
        capture.feed(chunk)
    text, cut = capture.render(8)
    assert cut and text.startswith("0123") and text.endswith("QRST")
    assert "22 " + sandbox.TRUNCATION_MARKER in text
    assert sandbox._Capture(cap=10).render(8) == ("", False)


def test_budget_is_shared_so_neither_stream_starves() -> None:
    assert sandbox._split_budget(100, 50, 1000) == (100, 50)
    assert sandbox._split_budget(10**6, 100, 1000) == (900, 100)
    assert sandbox._split_budget(10**6, 10**6, 1000) == (500, 500)
    assert sandbox._split_budget(10, 10**6, 1000) == (10, 990)
