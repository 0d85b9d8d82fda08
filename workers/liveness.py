"""Liveness check of a cameo capture video: the challenge answered, by one present face.

What it verifies, offline, from the file alone: the container decodes and has a video
stream; the recording lasts min_s..max_s seconds (measured from the packets, not the
header); there is an audio track that is not silent; exactly one face is found (dlib's HOG
frontal-face detector, workers.faces) in most of the frames sampled (SAMPLES_PER_S a second);
the face moves between frames while the frames themselves change, so a still picture
re-encoded as a video is rejected. With the capture's challenge (the worker always passes
it): the person makes the challenge's head moves in order (head pose from 68 landmarks per
sampled frame, compared with their own neutral pose), and says the challenge's digits
(PocketSphinx restricted to the words zero to nine, workers.speech). A pass also carries
the face's 128-d embedding (the mean over the most frontal frames), for one face, one owner.

Moves and mirroring: LEFT and RIGHT are the person's own left and right. Some front cameras
store the picture mirrored, which swaps left and right (and the two tilts) in the file, so the
mirror image of the challenge's moves is accepted too; up and down are never mirrored.

What it does not verify: that the face is a live person rather than a screen, a mask or a
deepfake made to answer this challenge in time; who the person is (workers.face_index matches
the embedding against other cameos and public figures). README.md says so to users.

Every rejection carries a sentence a person can act on. The work is bounded before decoding:
absurd picture sizes, frame rates and lengths are refused from a demux pass (packets only),
frames are decoded once in order and only the sampled ones are converted, downscaled and
analysed as they come (only the face crops and small grey frames are kept). While decoding,
every frame is held to a picture budget (DecodeBudget): the decoder itself refuses a picture
over max_frame_pixels before allocating it (a header can lie, and a stream can change size
mid-way), each decoded frame's size is checked before anything converts it, and the pixels
decoded in all are counted; the first frame that breaks the budget ends the check.

Uploaded captures are checked in workers.sandbox, a confined child process that runs
check_capture; verify_capture runs the same check in this process (tests, tools).
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import av
import cv2
import numpy as np

from media.probe import MAX_FRAME_PIXELS, MAX_SIDE, limit_decoder, open_container
from workers import faces as face_models
from workers import speech

__all__ = [
    "CODES",
    "CaptureChallenge",
    "DecodeBudget",
    "LivenessResult",
    "check_capture",
    "encode_reference",
    "load_models",
    "verify_capture",
]

SAMPLES = 12  # frames sampled at least, evenly across the recording
SAMPLES_PER_S = 5  # and this many a second (head moves last about a second each)
MAX_SAMPLES = 80  # 15 s at 5 a second, with room for the length's slack
MIN_SAMPLES = 6  # fewer distinct frames than this cannot show presence or movement
ONE_FACE_SHARE = 2 / 3  # share of sampled frames that must hold exactly one face
LENGTH_SLACK_S = 0.1  # lengths this close outside min_s..max_s still pass
MIN_SIDE = 120  # shortest picture side: below it no face is findable
MAX_FPS = 120  # slow-motion capture beyond this is refused rather than decoded
REFERENCE_SIDE = 960  # sampled frames are kept at most this large (reference crops)
DETECT_SIDE = face_models.DETECT_SIDE  # and searched for faces at most this large
REFERENCE_COUNT = 3
REFERENCE_MARGIN = 0.4  # of the face box's size, added on each side of a reference crop
EMBEDDING_FRAMES = 3  # the embedding is the mean over this many of the most frontal frames
MIN_RMS = 0.005  # loudest 0.1 s of audio, full scale 1.0: about -46 dBFS; silence is far below
# movement: the face box's centre shifts by this share of its width, or its size changes by
# this factor, between some sampled frames; and some pair of consecutive samples differs in at
# least this share of pixels (beyond compression noise)
MIN_BOX_SHIFT = 0.15
MIN_BOX_SCALE = 1.25
MIN_CHANGED_SHARE = 0.01
PIXEL_CHANGE = 12  # grey levels (of 255) after a blur: a pixel that moved, not codec noise
# a head move: the pose differs from the person's own neutral pose (the median over the
# video) by this many degrees on the move's axis, more than on the others (relative to each
# axis's threshold). Pitch is the least precise of the three from landmarks, and people nod
# less far than they turn
TURN_DEG = 15.0  # yaw: LEFT, RIGHT
NOD_DEG = 10.0  # pitch: UP, DOWN
TILT_DEG = 12.0  # roll: TILT_LEFT, TILT_RIGHT
DIGIT_ERRORS = (
    1  # recognition may get this many digits wrong (an edit: a digit off, missing, extra)
)
# pixels decoded in all, per capture: 16 s of 4K (3840x2160) at 60 frames a second
MAX_TOTAL_PIXELS = 8_000_000_000
DECODER_THREADS = 2  # a fixed count: FFmpeg's "auto" starts one per core, each holding frames
JPEG_QUALITY = 90
# every code a LivenessResult may carry (workers.sandbox accepts no other from its child)
CODES = frozenset(
    {
        "NOT_VIDEO",
        "TOO_LARGE",
        "TOO_SMALL",
        "TOO_SHORT",
        "TOO_LONG",
        "FRAME_RATE",
        "NO_AUDIO",
        "SILENT",
        "TOO_FEW_FRAMES",
        "NO_FACE",
        "MANY_FACES",
        "STILL_PICTURE",
        "TOO_MUCH_VIDEO",
        "WRONG_MOVES",
        "NO_SPEECH",
        "WRONG_DIGITS",
    }
)
MOVE_WORDS = {
    "LEFT": "turn left",
    "RIGHT": "turn right",
    "UP": "look up",
    "DOWN": "look down",
    "TILT_LEFT": "tilt left",
    "TILT_RIGHT": "tilt right",
}
_MIRRORED = {"LEFT": "RIGHT", "RIGHT": "LEFT", "TILT_LEFT": "TILT_RIGHT", "TILT_RIGHT": "TILT_LEFT"}
_REFUSED_SIZE = re.compile(r"Picture size (\d+)x(\d+) exceeds")


@dataclass(frozen=True)
class CaptureChallenge:
    """What the capture must show: `digits` spoken (a string of 0-9, in order) and `moves`
    made (consent.challenges.MOVES, in order)."""

    digits: str
    moves: tuple[str, ...]

    @classmethod
    def from_phrase(cls, phrase: str, moves: list[str] | tuple[str, ...]) -> CaptureChallenge:
        """From a consent.challenges.Challenge's phrase ("3 1 4 1 5 9") and moves."""
        return cls(digits="".join(ch for ch in phrase if ch.isdigit()), moves=tuple(moves))

    def as_dict(self) -> dict[str, object]:
        return {"digits": self.digits, "moves": list(self.moves)}


@dataclass(frozen=True)
class LivenessResult:
    """The outcome of verify_capture.

    ok: the capture passed every check. reason: why not, a sentence for the person who
    recorded it (None when ok). code: the same as a stable word for logs and tests (CODES;
    None when ok; workers.sandbox adds its own). reference_frames: JPEG bytes of the face
    region (with a margin) from REFERENCE_COUNT frames spread across the capture, only when
    ok. embedding: the face's 128-d descriptor (workers.faces), only when ok. frames_decoded:
    video frames the decoder produced (a check stopped by the budget stops counting there).
    moves_seen: the head moves recognised, in order; digits_heard: the digits recognised
    (both only with a challenge, for logs and tests).
    """

    ok: bool
    reason: str | None = None
    code: str | None = None
    reference_frames: list[bytes] = field(default_factory=list)
    duration_s: float | None = None
    frames_sampled: int = 0
    frames_with_one_face: int = 0
    frames_decoded: int = 0
    embedding: tuple[float, ...] | None = None
    moves_seen: tuple[str, ...] = ()
    digits_heard: str | None = None


@dataclass(frozen=True)
class DecodeBudget:
    """How much picture a capture may make the decoder produce.

    max_side and max_frame_pixels hold every frame (the header's size included); a frame
    over either is refused (TOO_LARGE) before it is converted, and the decoder refuses to
    allocate one over max_frame_pixels at all. max_total_pixels bounds the pixels decoded in
    all (TOO_MUCH_VIDEO). threads: the decoder's threads.
    """

    max_side: int = MAX_SIDE
    max_frame_pixels: int = MAX_FRAME_PIXELS
    max_total_pixels: int = MAX_TOTAL_PIXELS
    threads: int = DECODER_THREADS

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Rejected(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class _Shape:
    duration_s: float
    start_s: float
    width: int
    height: int


@dataclass
class _Sample:
    """What is kept of one sampled frame: its faces, and for one face its landmarks, pose
    and a crop (with a margin) for reference frames and the embedding."""

    boxes: list[face_models.Box]
    grey: np.ndarray  # blurred, at most DETECT_SIDE large: for the movement check
    face: face_models.Face | None = None  # in crop coordinates
    pose: face_models.Pose | None = None
    crop: np.ndarray | None = None


def load_models() -> None:
    """Load the face and speech models now (the sandbox's child does, before confining)."""
    face_models.models()
    speech.decoder()


def verify_capture(
    path: Path,
    *,
    min_s: float = 3,
    max_s: float = 15,
    budget: DecodeBudget | None = None,
    challenge: CaptureChallenge | None = None,
) -> LivenessResult:
    """Check that the capture at `path` shows one present, moving face with sound, and with
    a challenge that it answers it, in this process (uploads are checked by
    workers.sandbox.check_in_sandbox, which runs check_capture in a confined child).

    Never raises for a bad file: every failure is a LivenessResult with ok False.
    """
    result, crops = check_capture(
        path, min_s=min_s, max_s=max_s, budget=budget, challenge=challenge
    )
    if not result.ok:
        return result
    return replace(result, reference_frames=[encode_reference(crop) for crop in crops])


def encode_reference(crop: np.ndarray) -> bytes:
    """A reference crop (RGB uint8, height x width x 3) as JPEG bytes."""
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise ValueError("the reference crop could not be encoded")
    return jpeg.tobytes()


def check_capture(
    path: Path,
    *,
    min_s: float = 3,
    max_s: float = 15,
    budget: DecodeBudget | None = None,
    challenge: CaptureChallenge | None = None,
) -> tuple[LivenessResult, list[np.ndarray]]:
    """The checks of verify_capture, with the reference crops as RGB arrays (height x width
    x 3, uint8, at most REFERENCE_SIDE a side) rather than JPEG: what the sandboxed child
    returns to its parent, which checks them and encodes them itself. The result's
    reference_frames stay empty. Without a challenge the moves and digits are not checked
    (tools and tests of the presence check alone; the worker always passes one).
    """
    budget = budget or DecodeBudget()
    duration = None
    sampled = one_face = 0
    counter = _Counter()
    seen: tuple[str, ...] = ()
    heard: str | None = None
    try:
        shape = _measure(Path(path), min_s=min_s, max_s=max_s, budget=budget)
        duration = shape.duration_s
        sound = _read_audio(Path(path), max_s=max_s, whole=challenge is not None)
        samples = _sample_frames(
            Path(path), shape, max_s=max_s, budget=budget, counter=counter, keep=_analyse
        )
        sampled = len(samples)
        if sampled < MIN_SAMPLES:
            raise _Rejected(
                "TOO_FEW_FRAMES",
                "The video has too few frames to check; record a normal video rather than a "
                "slideshow or time-lapse.",
            )
        boxes = [s.boxes for s in samples]
        one_face = sum(1 for b in boxes if len(b) == 1)
        _check_faces(boxes)
        _check_movement([s.grey for s in samples], boxes)
        if challenge is not None:
            seen = _moves_seen([s.pose for s in samples])
            _check_moves(seen, challenge.moves)
            heard = speech.hear_digits(sound) if sound is not None else ""
            _check_digits(heard, challenge.digits)
        crops = _reference_crops(samples)
        vector = _embedding(samples)
    except _Rejected as rejected:
        result = LivenessResult(
            ok=False,
            reason=rejected.reason,
            code=rejected.code,
            duration_s=duration,
            frames_sampled=sampled,
            frames_with_one_face=one_face,
            frames_decoded=counter.frames,
            moves_seen=seen,
            digits_heard=heard,
        )
        return result, []
    result = LivenessResult(
        ok=True,
        duration_s=duration,
        frames_sampled=sampled,
        frames_with_one_face=one_face,
        frames_decoded=counter.frames,
        embedding=tuple(float(v) for v in vector),
        moves_seen=seen,
        digits_heard=heard,
    )
    return result, crops


@dataclass
class _Counter:
    frames: int = 0
    pixels: int = 0


# ---------- container, length, size: packets only ----------

_UNREADABLE = (
    "The file is not a video we can read; upload the MP4, MOV or WebM file your camera or "
    "browser recorded, unchanged."
)


def _open(path: Path) -> av.container.InputContainer:
    try:
        # the demuxer the bytes call for, never FFmpeg's guess (see media.uploads)
        return open_container(path)
    except MemoryError:  # the sandbox's memory limit, not the file's format
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _Rejected("NOT_VIDEO", _UNREADABLE) from exc


def _measure(path: Path, *, min_s: float, max_s: float, budget: DecodeBudget) -> _Shape:
    """Size and length of the video stream, from its header and its packets (not decoded)."""
    with _open(path) as container:
        if not container.streams.video:
            raise _Rejected(
                "NOT_VIDEO", "The file has no video in it; record a video with your camera."
            )
        video = container.streams.video[0]
        width, height = video.codec_context.width, video.codec_context.height
        _check_frame_size(width, height, budget, "The video is")
        if min(width, height) < MIN_SIDE:
            raise _Rejected(
                "TOO_SMALL",
                f"The video is only {width}x{height} pixels, too small to see a face; record "
                "at 480p or more.",
            )
        tb = video.time_base
        first = end = None
        packets = 0
        # the header's duration can lie or be missing (browser WebM): the packets tell
        frame_cap = math.ceil(max_s * MAX_FPS) + MAX_FPS
        try:
            for packet in container.demux(video):
                if packet.pts is None or packet.size == 0:
                    continue
                packets += 1
                start = float(packet.pts * tb)
                stop = start + float((packet.duration or 0) * tb)
                first = start if first is None else min(first, start)
                end = stop if end is None else max(end, stop)
                if end - first > max_s + 1:
                    raise _too_long(end - first, min_s, max_s)
                if packets > frame_cap:
                    raise _Rejected(
                        "FRAME_RATE",
                        f"The video has more than {MAX_FPS} frames a second; record at a "
                        "normal frame rate, not slow motion.",
                    )
        except MemoryError:  # the sandbox's memory limit, not the file's format
            raise
        except av.FFmpegError as exc:
            raise _Rejected("NOT_VIDEO", _UNREADABLE) from exc
    if first is None or end is None:
        raise _Rejected("NOT_VIDEO", "The video has no frames in it; record again.")
    duration = end - first
    # recorders often leave the last packet without a duration: a frame's worth of slack
    if duration < min_s - LENGTH_SLACK_S:
        raise _Rejected(
            "TOO_SHORT",
            f"The video is {duration:.1f} seconds long; record between {min_s:g} and "
            f"{max_s:g} seconds.",
        )
    if duration > max_s + LENGTH_SLACK_S:
        raise _too_long(duration, min_s, max_s)
    if packets / duration > MAX_FPS * 1.05:
        raise _Rejected(
            "FRAME_RATE",
            f"The video has about {packets / duration:.0f} frames a second; record at "
            f"{MAX_FPS} or fewer, not slow motion.",
        )
    return _Shape(duration_s=round(duration, 3), start_s=first, width=width, height=height)


def _check_frame_size(width: int, height: int, budget: DecodeBudget, what: str) -> None:
    if max(width, height) > budget.max_side or width * height > budget.max_frame_pixels:
        raise _too_large(width, height, budget, what)


def _too_large(width: int, height: int, budget: DecodeBudget, what: str) -> _Rejected:
    return _Rejected(
        "TOO_LARGE",
        f"{what} {width}x{height} pixels; record at 4K ({budget.max_side} pixels on the "
        "longest side) or less, and upload the file your camera made, unchanged.",
    )


def _too_long(duration: float, min_s: float, max_s: float) -> _Rejected:
    return _Rejected(
        "TOO_LONG",
        f"The video is longer than {max_s:g} seconds ({duration:.1f} s or more); record "
        f"between {min_s:g} and {max_s:g} seconds.",
    )


# ---------- sound ----------


def _read_audio(path: Path, *, max_s: float, whole: bool) -> np.ndarray | None:
    """Check that the capture has sound; with `whole`, return all of it (at most max_s + 1
    seconds) as 16 kHz mono int16 for speech recognition, else stop at the first sound and
    return None."""
    with _open(path) as container:
        if not container.streams.audio:
            raise _Rejected(
                "NO_AUDIO",
                "The video has no sound; record with the microphone on and say the digits "
                "out loud.",
            )
        stream = container.streams.audio[0]
        loudest = 0.0
        resampler = (
            av.AudioResampler(format="s16", layout="mono", rate=speech.SAMPLE_RATE)
            if whole
            else None
        )
        pcm: list[np.ndarray] = []
        kept = 0
        most = math.ceil((max_s + 1) * speech.SAMPLE_RATE)
        try:
            for frame in container.decode(stream):
                if frame.time is not None and frame.time > max_s + 1:
                    break
                loudest = max(loudest, _rms(frame.to_ndarray()))
                if resampler is None:
                    if loudest >= MIN_RMS:
                        return None  # sound found: no need to decode the rest
                    continue
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)[: most - kept]
                    pcm.append(chunk)
                    kept += chunk.size
                if kept >= most:
                    break
            if resampler is not None:
                for out in resampler.resample(None):
                    chunk = out.to_ndarray().reshape(-1)[: max(0, most - kept)]
                    pcm.append(chunk)
                    kept += chunk.size
        except MemoryError:  # the sandbox's memory limit, not the file's format
            raise
        except (av.FFmpegError, ValueError) as exc:
            raise _Rejected(
                "NOT_VIDEO",
                "The video's sound could not be decoded; record again with your camera app.",
            ) from exc
    if loudest < MIN_RMS:
        raise _Rejected(
            "SILENT",
            "The video's sound is silent; check that the microphone is on and not muted, and "
            "say the digits out loud.",
        )
    return np.concatenate(pcm).astype(np.int16) if pcm else np.zeros(0, np.int16)


def _rms(samples: np.ndarray) -> float:
    if samples.size == 0:
        return 0.0
    data = samples.astype(np.float64)
    if np.issubdtype(samples.dtype, np.integer):
        data /= float(np.iinfo(samples.dtype).max)
    return float(np.sqrt(np.mean(data * data)))


# ---------- frames ----------


def _sample_count(duration_s: float) -> int:
    return max(SAMPLES, min(MAX_SAMPLES, math.ceil(duration_s * SAMPLES_PER_S)))


def _sample_frames(
    path: Path,
    shape: _Shape,
    *,
    max_s: float,
    budget: DecodeBudget,
    counter: _Counter,
    keep: Callable[[np.ndarray], _Sample],
) -> list[_Sample]:
    """What `keep` makes of RGB frames at evenly spread times (_sample_count of them), each
    at most REFERENCE_SIDE on its longest side: frames are analysed as they come, and only
    what `keep` returns is held.

    Decodes in order once (seeking per sample would decode from the previous keyframe each
    time), converting and scaling only the frames it keeps, and stops after the last one.
    Every frame is held to the budget first (_budget_frame); the decoder refuses pictures
    over it before allocating them.
    """
    count = _sample_count(shape.duration_s)
    targets = [shape.start_s + shape.duration_s * (i + 0.5) / count for i in range(count)]
    scale = min(1.0, REFERENCE_SIDE / max(shape.width, shape.height))
    out_w = max(2, round(shape.width * scale / 2) * 2)
    out_h = max(2, round(shape.height * scale / 2) * 2)
    frames: list[_Sample] = []
    decoded = 0
    frame_cap = math.ceil(max_s * MAX_FPS) + MAX_FPS
    with _open(path) as container:
        video = container.streams.video[0]
        limit_decoder(video, max_pixels=budget.max_frame_pixels, threads=budget.threads)
        try:
            for frame in container.decode(video):
                decoded += 1
                if decoded > frame_cap:
                    break
                _budget_frame(frame, budget, counter)
                t = frame.time
                if t is None or t < targets[0]:
                    continue
                while targets and targets[0] <= t:
                    targets.pop(0)  # several targets between two frames share one frame
                pixels = frame.reformat(width=out_w, height=out_h, format="rgb24").to_ndarray()
                frames.append(keep(_upright(pixels, frame.rotation)))
                if not targets:
                    break
        except MemoryError:  # the sandbox's memory limit, not the file's format
            raise
        except av.FFmpegError as exc:
            refused = _refused_size(exc, video, budget)
            if refused is not None:
                raise refused from exc
            raise _Rejected(
                "NOT_VIDEO",
                "The video could not be decoded all the way through; record again and upload "
                "the file unchanged.",
            ) from exc
    return frames


def _budget_frame(frame: av.VideoFrame, budget: DecodeBudget, counter: _Counter) -> None:
    """Count a decoded frame against the budget, before anything converts it."""
    width, height = frame.width, frame.height
    _check_frame_size(width, height, budget, "Part of the video is")
    counter.frames += 1
    counter.pixels += width * height
    if counter.pixels > budget.max_total_pixels:
        raise _Rejected(
            "TOO_MUCH_VIDEO",
            "The video holds more picture than we check (more than 15 seconds of 4K at 60 "
            "frames a second); record at 1080p or at 30 frames a second.",
        )


def _refused_size(
    exc: av.FFmpegError, video: av.VideoStream, budget: DecodeBudget
) -> _Rejected | None:
    """The rejection for a picture the decoder refused to allocate (limit_decoder), if that
    is why decoding stopped. FFmpeg's message names the size when its log is on (the sandbox
    turns it on); otherwise a size change it refused leaves the stream's size at 0x0, or at
    a size over the budget."""
    found = _REFUSED_SIZE.search(str(exc))
    if found:
        return _too_large(int(found[1]), int(found[2]), budget, "Part of the video is")
    ctx = video.codec_context
    width, height = ctx.width, ctx.height
    if width == 0 and height == 0:
        return _Rejected(
            "TOO_LARGE",
            f"Part of the video is larger than 4K; record at 4K ({budget.max_side} pixels on "
            "the longest side) or less, and upload the file your camera made, unchanged.",
        )
    if max(width, height) > budget.max_side or width * height > budget.max_frame_pixels:
        return _too_large(width, height, budget, "Part of the video is")
    return None


def _upright(pixels: np.ndarray, rotation: int) -> np.ndarray:
    # phones store portrait video sideways with a display rotation; the cascade needs faces
    # upright. rotation is counter-clockwise degrees, as np.rot90 turns for positive k
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, k=turns)) if turns else pixels


def _grey(frame: np.ndarray) -> np.ndarray:
    """The frame in grey, blurred, at most DETECT_SIDE large (for the movement check)."""
    h, w = frame.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = frame
    if scale < 1.0:
        small = cv2.resize(
            frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
        )
    return cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (5, 5), 0)


def _analyse(frame: np.ndarray) -> _Sample:
    """One sampled frame's faces; for exactly one, its landmarks, pose and crop."""
    boxes = face_models.detect_faces(frame)
    sample = _Sample(boxes=boxes, grey=_grey(frame))
    if len(boxes) != 1:
        return sample
    face = face_models.landmarks(frame, boxes[0])
    height, width = frame.shape[:2]
    sample.pose = face_models.head_pose(face, (width, height))
    x, y, w, h = boxes[0]
    mx, my = w * REFERENCE_MARGIN, h * REFERENCE_MARGIN
    x0, y0 = max(0, round(x - mx)), max(0, round(y - my))
    x1, y1 = min(width, round(x + w + mx)), min(height, round(y + h + my))
    if x1 > x0 and y1 > y0:
        sample.crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
        sample.face = face_models.Face(
            box=(x - x0, y - y0, w, h), points=face.points - np.array([x0, y0], np.float64)
        )
    return sample


def _check_faces(boxes: list[list[face_models.Box]]) -> None:
    total = len(boxes)
    one = sum(1 for b in boxes if len(b) == 1)
    if one >= math.ceil(total * ONE_FACE_SHARE):
        return
    many = sum(1 for b in boxes if len(b) > 1)
    none = sum(1 for b in boxes if not b)
    if many > none:
        raise _Rejected(
            "MANY_FACES",
            "More than one face was found in the video; record yourself alone, with no one "
            "else and no photos of faces in view.",
        )
    raise _Rejected(
        "NO_FACE",
        f"Your face was found in only {one} of {total} moments of the video; film yourself "
        "facing the camera in good light, with your whole face in the frame.",
    )


def _check_movement(greys: list[np.ndarray], boxes: list[list[face_models.Box]]) -> None:
    single = [b[0] for b in boxes if len(b) == 1]
    widths = _trimmed([w for (_, _, w, _) in single])
    typical = float(np.median(widths))
    xs = _trimmed([x + w / 2 for (x, _, w, _) in single])
    ys = _trimmed([y + h / 2 for (_, y, _, h) in single])
    shift = max(xs[-1] - xs[0], ys[-1] - ys[0]) / typical
    box_moved = shift >= MIN_BOX_SHIFT or widths[-1] / widths[0] >= MIN_BOX_SCALE
    changed = max(
        float(np.mean(cv2.absdiff(a, b) > PIXEL_CHANGE)) for a, b in itertools.pairwise(greys)
    )
    if not (box_moved and changed >= MIN_CHANGED_SHARE):
        raise _Rejected(
            "STILL_PICTURE",
            "The video looks like a still picture: your face did not move. Record yourself "
            "live and turn your head as the challenge asks.",
        )


def _trimmed(values: list[float]) -> list[float]:
    # sorted, less the extreme at each end when there are enough: one stray detection (a
    # patch of wallpaper taken for a face) must not count as movement
    ordered = sorted(values)
    return ordered[1:-1] if len(ordered) >= 8 else ordered


# ---------- the challenge: head moves and digits ----------


def _wrap(degrees: float) -> float:
    return (degrees + 180.0) % 360.0 - 180.0


def _neutral(poses: list[face_models.Pose]) -> face_models.Pose:
    """The person's own neutral pose: the median of each angle over the video."""
    return face_models.Pose(
        yaw=statistics.median(p.yaw for p in poses),
        pitch=statistics.median(p.pitch for p in poses),
        roll=statistics.median(p.roll for p in poses),
    )


def _offsets(pose: face_models.Pose, neutral: face_models.Pose) -> tuple[float, float, float]:
    """How far the pose is from neutral on each axis, in units of that axis's threshold."""
    return (
        _wrap(pose.yaw - neutral.yaw) / TURN_DEG,
        _wrap(pose.pitch - neutral.pitch) / NOD_DEG,
        _wrap(pose.roll - neutral.roll) / TILT_DEG,
    )


def _move_of(offsets: tuple[float, float, float]) -> str | None:
    """The move a pose shows (its largest offset, at least its threshold), or None."""
    axis = max(range(3), key=lambda i: abs(offsets[i]))
    value = offsets[axis]
    if abs(value) < 1.0:
        return None
    # yaw grows as the face turns towards the picture's right: the person's left (unmirrored);
    # roll grows as the head tilts clockwise in the picture: towards the person's left
    if axis == 0:
        return "LEFT" if value > 0 else "RIGHT"
    if axis == 1:
        return "UP" if value > 0 else "DOWN"
    return "TILT_LEFT" if value > 0 else "TILT_RIGHT"


def _moves_seen(poses: list[face_models.Pose | None]) -> tuple[str, ...]:
    """The head moves in the order they were made: runs of sampled frames away from the
    neutral pose, one move per run (a move seen in a single frame only counts when nothing
    else was seen around it). Frames without a pose break no run."""
    known = [p for p in poses if p is not None]
    if len(known) < MIN_SAMPLES:
        return ()
    neutral = _neutral(known)
    runs: list[list] = []  # [move, frames]
    for pose in known:
        move = _move_of(_offsets(pose, neutral))
        if runs and runs[-1][0] == move:
            runs[-1][1] += 1
        else:
            runs.append([move, 1])
    moves = [r for r in runs if r[0] is not None]
    steady = [r for r in moves if r[1] > 1] or moves  # a one-frame glitch is not a move
    seen: list[str] = []
    for move, _ in steady:
        if not seen or seen[-1] != move:  # a move, a glance back to neutral, the move again
            seen.append(move)
    return tuple(seen)


def _mirror(moves: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_MIRRORED.get(m, m) for m in moves)


def _describe_moves(moves: tuple[str, ...]) -> str:
    return ", ".join(MOVE_WORDS.get(m, m.lower()) for m in moves)


def _check_moves(seen: tuple[str, ...], asked: tuple[str, ...]) -> None:
    if seen in (asked, _mirror(asked)):
        return
    asked_words = _describe_moves(asked)
    if not seen:
        raise _Rejected(
            "WRONG_MOVES",
            f"We could not see your head make the challenge's moves ({asked_words}); record "
            "again facing the camera, make each move clearly and come back to face the camera "
            "after each one.",
        )
    raise _Rejected(
        "WRONG_MOVES",
        f"The challenge asked you to {asked_words}, in that order, but we saw "
        f"{_describe_moves(seen)}; record again, make each move clearly and come back to face "
        "the camera after each one.",
    )


def _edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def _check_digits(heard: str, asked: str) -> None:
    if _edit_distance(heard, asked) <= DIGIT_ERRORS:
        return
    spaced = " ".join(asked)
    if len(heard) < max(1, len(asked) // 2):
        raise _Rejected(
            "NO_SPEECH",
            f"We could not hear you say the challenge's digits ({spaced}); record again in a "
            "quiet place and say each digit clearly, out loud.",
        )
    raise _Rejected(
        "WRONG_DIGITS",
        f"We heard {' '.join(heard)}, not the challenge's digits ({spaced}); record again "
        "and say each digit of this challenge clearly, in order.",
    )


# ---------- what a pass keeps ----------


def _reference_crops(samples: list[_Sample]) -> list[np.ndarray]:
    """RGB crops of the face with a margin, from frames spread across the capture."""
    single = [s.crop for s in samples if s.crop is not None]
    count = min(REFERENCE_COUNT, len(single))
    picks = sorted({round(k * (len(single) - 1) / max(1, count - 1)) for k in range(count)})
    return [single[i] for i in picks]


def _embedding(samples: list[_Sample]) -> np.ndarray:
    """The face's descriptor: the mean over the EMBEDDING_FRAMES most frontal frames (the
    closest to the person's neutral pose), which is what a later capture is matched by."""
    usable = [s for s in samples if s.crop is not None and s.face is not None]
    if not usable:
        raise _Rejected(
            "NO_FACE",
            "Your face could not be seen clearly enough; film yourself facing the camera in "
            "good light, with your whole face in the frame.",
        )
    posed = [s for s in usable if s.pose is not None]
    if len(posed) >= EMBEDDING_FRAMES:
        neutral = _neutral([s.pose for s in posed if s.pose is not None])

        def distance(s: _Sample) -> float:
            assert s.pose is not None
            return sum(abs(v) for v in _offsets(s.pose, neutral))

        usable = sorted(posed, key=distance)
    picked = usable[:EMBEDDING_FRAMES]
    vectors = [face_models.embedding(s.crop, s.face) for s in picked if s.crop is not None]
    return np.mean(np.stack(vectors), axis=0).astype(np.float32)
