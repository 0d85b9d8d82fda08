"""Checking an uploaded capture where a hostile file can do no harm: a confined child process.

The worker that records verdicts holds the access-token secret, the KEK and the graph; the
upload is a file anyone with an account can craft for FFmpeg and OpenCV. So the worker never
decodes it. `check_in_sandbox` starts a fresh interpreter, `python -m workers.sandbox`, with
an environment of a few fixed, harmless variables (no REELGRAPH_* setting, no URL, no key)
and only the file's path and the limits on its stdin. Before it touches the file the child:

- asks the kernel to kill it when its parent dies (PR_SET_PDEATHSIG);
- limits itself: CPU seconds (RLIMIT_CPU), address space (RLIMIT_AS), no file writes
  (RLIMIT_FSIZE 0), no core dumps, a few open files;
- loads FFmpeg, OpenCV, numpy, dlib's face models and the digits recogniser
  (workers.faces, workers.speech), under those limits;
- where the kernel has Landlock (Linux 5.13+), gives up every file access but reading the
  Python installation, the `workers` and `media` packages, the system's library folders and
  the one upload (so not the data folder, its secret key, its KEK or its Redis socket's
  folder), TCP (ABI 4+), signals and abstract sockets outside itself (ABI 6+), and ptrace of
  any process outside it (its parent worker's memory included);
- with seccomp (x86-64, arm64), gives up creating sockets, io_uring, ptrace,
  process_vm_readv/writev and execve, whatever Landlock there is.

Then it runs workers.liveness.check_capture (with the capture's challenge: its digits and
head moves) and writes the result to stdout: a JSON line (the face's embedding in it), then
the reference crops as raw RGB bytes (never an image format the parent would have to
parse). The parent reads both pipes under a size cap, kills the child's process group at the
wall-time deadline, reaps it with its resource usage, and checks everything it got (codes,
numbers, crop shapes and byte counts) before JPEG-encoding the crops itself.

A child over a limit or crashed yields a rejected LivenessResult with a sentence for the
person (SANDBOX_LIMIT, SANDBOX_FAILED), never an exception: a crafted file cannot take the
worker down or be tried again forever. Only a child that fails before it opened the file (a
broken installation, a memory limit too small to start Python) raises SandboxUnavailable:
that is our problem, not the file's.

This module imports only the standard library at the top: the child sets its limits before
it imports FFmpeg, OpenCV or numpy.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import platform
import resource
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.liveness import CaptureChallenge, DecodeBudget, LivenessResult

__all__ = [
    "CHILD_ENV",
    "SANDBOX_FAILED",
    "SANDBOX_LIMIT",
    "SandboxLimits",
    "SandboxReport",
    "SandboxUnavailable",
    "check_in_sandbox",
    "parse_child_output",
]

SANDBOX_LIMIT = (
    "The video could not be checked within its limits; upload a shorter, smaller clip "
    "(3 to 15 seconds, 1080p is plenty) recorded with your camera app."
)
SANDBOX_FAILED = (
    "Checking this video stopped part-way, so it was not tried again; record a new video "
    "with your camera app and upload the file unchanged."
)
# the child's whole environment: no secret, no URL, nothing of the worker's
CHILD_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MB of address space per arena otherwise
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}
_READY = b"R"  # the child's first byte: confined, libraries loaded, about to open the file
_EXIT_ERROR = 3  # an exception in the child
_EXIT_MEMORY = 4  # MemoryError: the address-space limit
_HEADER_MAX = 64 * 1024
# read-only to the child, for a library a decoder loads late (Landlock): public files
_SYSTEM_LIBRARIES = (
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
)
_STDERR_KEEP = 8 * 1024
_ROOT = Path(__file__).resolve().parent.parent  # holds the workers and media packages


class SandboxUnavailable(RuntimeError):
    """The child could not start checking (before it opened the file): a server problem."""


@dataclass(frozen=True)
class SandboxLimits:
    """What one child may use. wall_s: seconds from start to verdict (the parent kills it
    then); cpu_s: CPU seconds, all threads together (RLIMIT_CPU; None: wall_s times the
    decoder's threads); memory_mb: address space (RLIMIT_AS), libraries included;
    output_bytes: what the parent reads from it at most; open_files: RLIMIT_NOFILE."""

    wall_s: float = 90.0
    cpu_s: int | None = None
    memory_mb: int = 1536
    output_bytes: int = 16 * 1024 * 1024
    open_files: int = 64


@dataclass(frozen=True)
class SandboxReport:
    """How the child ran. outcome: "ok", "wall-time limit", "cpu limit", "memory limit",
    "signal N", "exit N", "bad output: ...", "output over the cap". max_rss_kb: the child's
    peak resident memory, read by the parent from the kernel once the answer is whole (0 when
    it died first); cpu_s: the kernel's accounting of the reaped child; confinement: what
    the child says it applied ("rlimits", "landlock-abi-7", "seccomp"); stderr: the tail of
    its stderr; pid: the child's process id (gone by now)."""

    outcome: str
    wall_s: float
    cpu_s: float = 0.0
    max_rss_kb: int = 0
    pid: int = 0
    confinement: tuple[str, ...] = ()
    stderr: str = ""
    frames_decoded: int = 0


@dataclass
class _Run:
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    peak_rss_kb: int = 0
    answered: bool = False  # stdout closed: the answer is whole, or the child died
    overflow: bool = False
    timed_out: bool = False
    status: int = 0  # as os.wait4 gives it
    usage: resource.struct_rusage | None = None
    pid: int = 0


def check_in_sandbox(
    path: Path,
    *,
    min_s: float = 3,
    max_s: float = 15,
    budget: DecodeBudget | None = None,
    limits: SandboxLimits | None = None,
    hold_file: Path | None = None,
    challenge: CaptureChallenge | None = None,
) -> tuple[LivenessResult, SandboxReport]:
    """Run the liveness check of the capture at `path` in a confined child process.

    Returns the parent-validated result (JPEG reference frames encoded here) and how the
    child ran. A child over a limit, crashed, or answering nonsense gives a rejected result
    (code SANDBOX_LIMIT or SANDBOX_FAILED). Raises SandboxUnavailable when the child failed
    before opening the file. hold_file (tests only): the child, confined, waits until that
    file exists before opening the capture. challenge: what the capture must answer (None:
    the presence check alone).
    """
    from workers.liveness import DecodeBudget

    budget = budget or DecodeBudget()
    limits = limits or SandboxLimits()
    cpu_s = limits.cpu_s or max(1, math.ceil(limits.wall_s * max(1, budget.threads)))
    request = {
        "path": str(Path(path).resolve()),
        "min_s": min_s,
        "max_s": max_s,
        "budget": budget.as_dict(),
        "cpu_s": cpu_s,
        "memory_mb": limits.memory_mb,
        "open_files": limits.open_files,
        "parent": os.getpid(),
        "hold_file": str(hold_file) if hold_file else None,
        "challenge": challenge.as_dict() if challenge else None,
        "packages": [str(_ROOT / "workers"), str(_ROOT / "media")],
    }
    started = time.monotonic()
    run = _run_child(request, limits)
    wall = time.monotonic() - started
    report = SandboxReport(
        outcome="",
        wall_s=round(wall, 3),
        cpu_s=_cpu_s(run.usage),
        max_rss_kb=run.peak_rss_kb,
        pid=run.pid,
        stderr=run.stderr.decode(errors="replace"),
    )
    return _verdict(run, report, min_s=min_s, max_s=max_s)


def _cpu_s(usage: resource.struct_rusage | None) -> float:
    return round(usage.ru_utime + usage.ru_stime, 3) if usage else 0.0


def _run_child(request: dict[str, Any], limits: SandboxLimits) -> _Run:
    run = _Run()
    proc = subprocess.Popen(
        [sys.executable, "-B", "-E", "-s", "-m", "workers.sandbox"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(CHILD_ENV),
        cwd=_ROOT,
        close_fds=True,
        start_new_session=True,  # its own process group: killed whole at the deadline
    )
    run.pid = proc.pid
    deadline = time.monotonic() + limits.wall_s
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
        _collect(proc, run, deadline, limits.output_bytes)
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        # the whole group, always: whatever it left behind goes too. It is not reaped yet, so
        # its id (and its group's) cannot have been given to another process meanwhile
        _kill(proc)
        _, run.status, run.usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(run.status)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return run


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


_EXIT_GRACE_S = 2.0  # for a child that answered to exit, before it is killed anyway


def _collect(proc: subprocess.Popen, run: _Run, deadline: float, cap: int) -> None:
    """Read the child's pipes until it has exited and closed them, the deadline passes, or
    stdout passes cap. Once stdout is closed (the answer whole, or the child dead) the
    child has _EXIT_GRACE_S more to go: what it does after answering cannot hold the
    worker."""
    try:
        exit_fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        exit_fd = None  # no pidfd: poll
    selector = selectors.DefaultSelector()
    try:
        selector.register(proc.stdout, selectors.EVENT_READ, run.stdout)
        selector.register(proc.stderr, selectors.EVENT_READ, run.stderr)
        if exit_fd is not None:
            selector.register(exit_fd, selectors.EVENT_READ, None)
        pipes = 2
        while True:
            if pipes == 0 and _exited(proc.pid):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                run.timed_out = not run.answered
                return
            wait = left if exit_fd is not None and pipes else min(left, 0.05)
            for key, _ in selector.select(wait):
                if key.data is None:  # the pidfd: the child exited
                    selector.unregister(key.fileobj)
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    pipes -= 1
                    if key.data is run.stdout:  # the answer is whole; the child waits
                        run.answered = True
                        run.peak_rss_kb = _peak_rss_kb(proc.pid)
                        with contextlib.suppress(OSError):
                            proc.stdin.close()  # its cue to exit
                        deadline = min(deadline, time.monotonic() + _EXIT_GRACE_S)
                elif key.data is run.stdout:
                    run.stdout += chunk
                    if len(run.stdout) > cap:
                        run.overflow = True
                        return
                else:
                    run.stderr += chunk
                    del run.stderr[:-_STDERR_KEEP]
    finally:
        selector.close()
        if exit_fd is not None:
            os.close(exit_fd)


def _peak_rss_kb(pid: int) -> int:
    """The live child's peak resident memory since its exec (VmHWM), 0 once it has exited.

    Not the reaped child's ru_maxrss: the kernel carries the spawning worker's own peak
    across fork and exec into that figure."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _kill(proc: subprocess.Popen) -> None:
    # os.kill, not proc.kill: Popen would reap the child first, and its usage with it
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(proc.pid, signal.SIGKILL)


def _verdict(
    run: _Run, report: SandboxReport, *, min_s: float, max_s: float
) -> tuple[LivenessResult, SandboxReport]:
    from dataclasses import replace

    from workers.liveness import LivenessResult

    ready = run.stdout.startswith(_READY)
    body = bytes(run.stdout[len(_READY) :]) if ready else b""
    status = run.status
    signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None

    def rejected(limit: bool, outcome: str) -> tuple[LivenessResult, SandboxReport]:
        result = LivenessResult(
            ok=False,
            reason=SANDBOX_LIMIT if limit else SANDBOX_FAILED,
            code="SANDBOX_LIMIT" if limit else "SANDBOX_FAILED",
        )
        return result, replace(report, outcome=outcome)

    if run.timed_out:
        return rejected(True, "wall-time limit")
    if run.overflow:
        return rejected(False, "output over the cap")
    if not ready:
        # it never got as far as the file: a broken installation or limits too small to
        # start Python, not the upload's doing (the wall-time limit is the upload's)
        raise SandboxUnavailable(
            f"the capture check could not start ({_describe(signum, code)}): "
            f"{report.stderr[-2000:]}"
        )
    try:
        result, confinement = parse_child_output(body, min_s=min_s, max_s=max_s)
    except ValueError as exc:
        # no whole answer: how the child ended says why. SIGKILL: the hard CPU limit (or the
        # kernel's OOM killer); MemoryError: the address-space limit
        if signum in (signal.SIGXCPU, signal.SIGKILL):
            return rejected(True, "cpu limit")
        if code == _EXIT_MEMORY:
            return rejected(True, "memory limit")
        if signum is not None or code != 0:
            return rejected(False, _describe(signum, code))
        return rejected(False, f"bad output: {exc}")
    # a whole, valid answer stands however the child ended afterwards
    report = replace(
        report, outcome="ok", confinement=confinement, frames_decoded=result.frames_decoded
    )
    return result, report


def _describe(signum: int | None, code: int | None) -> str:
    if signum is not None:
        return f"signal {signum}"
    return f"exit {code}"


# ---------- what the child says, checked ----------

_REASON_MAX = 400


def parse_child_output(
    body: bytes, *, min_s: float, max_s: float
) -> tuple[LivenessResult, tuple[str, ...]]:
    """The child's answer (after its ready byte) as a LivenessResult with JPEG reference
    frames encoded here, and the confinement it reports. Raises ValueError for anything the
    child could not honestly have said: unknown codes, out-of-range numbers, a reason that is
    no plain sentence, crops of the wrong shape or byte count, bytes left over.
    """
    import numpy as np

    from workers.faces import EMBEDDING_SIZE
    from workers.liveness import (
        CODES,
        MAX_SAMPLES,
        MIN_SAMPLES,
        MOVE_WORDS,
        REFERENCE_COUNT,
        REFERENCE_SIDE,
        LivenessResult,
        encode_reference,
    )

    newline = body.find(b"\n", 0, _HEADER_MAX)
    if newline < 0:
        raise ValueError("no header line")
    try:
        head = json.loads(body[:newline])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("the header is not JSON") from exc
    if not isinstance(head, dict):
        raise ValueError("the header is not an object")
    ok = _typed(head, "ok", bool)
    code = head.get("code")
    reason = head.get("reason")
    sampled = _count(head, "frames_sampled", MAX_SAMPLES)
    one_face = _count(head, "frames_with_one_face", sampled)
    # a frame cap as liveness's own: max_s at 120 a second, with a second of slack
    decoded = _count(head, "frames_decoded", math.ceil((max_s + 1) * 120) + 120)
    duration = head.get("duration_s")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise ValueError("duration_s is not a number")
        if not math.isfinite(duration) or not 0 <= duration <= max_s + 1:
            raise ValueError("duration_s is out of range")
        duration = float(duration)
    crops = head.get("crops")
    if not isinstance(crops, list) or len(crops) > REFERENCE_COUNT:
        raise ValueError("crops is not a short list")
    confinement = head.get("confinement", [])
    if not isinstance(confinement, list) or not all(
        isinstance(c, str) and len(c) < 40 for c in confinement
    ):
        raise ValueError("confinement is not a list of names")
    embedding = _embedding(head.get("embedding"), EMBEDDING_SIZE)
    moves_seen = head.get("moves_seen", [])
    if (
        not isinstance(moves_seen, list)
        or len(moves_seen) > MAX_SAMPLES
        or not all(m in MOVE_WORDS for m in moves_seen)
    ):
        raise ValueError("moves_seen is not a list of moves")
    heard = head.get("digits_heard")
    if heard is not None and (
        not isinstance(heard, str)
        or len(heard) > 200
        or not heard.isascii()
        or not (heard == "" or heard.isdigit())
    ):
        raise ValueError("digits_heard is not digits")
    if ok:
        if code is not None or reason is not None:
            raise ValueError("a pass with a rejection")
        if not crops or sampled < MIN_SAMPLES or one_face < 1 or duration is None:
            raise ValueError("a pass without its evidence")
        if embedding is None:
            raise ValueError("a pass without an embedding")
        if not min_s - 0.2 <= duration <= max_s + 0.2:
            raise ValueError("a pass of the wrong length")
    else:
        if code not in CODES:
            raise ValueError(f"unknown code {str(code)[:40]!r}")
        if not isinstance(reason, str) or not _plain_sentence(reason):
            raise ValueError("the reason is no plain sentence")
        if crops or embedding is not None:
            raise ValueError("a rejection with reference crops or an embedding")
    references = []
    offset = newline + 1
    for shape in crops:
        if (
            not isinstance(shape, list)
            or len(shape) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
            or not all(1 <= n <= REFERENCE_SIDE for n in shape)
        ):
            raise ValueError("a crop of an impossible shape")
        height, width = shape
        size = height * width * 3
        if offset + size > len(body):
            raise ValueError("a crop cut short")
        pixels = np.frombuffer(body, np.uint8, size, offset).reshape(height, width, 3)
        references.append(encode_reference(pixels))
        offset += size
    if offset != len(body):
        raise ValueError("bytes after the last crop")
    result = LivenessResult(
        ok=ok,
        reason=reason,
        code=code,
        reference_frames=references,
        duration_s=duration,
        frames_sampled=sampled,
        frames_with_one_face=one_face,
        frames_decoded=decoded,
        embedding=embedding,
        moves_seen=tuple(moves_seen),
        digits_heard=heard,
    )
    return result, tuple(confinement)


def _embedding(value: Any, size: int) -> tuple[float, ...] | None:
    """A face embedding as the child sent it: null, or `size` finite numbers of a plausible
    magnitude (each of dlib's numbers is well under 1; their norm is about 1.4)."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != size:
        raise ValueError("the embedding is not a list of the right length")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ValueError("the embedding is not numbers")
    if not all(math.isfinite(v) and abs(v) <= 1.0 for v in value):
        raise ValueError("the embedding is out of range")
    return tuple(float(v) for v in value)


def _typed(head: dict[str, Any], key: str, kind: type) -> Any:
    value = head.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"{key} is not a {kind.__name__}")
    return value


def _count(head: dict[str, Any], key: str, most: int) -> int:
    value = head.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise ValueError(f"{key} is out of range")
    return value


def _plain_sentence(text: str) -> bool:
    return 0 < len(text) <= _REASON_MAX and text.isprintable() and text.endswith(".")


# ---------- the child ----------


def _child() -> int:
    """`python -m workers.sandbox`: read the request, confine, check, answer on stdout."""
    request = json.loads(sys.stdin.buffer.readline(_HEADER_MAX))
    out = sys.stdout.buffer
    _die_with_parent(request["parent"])
    confinement = _limit(request)
    path = Path(request["path"])
    try:
        # loaded under the limits, before confinement (which then need not let the dynamic
        # loader roam) and before the file is opened; OpenCV's own threads off, the decoder's
        # count is the budget's
        import av
        import cv2

        from workers.liveness import CaptureChallenge, DecodeBudget, check_capture, load_models

        cv2.setNumThreads(0)
        av.logging.set_level(av.logging.ERROR)  # FFmpeg then names a size it refused
        load_models()  # dlib's models and the recogniser, read before Landlock closes files
    except MemoryError:
        return _EXIT_MEMORY
    threads = len(os.listdir("/proc/self/task")) if sys.platform == "linux" else 1
    if threads != 1:  # Landlock and seccomp hold the calling thread (and later ones) only
        raise RuntimeError(f"{threads} threads before confinement; expected 1")
    readable = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    readable += [*request["packages"], *_SYSTEM_LIBRARIES]
    confinement += _landlock(readable, path)
    confinement += _seccomp()
    out.write(_READY)
    out.flush()
    hold = request.get("hold_file")
    while hold and not os.path.exists(hold):  # tests only: a check held at this point
        time.sleep(0.02)
    asked = request.get("challenge")
    challenge = (
        CaptureChallenge(digits=str(asked["digits"]), moves=tuple(asked["moves"]))
        if asked
        else None
    )
    try:
        result, crops = check_capture(
            path,
            min_s=request["min_s"],
            max_s=request["max_s"],
            budget=DecodeBudget(**request["budget"]),
            challenge=challenge,
        )
    except MemoryError:
        return _EXIT_MEMORY
    head = {
        "ok": result.ok,
        "code": result.code,
        "reason": result.reason,
        "duration_s": result.duration_s,
        "frames_sampled": result.frames_sampled,
        "frames_with_one_face": result.frames_with_one_face,
        "frames_decoded": result.frames_decoded,
        "crops": [[int(c.shape[0]), int(c.shape[1])] for c in crops],
        "confinement": confinement,
        "embedding": list(result.embedding) if result.embedding is not None else None,
        "moves_seen": list(result.moves_seen),
        "digits_heard": result.digits_heard,
    }
    out.write(json.dumps(head).encode() + b"\n")
    for crop in crops:
        out.write(crop.tobytes())
    out.flush()
    os.close(1)  # the answer is whole; alive until the parent has read its peak memory
    sys.stdin.buffer.read(1)
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown: nothing in it may hold the answer back


_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request was read
        os._exit(1)


def _limit(request: dict[str, Any]) -> list[str]:
    cpu = int(request["cpu_s"])
    memory = int(request["memory_mb"]) * 1024 * 1024
    files = int(request["open_files"])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file written, not a byte
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
    return ["rlimits"]


# Landlock (linux/landlock.h): the syscalls are numbered alike on every architecture
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
# the filesystem rights each ABI knows: 13 in ABI 1, REFER (2), TRUNCATE (3), IOCTL_DEV (5)
_FS_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_TCP = 0b11  # BIND_TCP, CONNECT_TCP (ABI 4)
_SCOPES = 0b11  # ABSTRACT_UNIX_SOCKET, SIGNAL (ABI 6)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _landlock(readable: list[str], capture: Path) -> list[str]:
    """Give up every file access but reading `readable` (directories) and `capture`, and TCP,
    signals, abstract sockets and ptrace outside this process. Needs a single thread."""
    if sys.platform != "linux":
        return []
    libc = _libc()
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    version = _LANDLOCK_CREATE_RULESET_VERSION
    abi = syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), version)
    if abi < 1:
        return []
    fs = _FS_RIGHTS[max(k for k in _FS_RIGHTS if k <= abi)]
    attr = _RulesetAttr(fs, _NET_TCP if abi >= 4 else 0, _SCOPES if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    try:
        rules = []
        for where in dict.fromkeys(readable):
            rights = _FS_READ_FILE | (_FS_READ_DIR if os.path.isdir(where) else 0)
            rules.append((where, rights))
        rules.append((str(capture), _FS_READ_FILE))
        for where, access in rules:
            try:
                fd = os.open(where, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a prefix that does not exist here, or the capture gone: no rule
            try:
                rule = _PathBeneath(access, fd)
                if syscall(
                    _SYS_LANDLOCK_ADD_RULE,
                    ruleset,
                    _LANDLOCK_RULE_PATH_BENEATH,
                    ctypes.byref(rule),
                    0,
                ):
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {where}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
        if syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0):
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return [f"landlock-abi-{abi}"]


# seccomp: a classic-BPF filter on the syscall number, per architecture
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# socket, ptrace, process_vm_readv, process_vm_writev, execve, execveat, io_uring_setup
_DENIED = {
    "x86_64": (41, 101, 310, 311, 59, 322, 425),
    "aarch64": (198, 117, 270, 271, 221, 281, 425),
}
_X32_BIT = 0x40000000
_SECCOMP_MODE_FILTER = 2
_RET_ALLOW = 0x7FFF0000
_RET_EPERM = 0x00050000 | errno.EPERM
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _seccomp() -> list[str]:
    """Refuse (EPERM) the syscalls a decoder never needs and an exploit would: sockets,
    ptrace and its kin, exec, io_uring; and every syscall of another ABI (x32, i386)."""
    machine = platform.machine()
    if sys.platform != "linux" or machine not in _AUDIT_ARCH:
        return []
    denied = _DENIED[machine]
    prog = [
        (_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_JEQ_K, 1, 0, _AUDIT_ARCH[machine]),
        (_RET_K, 0, 0, _RET_EPERM),
        (_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        prog.append((_JGE_K, len(denied) + 1, 0, _X32_BIT))  # to the refusal below
    for i, nr in enumerate(denied):
        prog.append((_JEQ_K, len(denied) - i, 0, nr))  # to the refusal
    prog += [(_RET_K, 0, 0, _RET_ALLOW), (_RET_K, 0, 0, _RET_EPERM)]
    filters = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
    fprog = _SockFprog(len(prog), filters)
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0):
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
    return ["seccomp"]


def _main() -> int:
    try:
        return _child()
    except MemoryError:
        return _EXIT_MEMORY
    except Exception:
        import traceback

        traceback.print_exc()
        return _EXIT_ERROR


if __name__ == "__main__":
    sys.exit(_main())
