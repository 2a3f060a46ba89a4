"""Run untrusted, LLM-written Python in a separate, resource-limited process.

Why this exists: the agent writes code that we execute thousands of times per training iteration.
Most of it is harmless, some of it is buggy (endless loops, huge allocations, runaway output) and
a little of it is hostile by accident or on purpose (fork bombs, reading credentials, network
calls). ``run_python`` runs one snippet and always comes back with a ``SandboxResult`` whose
``status`` and ``error`` say in plain words what happened, so the agent loop can feed that back.

This is a *process sandbox*, not a VM. The layers, strongest first, and what each one covers:

1. **Privilege drop** (when we run as root, which is how our containers run): the code runs under
   a fresh, unused uid per call (``run_as_uid``; 65534 "nobody" when the uid map is too small),
   with no supplementary groups and ``no_new_privs`` (setuid binaries cannot regain root). The
   kernel then refuses /root, other users' 0600 files, and signalling our own processes, and
   ``RLIMIT_NPROC`` (which the kernel does not enforce for uid 0) really stops fork bombs. Because
   the uid is unique per call, concurrent sandboxes neither share that process budget nor read
   each other's working directories. The interpreter used must be readable by that uid: a venv
   under /root is not, so a world-readable one (``/usr/bin/python3``) is picked automatically.
2. **Namespaces** via util-linux ``unshare`` (needs root or CAP_SYS_ADMIN): a new *network*
   namespace (only a loopback that is down: no route anywhere, not even to our 127.0.0.1), and a
   new *PID* namespace with its own /proc (the code cannot see host processes; when the sandbox's
   init process exits the kernel kills every process left in it, even ones that called setsid).
3. **Resource limits** (``setrlimit`` in the child): CPU seconds (SIGXCPU), address space and data
   (MemoryError), file size (EFBIG: "File too large"), process count, core dumps off. Wall time is
   enforced by the parent, which kills the whole process group.
4. **An audit hook** (``sys.addaudithook``) installed before the code runs: refuses sockets other
   than AF_UNIX, DNS lookups, reads outside the working directory and system/Python paths, and
   writes outside the working directory, with a PermissionError that explains itself.
5. **A clean environment**: no inherited variables (no API keys), HOME and TMPDIR = the working
   directory, a minimal PATH, ``python -I`` (isolated mode: no PYTHON* variables, no user site,
   no current directory on sys.path), stdin is /dev/null.

What it does NOT protect against (be honest with yourself before widening its use):

- The audit hook is a Python-level tripwire, not a security boundary: ctypes, C extensions,
  ``os.open(..., dir_fd=...)`` relative paths and child processes (``subprocess.run(["cat", ...])``)
  bypass it. Layers 1-2 are what actually hold; without root (no privilege drop, no namespaces)
  only the hook, rlimits and the clean environment remain, and network access from a child
  process is NOT blocked. ``SandboxResult.isolation`` lists the layers that were active.
- The filesystem is shared with the host (no chroot/mount isolation): with the privilege drop the
  code can still read world-readable files (/etc/passwd, the Python installation) and write
  world-writable places (/tmp) with tools other than Python's ``open``.
- ``RLIMIT_FSIZE`` caps each file, not the total: many files below the cap can still fill the disk.
- ``RLIMIT_AS`` counts virtual memory, so thread-heavy libraries can hit it early (we set
  OPENBLAS/OMP/MKL threads to 1 for that reason); kernel memory, page cache and pipes are not
  counted. ``RLIMIT_NPROC`` counts threads too.
- Kernel exploits, side channels, and CPU contention between concurrent sandboxes are out of scope.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pwd
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

Status = Literal[
    "ok",                # exited 0
    "output_truncated",  # exited 0, but stdout/stderr exceeded max_output_bytes
    "error",             # uncaught exception or non-zero exit; `error` is the traceback's last line
    "timeout",           # wall-time limit; the whole process group/namespace was killed
    "cpu_time",          # RLIMIT_CPU (SIGXCPU)
    "memory",            # MemoryError under RLIMIT_AS, or a crash that says it ran out of memory
    "process_limit",     # fork/thread/spawn refused by RLIMIT_NPROC (fork bombs end here)
    "file_size",         # a write past RLIMIT_FSIZE ("File too large")
    "network_denied",    # the code died on the sandbox refusing network access
    "access_denied",     # the code died on a refused file access outside the sandbox
    "killed",            # died from a signal we did not send (e.g. the kernel OOM killer)
]

#: Every sandbox process's command line contains this string (the bootstrap's first line), so
#: tests and operators can find leftovers with ``grep -l`` over /proc/*/cmdline.
PROCESS_MARKER = "aworld-sandbox-bootstrap"
#: Appears in stdout/stderr where output was cut.
TRUNCATION_MARKER = "bytes of output truncated by the sandbox"

_CODE_FILENAME = "<sandbox>"
_MIN_PYTHON = (3, 8)                 # sys.addaudithook
_DRAIN_S = 1.0                       # how long to keep reading pipes after the process exited
_REPORT_CAP = 1 << 20                # bytes of side-channel records kept from a fork storm
_UID_POOL = (100_000, 1_100_000)     # per-call uids are drawn from here when the uid map allows
_NOBODY = 65534
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


class SandboxLimits(BaseModel):
    """How much one run may use. Small defaults: agent code should be quick."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wall_time_s: float = Field(10.0, gt=0)
    cpu_time_s: int = Field(10, ge=1)
    memory_mb: int = Field(512, ge=64)            # RLIMIT_AS and RLIMIT_DATA
    max_output_bytes: int = Field(64_000, ge=256)  # stdout+stderr kept (head and tail; a marker between)
    max_file_bytes: int = Field(16_000_000, ge=0)  # RLIMIT_FSIZE: per file
    max_processes: int = Field(32, ge=1)           # RLIMIT_NPROC: processes and threads of the sandbox uid
    allow_network: bool = False


class SandboxResult(BaseModel):
    """What happened. ``status`` is for code, ``error`` is for the model (and people) to read."""

    model_config = ConfigDict(frozen=True)

    stdout: str
    stderr: str
    exit_code: int | None      # negative: killed by that signal; None: killed by us on wall time
    status: Status
    error: str | None
    wall_s: float
    files: list[str]           # top-level names left in the working directory
    output_truncated: bool = False
    cpu_s: float | None = None
    network_isolation: Literal["netns+audit_hook", "audit_hook", "none"] = "audit_hook"
    isolation: list[str] = Field(default_factory=list)  # active layers, e.g. ["privilege_drop", "netns", ...]
    run_as_uid: int | None = None                       # None: the code ran as our own uid

    @property
    def ok(self) -> bool:
        """The code ran to completion with exit code 0 (output may have been truncated)."""
        return self.status in ("ok", "output_truncated")


class SandboxError(RuntimeError):
    """The sandbox itself could not run (a setup problem, not the code's fault)."""


def run_python(
    code: str,
    limits: SandboxLimits = SandboxLimits(),
    files: dict[str, bytes] | None = None,
    workdir: Path | None = None,
    *,
    python: str | None = None,
) -> SandboxResult:
    """Run ``code`` as a Python script in a fresh, limited process and report what happened.

    ``files`` are written into the working directory first (relative names, subfolders allowed).
    Without ``workdir`` a temporary directory is used and removed afterwards; with it, the
    directory is kept (and given back to its owner after the run). ``python`` overrides the
    interpreter; by default the first one the sandbox uid can execute is used.
    Thread-safe: the agent loop calls this from worker threads.
    """
    plan = _plan(limits, python)
    own_dir = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="aworld-sandbox-")) if own_dir else Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    wd = wd.resolve()
    owner = wd.stat()
    try:
        _write_files(wd, files or {})
        if plan.uid is not None:
            _chown_tree(wd, plan.uid, plan.uid)
        return _execute(code, limits, plan, wd)
    finally:
        if own_dir:
            shutil.rmtree(wd, onerror=lambda _f, p, e: log.warning("could not remove %s: %s", p, e[1]))
        elif plan.uid is not None:
            _chown_tree(wd, owner.st_uid, owner.st_gid)


# --------------------------------------------------------------------------------------------
# Planning: which layers this machine supports (probed once per process, then cached).


@dataclasses.dataclass(frozen=True)
class _Plan:
    python: str
    uid: int | None      # drop to this uid/gid in the child; None: stay as we are
    netns: bool
    pidns: bool
    block_network: bool


def _plan(limits: SandboxLimits, python: str | None) -> _Plan:
    netns_ok, pidns_ok = _unshare_support()
    interpreter, can_drop = _interpreter(python)
    return _Plan(
        python=interpreter,
        uid=_pick_uid() if can_drop else None,
        netns=netns_ok and not limits.allow_network,
        pidns=pidns_ok,
        block_network=not limits.allow_network,
    )


def _unshare_binary() -> str | None:
    return shutil.which("unshare") or shutil.which("unshare", path="/usr/bin:/bin:/usr/sbin:/sbin")


_PIDNS_FLAGS = ("--pid", "--fork", "--kill-child", "--mount-proc")


@functools.lru_cache(maxsize=None)
def _unshare_support() -> tuple[bool, bool]:
    """(network namespace works, pid namespace works). Needs root/CAP_SYS_ADMIN and util-linux."""
    binary, true = _unshare_binary(), shutil.which("true") or "/bin/true"
    if binary is None:
        log.warning("sandbox: no 'unshare' binary; network isolation is the audit hook only")
        return False, False

    def works(*flags: str) -> bool:
        try:
            return subprocess.run([binary, *flags, "--", true], capture_output=True, timeout=10,
                                  env={"PATH": _SAFE_PATH}).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    support = works("--net"), works(*_PIDNS_FLAGS)
    if not all(support):
        log.warning("sandbox: unshare support net=%s pid=%s (needs root or CAP_SYS_ADMIN)", *support)
    return support


_PROBE = ("import ctypes, json, linecache, resource, socket, sys, traceback, types; "
          "sys.exit(0 if sys.version_info >= (%d, %d) else 3)" % _MIN_PYTHON)


@functools.lru_cache(maxsize=None)
def _interpreter(explicit: str | None) -> tuple[str, bool]:
    """(interpreter path, whether privileges can be dropped with it).

    As root we only drop privileges with an interpreter that actually starts and imports the
    bootstrap's modules as an unprivileged uid; otherwise (a pyenv/venv under /root) the code
    would die at startup. Tested by running it, not by reasoning about permission bits.
    """
    if explicit is not None:
        candidates = [explicit]
    else:
        candidates = [sys.executable, getattr(sys, "_base_executable", ""), "/usr/bin/python3",
                      "/usr/local/bin/python3", shutil.which("python3") or ""]
    # abspath, not realpath: a venv's bin/python is a symlink, and resolving it would lose the venv.
    candidates = list(dict.fromkeys(os.path.abspath(c) for c in candidates if c and os.path.exists(c)))
    if not candidates:
        raise SandboxError(f"no Python interpreter found (tried {explicit or 'sys.executable, python3'})")
    if os.geteuid() != 0:
        return candidates[0], False
    probe_uid = _pick_uid()
    for candidate in candidates:
        try:
            ok = subprocess.run([candidate, "-I", "-B", "-c", _PROBE], capture_output=True, timeout=20,
                                cwd="/", env={"PATH": _SAFE_PATH}, user=probe_uid, group=probe_uid,
                                extra_groups=[]).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return candidate, True
    log.warning("sandbox: running as root but none of %s works as an unprivileged uid; the code will "
                "run WITHOUT privilege drop (and RLIMIT_NPROC is not enforced for root)", candidates)
    return candidates[0], False


@functools.lru_cache(maxsize=None)
def _uid_pool() -> tuple[int, int]:
    """A range of uids that are mapped in our user namespace (and in its gid map) and unused."""
    lo, hi = _UID_POOL
    try:
        for map_file in ("/proc/self/uid_map", "/proc/self/gid_map"):
            ranges = [tuple(int(x) for x in line.split()) for line in Path(map_file).read_text().splitlines()]
            if not any(start <= lo and hi <= start + count for start, _outside, count in ranges):
                return _NOBODY, _NOBODY + 1
    except (OSError, ValueError):
        return _NOBODY, _NOBODY + 1
    return lo, hi


def _pick_uid() -> int:
    """A fresh uid per call: its own RLIMIT_NPROC budget, and other sandboxes cannot touch its files."""
    lo, hi = _uid_pool()
    for _ in range(100):
        uid = lo + secrets.randbelow(hi - lo)
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    return _NOBODY


# --------------------------------------------------------------------------------------------
# The working directory.


def _write_files(wd: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        rel = PurePosixPath(name)
        if not name or rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"sandbox file name {name!r} must be a relative path inside the working directory")
        target = wd.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give the tree to ``uid``. Never follows symlinks, and skips hard links: the code could have
    linked a file from elsewhere in, and we must not hand that file to anyone."""
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if st.st_nlink > 1 and not os.path.isdir(path):
                    continue
                os.lchown(path, uid, gid)
            except OSError as exc:
                log.warning("sandbox: could not chown %s: %s", path, exc)


def _child_env(wd: Path) -> dict[str, str]:
    """Built from scratch: nothing of ours (API keys, cloud credentials) leaks in."""
    return {
        "PATH": _SAFE_PATH, "HOME": str(wd), "TMPDIR": str(wd), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "USER": "sandbox", "LOGNAME": "sandbox", "MPLBACKEND": "Agg",
        # One BLAS/OpenMP thread: each thread reserves address space and counts toward RLIMIT_NPROC.
        "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }


# --------------------------------------------------------------------------------------------
# Running it.


class _Capture:
    """Keeps the first and the last ``cap`` bytes of a stream and counts the rest, so a child that
    prints forever costs us bounded memory, and the end (a traceback, the answer) is never lost."""

    def __init__(self, cap: int) -> None:
        self.cap, self.total = cap, 0
        self.head, self.tail = bytearray(), bytearray()

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.cap:
                del self.tail[: len(self.tail) - self.cap]

    def render(self, budget: int) -> tuple[str, bool]:
        """The stream in at most ``budget`` bytes (plus a marker), and whether it was cut."""
        whole = len(self.head) + len(self.tail) == self.total
        data = self.head + self.tail if whole else None
        if whole and self.total <= budget:
            return _decode(data), False
        keep_end = budget // 2
        first = (data if whole else self.head)[: budget - keep_end]
        last = (data if whole else self.tail)[-keep_end:] if keep_end else b""
        omitted = self.total - len(first) - len(last)
        return f"{_decode(first)}\n[... {omitted} {TRUNCATION_MARKER} ...]\n{_decode(last)}", True


def _decode(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


def _split_budget(out_total: int, err_total: int, budget: int) -> tuple[int, int]:
    """Share ``budget`` between stdout and stderr; neither is squeezed below half if it needs it."""
    if out_total + err_total <= budget:
        return out_total, err_total
    err_budget = min(err_total, max(budget // 2, budget - out_total))
    return min(out_total, budget - err_budget), err_budget


@dataclasses.dataclass
class _Outcome:
    returncode: int | None     # of the process we started (unshare or the bootstrap)
    cpu_s: float | None
    timed_out: bool
    wall_s: float
    report: bytes


def _command(plan: _Plan, limits: SandboxLimits, wd: Path, report_fd: int) -> list[str]:
    config = {
        "report_fd": report_fd, "workdir": str(wd), "uid": plan.uid,
        "cpu_s": limits.cpu_time_s, "memory_bytes": limits.memory_mb * 1024 * 1024,
        "file_bytes": limits.max_file_bytes, "processes": limits.max_processes,
        "block_network": plan.block_network, "netns": plan.netns,
    }
    argv = [plan.python, "-I", "-B", "-X", "utf8", "-c", _BOOTSTRAP, json.dumps(config)]
    flags = (["--net"] if plan.netns else []) + (list(_PIDNS_FLAGS) if plan.pidns else [])
    if flags:
        binary = _unshare_binary()
        assert binary is not None  # flags are only set when the probe found it
        argv = [binary, *flags, "--", *argv]
    return argv


def _execute(code: str, limits: SandboxLimits, plan: _Plan, wd: Path) -> SandboxResult:
    report_r, report_w = os.pipe()
    try:
        proc = subprocess.Popen(
            _command(plan, limits, wd, report_w), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=wd, env=_child_env(wd), start_new_session=True,
            pass_fds=(report_w,), close_fds=True)
    except OSError as exc:
        os.close(report_r)
        raise SandboxError(f"could not start the sandbox interpreter {plan.python}: {exc}") from exc
    finally:
        os.close(report_w)
    out, err = _Capture(limits.max_output_bytes), _Capture(limits.max_output_bytes)
    try:
        outcome = _communicate(proc, code.encode("utf-8", errors="replace"), report_r, out, err,
                               limits.wall_time_s)
    finally:
        _kill_group(proc.pid)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        os.close(report_r)
    return _result(limits, plan, wd, outcome, out, err)


def _communicate(proc: subprocess.Popen[bytes], code: bytes, report_r: int, out: _Capture,
                 err: _Capture, wall_time_s: float) -> _Outcome:
    """Feed the code on stdin, read stdout/stderr/report without blocking, enforce wall time.

    After the started process exits we kill its process group (fork survivors outside a PID
    namespace) and drain the pipes for at most ``_DRAIN_S``: a grandchild that escaped the group
    could otherwise hold them open forever.
    """
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    report = bytearray()
    sinks = {proc.stdout.fileno(): out.feed, proc.stderr.fileno(): err.feed}

    def keep_report(data: bytes) -> None:
        if len(report) < _REPORT_CAP:
            report.extend(data)

    sinks[report_r] = keep_report
    for fd in sinks:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    stdin_fd = proc.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    sel.register(stdin_fd, selectors.EVENT_WRITE)
    pending = memoryview(code)
    pidfd = _pidfd(proc.pid)
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ)

    start = time.monotonic()
    deadline, drain_until = start + wall_time_s, None
    status: tuple[int, float] | None = None
    timed_out, end = False, start
    try:
        while True:
            if status is None:
                status = _reap(proc.pid, block=False)
                if status is None and time.monotonic() >= deadline:
                    timed_out = True
                    _kill_group(proc.pid)
                    proc.kill()  # our own direct child: always killable, and takes its namespace along
                    status = _reap(proc.pid, block=True)
                if status is not None:
                    end = time.monotonic()
                    _kill_group(proc.pid)
                    drain_until = end + _DRAIN_S
                    for fd in (pidfd, stdin_fd):
                        if fd is not None and fd in sel.get_map():
                            sel.unregister(fd)
            now = time.monotonic()
            if drain_until is not None and (now >= drain_until or not sel.get_map()):
                break
            wait = (drain_until if drain_until is not None else deadline) - now
            if pidfd is None and status is None:
                wait = min(wait, 0.02)
            for key, _mask in sel.select(max(wait, 0.0)):
                fd = key.fd
                if fd == pidfd:
                    continue  # the process exited; reaped at the top of the loop
                if fd == stdin_fd:
                    try:
                        pending = pending[os.write(fd, pending):]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if data:
                    sinks[fd](data)
                else:
                    sel.unregister(fd)
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
    returncode, cpu_s = status if status is not None else (None, None)
    proc.returncode = returncode  # we reaped it ourselves; keep Popen from waiting again
    return _Outcome(returncode=returncode, cpu_s=cpu_s, timed_out=timed_out, wall_s=end - start,
                    report=bytes(report))


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux >= 5.3), so we never poll."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _reap(pid: int, *, block: bool) -> tuple[int, float] | None:
    """(Popen-style return code, CPU seconds of it and the descendants it reaped), or None."""
    try:
        got, status, usage = os.wait4(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return -signal.SIGKILL, 0.0
    if got == 0:
        return None
    return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


def _kill_group(pgid: int) -> None:
    """SIGKILL the session's process group. Safe after reaping: Linux does not reuse a pid that
    is still some group's id, and an empty group gives ESRCH."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------------------------
# Making sense of it.


def _records(report: bytes) -> list[dict]:
    records = []
    for line in report.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _result(limits: SandboxLimits, plan: _Plan, wd: Path, outcome: _Outcome,
            out: _Capture, err: _Capture) -> SandboxResult:
    records = _records(outcome.report)
    exit_record = next((r for r in reversed(records) if r.get("kind") == "exit"), None)
    exception = next((r for r in records if r.get("kind") == "exception" and r.get("main")), None)
    ready = next((r for r in records if r.get("kind") == "ready"), {})

    out_budget, err_budget = _split_budget(out.total, err.total, limits.max_output_bytes)
    stdout, cut_out = out.render(out_budget)
    stderr, cut_err = err.render(err_budget)
    truncated = cut_out or cut_err

    if exit_record is not None:
        exit_code, cpu_s = exit_record.get("returncode"), exit_record.get("cpu_s")
    else:
        exit_code, cpu_s = outcome.returncode, outcome.cpu_s
    if outcome.timed_out:
        exit_code = None
    if exit_record is None and not outcome.timed_out and not ready:
        raise SandboxError(f"the sandbox did not start (exit code {outcome.returncode}): "
                           f"{_last_line(stderr) or 'no output'}")
    status, error = _classify(limits, outcome.timed_out, exit_record is not None, exit_code, cpu_s,
                              exception, stderr, truncated)

    isolation = ["clean_env", "rlimits", "audit_hook"]
    if plan.uid is not None and ready.get("uid") == plan.uid:
        isolation.append("privilege_drop")
    if ready.get("no_new_privs"):
        isolation.append("no_new_privs")
    isolation += [name for name, on in (("netns", plan.netns), ("pidns", plan.pidns)) if on]
    network: Literal["netns+audit_hook", "audit_hook", "none"] = (
        "none" if limits.allow_network else "netns+audit_hook" if plan.netns else "audit_hook")
    try:
        names = sorted(os.listdir(wd))[:1000]
    except OSError:
        names = []
    log.debug("sandbox: status=%s wall=%.2fs cpu=%s exit=%s", status, outcome.wall_s, cpu_s, exit_code)
    return SandboxResult(
        stdout=stdout, stderr=stderr, exit_code=exit_code, status=status, error=error,
        wall_s=round(outcome.wall_s, 3), files=names, output_truncated=truncated,
        cpu_s=None if cpu_s is None else round(cpu_s, 3), network_isolation=network,
        isolation=isolation, run_as_uid=plan.uid if "privilege_drop" in isolation else None)


_NETWORK_MSG = "network access is disabled in the sandbox"  # same text as in the bootstrap
_FILE_MSG = "sandbox: "
_MEMORY_HINTS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


def _classify(limits: SandboxLimits, timed_out: bool, supervised: bool, exit_code: int | None,
              cpu_s: float | None, exception: dict | None, stderr: str,
              truncated: bool) -> tuple[Status, str | None]:
    """Turn what we observed into one status and one sentence. Order matters: the limit we
    enforced explains a death better than the symptom the code printed on the way down."""
    if timed_out:
        return "timeout", (f"wall-time limit of {limits.wall_time_s:g} s exceeded; "
                           "the sandbox's processes were killed")
    if not supervised:
        return "killed", (f"the sandbox supervisor died unexpectedly (exit code {exit_code}); "
                          f"{_last_line(stderr) or 'no output'}")
    if exit_code is not None and exit_code < 0:
        sig = -exit_code
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s is not None
                                     and cpu_s >= limits.cpu_time_s - 0.05):
            return "cpu_time", f"CPU-time limit of {limits.cpu_time_s} s exceeded"
        if sig == signal.SIGXFSZ:
            return "file_size", f"file-size limit of {limits.max_file_bytes:,} bytes exceeded"
        if any(hint in stderr for hint in _MEMORY_HINTS):
            return "memory", f"memory limit of {limits.memory_mb} MB exceeded (crashed with {_signame(sig)})"
        hint = "; an unexpected SIGKILL usually means the kernel's out-of-memory killer" \
            if sig == signal.SIGKILL else ""
        return "killed", f"killed by {_signame(sig)}{hint}"
    if exception is not None and exit_code:
        line = str(exception.get("last_line") or exception.get("type") or "unknown error")
        category = exception.get("category")
        if category == "memory":
            return "memory", f"memory limit of {limits.memory_mb} MB exceeded ({line})"
        if category == "process_limit":
            return "process_limit", (f"process limit of {limits.max_processes} processes/threads reached; "
                                     f"starting another was refused, e.g. by a fork bomb ({line})")
        if category == "file_size":
            return "file_size", (f"file-size limit of {limits.max_file_bytes:,} bytes exceeded; "
                                 f"the write was stopped ({line})")
        if category == "network":
            return "network_denied", _NETWORK_MSG if _NETWORK_MSG in line else f"{_NETWORK_MSG} ({line})"
        if category == "access":
            ours = line.partition(_FILE_MSG)[2]  # the hook's own sentence says what and why
            return "access_denied", f"file access refused: {ours or line}"
        return "error", line
    if exit_code:
        last = _last_line(stderr)
        return "error", f"exited with code {exit_code}" + (f": {last}" if last else "")
    if truncated:
        return "output_truncated", f"output exceeded {limits.max_output_bytes:,} bytes and was truncated"
    return "ok", None


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


# --------------------------------------------------------------------------------------------
# The child side. Passed with ``python -c`` so there is no file to keep readable for the sandbox
# uid. Runs as root first (supervisor), then forks the worker that limits and drops itself.
# Keep it compatible with Python 3.8 and free of imports after the user code starts.

_BOOTSTRAP = r'''# aworld-sandbox-bootstrap (aworld_core/tools/sandbox.py)
import _thread, builtins, errno, gc, json, linecache, os, resource, socket, sys, traceback, types

CFG = json.loads(sys.argv[1])
REPORT_FD = CFG["report_fd"]
FILENAME = "<sandbox>"
NETWORK_MSG = "network access is disabled in the sandbox"
FILE_MSG = "sandbox: "
SPAWN_EVENTS = {"os.fork", "os.forkpty", "subprocess.Popen", "os.posix_spawn", "os.spawn",
                "os.system", "_thread.start_new_thread", "os.exec"}
STATE = {"last_event": "", "denials": 0}


def report(record):
    """One JSON line per record, kept under PIPE_BUF so forked writers never interleave."""
    for key, value in list(record.items()):
        if isinstance(value, str) and len(value) > 1000:
            record[key] = value[:1000]
    try:
        os.write(REPORT_FD, (json.dumps(record) + "\n").encode())
    except Exception:
        pass


def exit_code(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return 1


def supervise():
    """Pid 1 of the PID namespace when there is one: waits for the worker, reaps orphans, and
    reports the worker's real exit status (unshare would blur a signal death into 1)."""
    code = sys.stdin.buffer.read().decode("utf-8", "replace")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.set_inheritable(REPORT_FD, False)
    worker_pid = os.fork()
    if worker_pid == 0:
        return worker(code)
    status, usage = None, None
    while True:
        try:
            pid, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            break
        if pid == worker_pid:
            break
    if status is None:
        report({"kind": "exit", "returncode": None, "cpu_s": None})
        os._exit(70)
    rc = exit_code(status)
    report({"kind": "exit", "returncode": rc, "cpu_s": usage.ru_utime + usage.ru_stime,
            "maxrss_kb": usage.ru_maxrss})
    os._exit(rc if rc >= 0 else 128 - rc)


def set_limit(name, soft, hard):
    res = getattr(resource, name)
    try:
        if os.geteuid() != 0:
            cur_hard = resource.getrlimit(res)[1]
            if cur_hard != resource.RLIM_INFINITY:
                hard = min(hard, cur_hard)
                soft = min(soft, hard)
        resource.setrlimit(res, (soft, hard))
        return None
    except (ValueError, OSError) as exc:
        return "%s: %s" % (name, exc)


def no_new_privs():
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    except Exception:
        return False


def worker(code):
    main_pid = os.getpid()
    problems = [p for p in (
        set_limit("RLIMIT_CORE", 0, 0),
        set_limit("RLIMIT_CPU", CFG["cpu_s"], CFG["cpu_s"] + 1),
        set_limit("RLIMIT_AS", CFG["memory_bytes"], CFG["memory_bytes"]),
        set_limit("RLIMIT_DATA", CFG["memory_bytes"], CFG["memory_bytes"]),
        set_limit("RLIMIT_FSIZE", CFG["file_bytes"], CFG["file_bytes"]),
        set_limit("RLIMIT_NPROC", CFG["processes"], CFG["processes"]),
    ) if p]
    nnp = no_new_privs()
    uid = CFG["uid"]
    if uid is not None:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        except OSError as exc:
            report({"kind": "ready", "uid": os.getuid(), "problems": ["privilege drop failed: %s" % exc]})
            os.write(2, b"sandbox: privilege drop failed; refusing to run the code\n")
            os._exit(70)
    report({"kind": "ready", "uid": os.getuid(), "no_new_privs": nnp, "problems": problems})

    sys.argv = [FILENAME]
    sys.path.insert(0, CFG["workdir"])
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    linecache.cache[FILENAME] = (len(code), None, code.splitlines(True), FILENAME)
    reserve = bytearray(1 << 20)  # freed on MemoryError so the traceback can still be printed
    install_hook(CFG["workdir"], CFG["block_network"], CFG["netns"])
    try:
        exec(compile(code, FILENAME, "exec"), module.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        reserve = None
        handle(exc, module, main_pid)
        return 1
    return 0


def handle(exc, module, main_pid):
    category = categorize(exc)  # first: printing the traceback raises audit events of its own
    if category == "memory":
        module.__dict__.clear()
        tb = exc.__traceback__
        while tb is not None:
            try:
                tb.tb_frame.clear()
            except RuntimeError:
                pass  # our own frame, still running
            tb = tb.tb_next
        gc.collect()
    try:
        tb = exc.__traceback__
        traceback.print_exception(type(exc), exc, tb.tb_next if tb is not None else None)
        sys.stderr.flush()
    except BaseException:
        os.write(2, ("%s\n" % type(exc).__name__).encode())
    try:
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    except BaseException:
        last = type(exc).__name__
    report({"kind": "exception", "main": os.getpid() == main_pid, "type": type(exc).__name__,
            "category": category, "last_line": last})


def chain(exc):
    seen = []
    while exc is not None and len(seen) < 10 and all(exc is not s for s in seen):
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def categorize(exc):
    for e in chain(exc):
        try:
            msg = str(e)
        except BaseException:
            msg = ""
        if isinstance(e, MemoryError):
            return "memory"
        if isinstance(e, RuntimeError) and "can't start new thread" in msg:
            return "process_limit"
        if not isinstance(e, OSError):
            continue
        if isinstance(e, PermissionError) and NETWORK_MSG in msg:
            return "network"
        if isinstance(e, BlockingIOError) and e.errno == errno.EAGAIN and STATE["last_event"] in SPAWN_EVENTS:
            return "process_limit"
        if e.errno == errno.EFBIG:
            return "file_size"
        if isinstance(e, socket.gaierror) or e.errno in (errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH):
            return "network"
        if isinstance(e, PermissionError):
            return "access"
    return "error"


def install_hook(workdir, block_network, netns):
    """Refuse, with a PermissionError that says why, what the code has no business doing."""
    read_roots = {workdir, "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc",
                  "/proc", "/sys"}
    for path in [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix] + sys.path:
        if path:
            read_roots.add(os.path.realpath(path))
    read_roots = tuple(sorted(read_roots))
    write_roots = (workdir,)
    special_write = {"/dev/null", "/dev/stdout", "/dev/stderr"}
    special_read = special_write | {"/dev/stdin", "/dev/zero", "/dev/urandom", "/dev/random"}
    write_bits = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    busy = set()
    realpath, abspath, fsdecode, fspath = os.path.realpath, os.path.abspath, os.fsdecode, os.fspath

    def deny(what, message):
        if STATE["denials"] < 20:
            STATE["denials"] += 1
            report({"kind": "denied", "what": what, "detail": message})
        raise PermissionError(errno.EACCES, message)

    def within(path, roots):
        for root in roots:
            if path == root or path.startswith(root.rstrip("/") + "/"):
                return True
        return False

    def check(path, write, dir_fd=None):
        if path is None:
            path = "."
        if isinstance(path, int):
            return  # an already-open descriptor
        path = fsdecode(fspath(path))
        if not path.startswith("/") and isinstance(dir_fd, int) and dir_fd >= 0:
            path = os.readlink("/proc/self/fd/%d" % dir_fd) + "/" + path
        path = abspath(path)
        if path in (special_write if write else special_read):
            return
        if within(realpath(path), write_roots if write else read_roots):
            return
        if write:
            deny("file", FILE_MSG + "writing %r is not allowed (only the working directory is writable)" % path)
        deny("file", FILE_MSG + "reading %r is not allowed (only the working directory and system "
                                "paths are readable)" % path)

    def is_write(mode, flags):
        if isinstance(flags, int):
            return bool(flags & write_bits)
        return not isinstance(mode, str) or any(c in mode for c in "wax+")

    def check_socket(sock, address):
        if sock.family != socket.AF_UNIX:
            deny("network", NETWORK_MSG)
        if isinstance(address, (str, bytes)):
            if address[:1] in ("\0", b"\0"):
                if not netns:
                    deny("network", NETWORK_MSG + " (abstract unix sockets reach the host)")
            else:
                check(address, True)

    def deny_lookup(args):
        deny("network", NETWORK_MSG)

    def new_socket(args):
        if args[1] not in (socket.AF_UNIX, -1):
            deny("network", NETWORK_MSG)

    def arg(args, i):
        return args[i] if len(args) > i else None

    handlers = {
        "open": lambda a: check(a[0], is_write(arg(a, 1), arg(a, 2))),
        "os.listdir": lambda a: check(a[0], False),
        "os.scandir": lambda a: check(a[0], False),
        "os.remove": lambda a: check(a[0], True, arg(a, 1)),
        "os.rmdir": lambda a: check(a[0], True, arg(a, 1)),
        "os.mkdir": lambda a: check(a[0], True, arg(a, 2)),
        "os.rename": lambda a: (check(a[0], True, arg(a, 2)), check(a[1], True, arg(a, 3))),
        "os.link": lambda a: (check(a[0], True, arg(a, 2)), check(a[1], True, arg(a, 3))),
        "os.symlink": lambda a: check(a[1], True, arg(a, 2)),
        "os.chmod": lambda a: check(a[0], True, arg(a, 2)),
        "os.chown": lambda a: check(a[0], True, arg(a, 3)),
        "os.truncate": lambda a: check(a[0], True),
        "os.utime": lambda a: check(a[0], True, arg(a, 3)),
        "os.setxattr": lambda a: check(a[0], True),
        "os.removexattr": lambda a: check(a[0], True),
        "shutil.rmtree": lambda a: check(a[0], True, arg(a, 1)),
    }
    if block_network:
        handlers.update({
            "socket.__new__": new_socket,
            "socket.connect": lambda a: check_socket(a[0], a[1]),
            "socket.bind": lambda a: check_socket(a[0], a[1]),
            "socket.sendto": lambda a: check_socket(a[0], a[1]),
            "socket.sendmsg": lambda a: check_socket(a[0], a[1]),
            "socket.getaddrinfo": deny_lookup,
            "socket.gethostbyname": deny_lookup,
            "socket.gethostbyname_ex": deny_lookup,
            "socket.gethostbyaddr": deny_lookup,
            "socket.getnameinfo": deny_lookup,
        })
    get_ident = _thread.get_ident

    def hook(event, args):
        STATE["last_event"] = event
        handler = handlers.get(event)
        if handler is None:
            return
        me = get_ident()
        if me in busy:
            return  # an event raised by our own checking
        busy.add(me)
        try:
            handler(args)
        finally:
            busy.discard(me)

    sys.addaudithook(hook)


sys.exit(supervise())
'''
