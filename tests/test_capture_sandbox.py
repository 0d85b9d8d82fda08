"""Uploaded captures are checked in a confined child process (workers.sandbox), held to a
picture budget frame by frame (workers.liveness), by a worker of their own
(workers.capture_worker) that never holds up a render.

The hostile video is built here (tests/capture_videos.make_resizing_capture): a WebM whose
header and first frame say 160x120 and whose later frames are 5000x5000 (the finding used
16000x16000; 5000x5000 breaks the same 4096-a-side and 9.4-megapixel budget and encodes in
a second or two). Slow checks are made slow through the real parts: the child, confined,
waits for a "hold" file (REELGRAPH_CAPTURE_SANDBOX_HOLD_FILE, a test-only setting) before it
opens the capture. Tests wait for states and processes, never for time.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import av
import cv2
import numpy as np
import pytest
import redis.asyncio as aredis
from conftest import ROOT, Worker, purge_render_queue, raw, start_worker

from consent.challenges import Challenge
from graph import cameos as cameo_repo
from media.probe import MAX_FRAME_PIXELS, stated_frame_sizes
from media.uploads import UploadRejected, check_container
from resolvers.ids import decode_id
from tests.capture_videos import (
    SPOKEN_DIGITS,
    make_capture,
    make_resizing_capture,
    multipart_body,
    spoken_challenge,
)
from workers.cameo_tasks import capture_upload_dir, send_verification
from workers.liveness import CaptureChallenge, DecodeBudget
from workers.sandbox import (
    CHILD_ENV,
    SANDBOX_FAILED,
    SANDBOX_LIMIT,
    SandboxLimits,
    SandboxUnavailable,
    check_in_sandbox,
    parse_child_output,
)

BIG = (5000, 5000)
BIG_FRAME_KB = BIG[0] * BIG[1] * 3 // 2 // 1024  # one decoded 5000x5000 YUV 4:2:0 picture
START = "mutation { startCameoCapture { id uploadUrl expiresAt } }"
CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
CLIP = "query($id: ID!) { clip(id: $id) { id state failureReason } }"
LINUX = sys.platform == "linux"
MOVES = ("LEFT", "UP", "TILT_RIGHT")
ANSWERED = CaptureChallenge.from_phrase(SPOKEN_DIGITS, MOVES)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sandbox-videos")
    return {
        "good": make_capture(folder / "good.webm"),
        "answer": make_capture(
            folder / "answer.webm", seconds=6, moves=MOVES, digits=SPOKEN_DIGITS.replace(" ", "")
        ),
        "bomb": make_resizing_capture(folder / "bomb.webm", big=BIG),
    }


def sandbox_children(ancestor: int, *, direct: bool = False) -> list[int]:
    """Live `python -m workers.sandbox` processes started by `ancestor` (direct) or by any
    process under it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"workers.sandbox" not in argv:
            continue
        pid = int(entry.name)
        if _descends(pid, ancestor, direct):
            found.append(pid)
    return found


def _descends(pid: int, ancestor: int, direct: bool) -> bool:
    while pid > 1:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        pid = int(status.split("PPid:", 1)[1].split()[0])
        if pid == ancestor:
            return True
        if direct:
            return False
    return False


def confined(pid: int) -> bool:
    """The child has applied its confinement (no_new_privs comes with Landlock or seccomp)."""
    try:
        return "NoNewPrivs:\t1" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def wait_for(predicate, what: str, within_s: float = 300) -> None:
    """Poll a state; within_s only bounds a stuck test."""
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def limits_of(pid: int) -> dict[str, tuple[str, str]]:
    rows = Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    return {row[:26].strip(): tuple(row[26:].split()[:2]) for row in rows}


def landlock_abi() -> int:
    if not LINUX:
        return 0
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return max(0, libc.syscall(444, None, ctypes.c_size_t(0), 1))


class Held:
    """check_in_sandbox in a thread, its child held at the hold file until release()."""

    def __init__(self, path: Path, hold: Path, **kw) -> None:
        self.hold = hold
        self.outcome: tuple | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(path,), kwargs=kw, daemon=True)
        self.thread.start()
        wait_for(lambda: self._child() is not None, "a sandbox child started")
        self.pid = self._child()
        wait_for(lambda: confined(self.pid) or not self.thread.is_alive(), "the child confined")

    def _child(self) -> int | None:
        children = sandbox_children(os.getpid(), direct=True)
        return children[0] if children else None

    def _run(self, path: Path, **kw) -> None:
        try:
            self.outcome = check_in_sandbox(path, hold_file=self.hold, **kw)
        except BaseException as exc:  # handed to the test by result()
            self.error = exc

    def release(self) -> None:
        self.hold.touch()

    def result(self, within_s: float = 60) -> tuple:
        self.thread.join(within_s)
        assert not self.thread.is_alive(), "check_in_sandbox did not return"
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


# ---------- the child, on its own ----------


def test_a_good_capture_passes_and_the_parent_encodes_the_crops(videos) -> None:
    result, report = check_in_sandbox(videos["good"])
    assert result.ok, (result.reason, report)
    assert report.outcome == "ok" and report.stderr == ""
    assert len(result.reference_frames) == 3
    for jpeg in result.reference_frames:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] <= 960 and image.shape[1] <= 960
    assert result.frames_sampled == 20 and result.frames_decoded >= 20
    assert 0 < report.max_rss_kb < 1536 * 1024 and report.cpu_s > 0
    assert "rlimits" in report.confinement
    if landlock_abi():
        assert f"landlock-abi-{landlock_abi()}" in report.confinement
    if LINUX and os.uname().machine in ("x86_64", "aarch64"):
        assert "seccomp" in report.confinement


def test_the_child_checks_the_challenge_and_returns_the_embedding(videos) -> None:
    """The models load before confinement; the moves, digits and embedding come back whole."""
    result, report = check_in_sandbox(videos["answer"], challenge=ANSWERED)
    assert result.ok, (result.reason, report)
    assert result.moves_seen == MOVES and result.digits_heard == ANSWERED.digits
    assert result.embedding is not None and len(result.embedding) == 128
    assert 0 < report.max_rss_kb < 1536 * 1024
    wrong = CaptureChallenge.from_phrase(SPOKEN_DIGITS, ("UP", "LEFT", "TILT_RIGHT"))
    rejected, _ = check_in_sandbox(videos["answer"], challenge=wrong)
    assert rejected.code == "WRONG_MOVES" and rejected.embedding is None


def test_a_resizing_bomb_stops_at_its_first_big_frame(videos) -> None:
    """The header says 160x120; the decoder refuses the first 5000x5000 picture before it
    allocates it, and the check stops there: one frame decoded, memory as for a small clip."""
    _, good = check_in_sandbox(videos["good"])
    result, report = check_in_sandbox(videos["bomb"])
    assert not result.ok and result.code == "TOO_LARGE", (result.reason, report)
    assert result.reason == (
        "Part of the video is 5000x5000 pixels; record at 4K (4096 pixels on the longest "
        "side) or less, and upload the file your camera made, unchanged."
    )
    assert result.frames_decoded == 1  # the 160x120 one; not one of the 15 big ones
    assert report.frames_decoded == 1
    # a decoder that trusted the header would hold at least one 37 MB picture (a naive
    # decode of this file peaks near 240 MB); this child stays under a good small clip's
    # peak plus half of one such picture
    assert 0 < report.max_rss_kb < good.max_rss_kb + BIG_FRAME_KB // 2, (report, good)


def test_the_budget_counts_every_pixel_decoded(videos) -> None:
    result, report = check_in_sandbox(
        videos["good"], budget=DecodeBudget(max_total_pixels=20 * 360 * 480)
    )
    # the 21st frame is one too many: counted, refused before it is converted
    assert result.code == "TOO_MUCH_VIDEO" and result.frames_decoded == 21, result
    assert "1080p" in result.reason and report.outcome == "ok"


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_the_child_has_an_empty_environment_and_its_limits(videos, tmp_path, monkeypatch):
    monkeypatch.setenv("REELGRAPH_SECRET_KEY", "a-secret-the-child-must-not-see")
    monkeypatch.setenv("REELGRAPH_CAMEO_KEK", "another-secret")
    held = Held(videos["good"], tmp_path / "go", limits=SandboxLimits(memory_mb=1200))
    environ = Path(f"/proc/{held.pid}/environ").read_bytes()
    variables = dict(item.split(b"=", 1) for item in environ.split(b"\0") if item)
    assert {k.decode(): v.decode() for k, v in variables.items()} == CHILD_ENV
    assert b"secret" not in environ
    limits = limits_of(held.pid)
    assert limits["Max address space"] == (str(1200 * 1024 * 1024),) * 2
    assert limits["Max file size"] == ("0", "0") and limits["Max core file size"] == ("0", "0")
    cpu_soft, cpu_hard = limits["Max cpu time"]
    assert cpu_soft != "unlimited" and int(cpu_hard) == int(cpu_soft) + 1
    held.release()
    result, _ = held.result()
    assert result.ok


@pytest.mark.skipif(landlock_abi() < 6, reason="needs Landlock ABI 6 (Linux 6.12+)")
def test_the_confined_child_reaches_no_secret_socket_or_parent(settings, tmp_path) -> None:
    """What a decoder exploit could try from inside: read a secret in a data folder (the
    signing secret and KEK live in one), talk to Redis (the embedded server's unix socket)
    or anything over TCP, read or signal the worker that started it, run a program, write a
    file. Landlock and seccomp, as the child applies them, refuse every one."""
    data = tmp_path / "data"
    data.mkdir()
    secret = data / "secret.key"
    secret.write_text("not for the child")
    capture = tmp_path / "capture.webm"
    capture.write_bytes(b"the one file the child may read")
    redis_socket = urlsplit(settings.redis_url).path
    probe = f"""
import json, os, socket, sys
from pathlib import Path
from workers import sandbox
done = sandbox._limit({{"cpu_s": 20, "memory_mb": 1024, "open_files": 64}})
done += sandbox._landlock([sys.prefix, sys.base_prefix], Path({str(capture)!r}))
done += sandbox._seccomp()
def tried(action):
    try:
        action()
        return "allowed"
    except OSError as exc:
        return type(exc).__name__
def unix():
    s = socket.socket(socket.AF_UNIX)
    s.connect({redis_socket!r})
print(json.dumps({{
    "confinement": done,
    "capture": tried(lambda: open({str(capture)!r}, "rb").read()),
    "secret": tried(lambda: open({str(secret)!r}).read()),
    "data folder": tried(lambda: os.listdir({str(data)!r})),
    "redis": tried(unix),
    "tcp": tried(lambda: socket.create_connection(("127.0.0.1", 9), timeout=1)),
    "parent memory": tried(lambda: open(f"/proc/{{os.getppid()}}/mem", "rb").read(1)),
    "parent environ": tried(lambda: open(f"/proc/{{os.getppid()}}/environ", "rb").read()),
    "signal parent": tried(lambda: os.kill(os.getppid(), 0)),
    "exec": tried(lambda: os.execv("/bin/true", ["true"])),
    "write": tried(lambda: open({str(tmp_path / "out")!r}, "w")),
}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=dict(CHILD_ENV),
        capture_output=True,
        check=True,
        timeout=60,
    )
    seen = json.loads(out.stdout)
    assert seen.pop("capture") == "allowed"
    assert set(seen.pop("confinement")) >= {"rlimits", "seccomp"}
    assert all(outcome == "PermissionError" for outcome in seen.values()), seen


def test_a_child_past_its_wall_time_is_killed_and_the_capture_rejected(videos, tmp_path):
    held = Held(videos["good"], tmp_path / "never", limits=SandboxLimits(wall_s=2))
    result, report = held.result(within_s=30)
    assert not result.ok and result.code == "SANDBOX_LIMIT" and result.reason == SANDBOX_LIMIT
    assert report.outcome == "wall-time limit" and 2 <= report.wall_s < 10
    assert not Path(f"/proc/{held.pid}").exists()  # killed and reaped, nothing left behind


@pytest.mark.skipif(not LINUX, reason="reads /proc")
@pytest.mark.parametrize(
    ("signum", "code", "sentence"),
    [
        (signal.SIGSEGV, "SANDBOX_FAILED", SANDBOX_FAILED),  # a decoder crashed
        (signal.SIGXCPU, "SANDBOX_LIMIT", SANDBOX_LIMIT),  # RLIMIT_CPU's signal
    ],
)
def test_a_child_that_dies_is_a_rejection_with_a_sentence(videos, tmp_path, signum, code, sentence):
    held = Held(videos["good"], tmp_path / "never")
    os.kill(held.pid, signum)
    result, report = held.result()
    assert not result.ok and result.code == code and result.reason == sentence, report
    assert result.reference_frames == []


def test_limits_too_small_to_start_python_are_our_problem_not_the_file(videos) -> None:
    with pytest.raises(SandboxUnavailable, match="could not start"):
        check_in_sandbox(videos["good"], limits=SandboxLimits(memory_mb=48))


# ---------- what the parent takes from the child ----------


def _answer(head: dict, crops: bytes = b"") -> bytes:
    return json.dumps(head).encode() + b"\n" + crops


PASS = {
    "ok": True,
    "code": None,
    "reason": None,
    "duration_s": 4.0,
    "frames_sampled": 12,
    "frames_with_one_face": 11,
    "frames_decoded": 48,
    "crops": [[40, 30]],
    "confinement": ["rlimits"],
    "embedding": [0.01] * 128,
    "moves_seen": ["LEFT", "UP"],
    "digits_heard": "555123",
}
CROP = bytes(40 * 30 * 3)
FAIL = {
    **PASS,
    "ok": False,
    "code": "NO_FACE",
    "reason": "No face was found.",
    "crops": [],
    "embedding": None,
}


def test_the_parent_takes_an_honest_answer_and_encodes_jpeg_itself() -> None:
    result, confinement = parse_child_output(_answer(PASS, CROP), min_s=3, max_s=15)
    assert result.ok and confinement == ("rlimits",)
    assert len(result.reference_frames) == 1 and result.reference_frames[0][:2] == b"\xff\xd8"
    rejected, _ = parse_child_output(_answer(FAIL), min_s=3, max_s=15)
    assert rejected.code == "NO_FACE" and rejected.reason == "No face was found."


@pytest.mark.parametrize(
    ("head", "crops"),
    [
        ({**PASS, "crops": [[40, 30], [40, 30]]}, CROP),  # a crop cut short
        (PASS, CROP + b"\0"),  # bytes after the last crop
        ({**PASS, "crops": [[4000, 30]]}, bytes(4000 * 30 * 3)),  # bigger than any sample
        ({**PASS, "crops": [[40, True]]}, CROP),
        ({**PASS, "crops": [[40, 30]] * 4}, CROP * 4),  # more crops than references
        ({**PASS, "crops": []}, b""),  # a pass without its evidence
        ({**PASS, "duration_s": math.inf}, CROP),
        ({**PASS, "duration_s": 99.0}, CROP),
        ({**PASS, "frames_sampled": 81}, CROP),
        ({**PASS, "embedding": None}, CROP),  # a pass without the face's embedding
        ({**PASS, "embedding": [0.01] * 127}, CROP),
        ({**PASS, "embedding": [math.nan] + [0.0] * 127}, CROP),
        ({**PASS, "embedding": [5.0] * 128}, CROP),
        ({**PASS, "moves_seen": ["SPIN"]}, CROP),
        ({**PASS, "digits_heard": "five"}, CROP),
        ({**FAIL, "embedding": [0.01] * 128}, b""),  # a rejection with a likeness
        ({**PASS, "frames_with_one_face": 13, "frames_sampled": 12}, CROP),
        ({**PASS, "frames_decoded": -1}, CROP),
        ({**PASS, "code": "NO_FACE"}, CROP),  # a pass with a rejection
        ({**FAIL, "code": "ALL_GOOD"}, b""),  # a code liveness never gives
        ({**FAIL, "reason": "Visit http://evil.example\nnow"}, b""),  # no plain sentence
        ({**FAIL, "reason": "x" * 500 + "."}, b""),
        ({**FAIL, "reason": None}, b""),
        ({**FAIL, "crops": [[40, 30]]}, CROP),  # a rejection with a likeness
        ({**PASS, "ok": 1}, CROP),
        ({**PASS, "confinement": "all of it"}, CROP),
    ],
)
def test_the_parent_refuses_what_the_child_could_not_honestly_say(head, crops) -> None:
    with pytest.raises(ValueError):
        parse_child_output(_answer(head, crops), min_s=3, max_s=15)


@pytest.mark.parametrize("body", [b"", b"no newline", b"[1, 2]\n", b"\xff\xfe\n"])
def test_the_parent_refuses_a_header_that_is_no_json_object(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_child_output(body, min_s=3, max_s=15)


# ---------- what the upload route sees cheaply ----------


def test_the_upload_check_refuses_a_resizing_bomb_from_its_packet_headers(videos) -> None:
    with pytest.raises(UploadRejected) as refused:
        check_container(videos["bomb"])
    assert refused.value.status == 415 and "5000x5000" in refused.value.reason
    assert check_container(videos["good"]).width == 360  # a good WebM still goes through


def _vp9_packets(width: int, height: int, frames: int) -> list[av.Packet]:
    encoder = av.CodecContext.create("libvpx-vp9", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, 4), 4
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets: list[av.Packet] = []
    for i in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([40 + 30 * i]) * plane.buffer_size)
        frame.pts, frame.time_base = i, Fraction(1, 4)
        packets += encoder.encode(frame)
    return packets + encoder.encode(None)


def test_vp9_packets_state_their_sizes_without_decoding() -> None:
    sizes = [stated_frame_sizes("vp9", p) for p in _vp9_packets(322, 242, 3)]
    assert sizes[0] == [(322, 242)] and all(s == [] for s in sizes[1:])
    assert stated_frame_sizes("h264", b"\x00\x00\x00\x01") == []
    assert stated_frame_sizes("vp8", b"\x01\x02") == []  # too short to say anything
    assert 4096 * 2160 <= MAX_FRAME_PIXELS < 5000 * 5000


# ---------- through the real workers ----------


@pytest.fixture(scope="module")
def hold_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("capture-hold") / "go"


@pytest.fixture(scope="module")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox-worker") / "worker.log"


@pytest.fixture(scope="module")
def worker(settings, hold_file: Path, worker_log: Path) -> Iterator[Worker]:
    """`reelgraph worker` as deployed: a render worker and the capture worker it starts."""
    purge_render_queue(settings)  # no task another module left queued runs here
    hold_file.touch()
    running = start_worker(
        settings,
        worker_log,
        REELGRAPH_CAPTURE_SANDBOX_HOLD_FILE=str(hold_file),
        # a held check must outlast a render on a loaded machine: the wall time bounds only a
        # stuck test here (its own test kills a child at a short limit)
        REELGRAPH_CAPTURE_SANDBOX_WALL_S="600",
        REELGRAPH_CAMEO_VERIFY_TIME_LIMIT_S="660",
    )
    yield running
    hold_file.touch()
    running.stop()


@pytest.fixture
def released(hold_file: Path) -> Iterator[Path]:
    """Checks run freely unless a test takes the hold file away."""
    hold_file.touch()
    yield hold_file
    hold_file.touch()


async def wait_cameo(graph, owner_id: str, done, within_s: float = 300) -> dict:
    deadline = time.monotonic() + within_s
    while True:
        cameo = await cameo_repo.live_cameo(graph, owner_id)
        if cameo is not None and done(cameo):
            return cameo
        assert time.monotonic() < deadline, f"cameo stuck: {cameo}"
        await asyncio.sleep(0.05)


async def test_the_worker_rejects_a_resizing_bomb_at_its_first_big_frame(
    gql, graph, settings, worker: Worker, worker_log: Path, released, videos
):
    """The upload route refuses this file (above); one that got past it (a codec whose frame
    headers the route does not read, or the route of an older release) meets the decoder's
    budget in the worker's sandbox."""
    owner = await gql.sign_up("bomber")
    await gql.ok(START, token=owner.token)
    cameo = await cameo_repo.live_cameo(graph, raw(owner))
    capture_id = "BombCapture" + str(int(time.time() * 1000))
    assert await cameo_repo.accept_capture(graph, raw(owner), cameo["id"], capture_id, 1)
    folder = capture_upload_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{capture_id}.webm"
    path.write_bytes(videos["bomb"].read_bytes())
    challenge = Challenge(
        id=capture_id,
        user_id=raw(owner),
        cameo_id=cameo["id"],
        phrase=SPOKEN_DIGITS,
        moves=list(MOVES),
        created_at=1,
        expires_at=2,
    )
    await send_verification(settings, cameo["id"], capture_id, path, challenge)
    rejected = await wait_cameo(graph, raw(owner), lambda c: c["state"] != "PENDING_VERIFICATION")
    assert rejected["state"] == "REJECTED"
    assert rejected["rejectReason"].startswith("Part of the video is 5000x5000 pixels; record")
    assert not path.exists()
    log = await asyncio.to_thread(worker_log.read_text, errors="replace")
    line = next(x for x in log.splitlines() if f"cameo {cameo['id']} capture check" in x)
    assert "TOO_LARGE (ok); 1 frames decoded" in line, line
    assert "rlimits" in line


async def test_a_render_finishes_while_a_capture_check_is_held(
    app, gql, graph, settings, worker: Worker, released: Path, tmp_path
):
    """A capture check and a render queued together: the render reaches DRAFT while the
    check, held in its sandbox, still holds the capture slot. The held child is the real
    one: its environment and limits are read from /proc."""
    await asyncio.to_thread(released.unlink)
    owner = await gql.sign_up("heldcam")
    challenge = (await gql.ok(START, token=owner.token))["startCameoCapture"]
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        moves, digits = await spoken_challenge(client, decode_id(challenge["id"], "CameoChallenge"))
    finally:
        await client.aclose()
    video = make_capture(tmp_path / "me.mp4", seconds=6, moves=moves, digits=digits).read_bytes()
    body, header = multipart_body(video)
    response = await app.post(
        urlsplit(challenge["uploadUrl"]).path,
        content=body,
        headers={"content-type": header, "authorization": f"Bearer {owner.token}"},
    )
    assert response.status_code == 202, response.text

    def held_child() -> int | None:
        children = [p for p in sandbox_children(worker.proc.pid) if confined(p)]
        return children[0] if children else None

    await asyncio.to_thread(wait_for, lambda: held_child() is not None, "a held check")
    child = held_child()
    # what the worker has, the child has not: no REELGRAPH_* setting, no URL, no secret
    environ = await asyncio.to_thread(Path(f"/proc/{child}/environ").read_bytes)
    names = {item.split(b"=", 1)[0].decode() for item in environ.split(b"\0") if item}
    assert names == set(CHILD_ENV)
    for secret in (settings.secret_key, settings.redis_url, str(settings.data_dir)):
        assert secret.encode() not in environ
    limits = await asyncio.to_thread(limits_of, child)
    assert limits["Max address space"] == (str(1536 * 1024 * 1024),) * 2
    assert limits["Max file size"] == ("0", "0") and limits["Max cpu time"][0] != "unlimited"

    author = await gql.sign_up("renderer")
    created = (await gql.ok(CREATE, {"input": {"prompt": "while a capture waits"}}, author.token))[
        "createClip"
    ]
    clip = await gql.wait_clip(CLIP, author.token, created["id"], {"DRAFT", "FAILED"}, 300)
    assert clip["state"] == "DRAFT", clip["failureReason"]
    # the check is still held: the render did not wait for it
    assert await asyncio.to_thread(confined, child)
    cameo = await cameo_repo.live_cameo(graph, raw(owner))
    assert cameo["state"] == "PENDING_VERIFICATION"

    await asyncio.to_thread(released.touch)
    active = await wait_cameo(graph, raw(owner), lambda c: c["state"] != "PENDING_VERIFICATION")
    assert active["state"] == "ACTIVE", active
