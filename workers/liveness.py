"""Liveness check of a cameo capture video: a presence check, not anti-spoofing.

What it verifies, offline, from the file alone: the container decodes and has a video
stream; the recording lasts min_s..max_s seconds (measured from the packets, not the
header); there is an audio track that is not silent; exactly one face is found (OpenCV's
bundled frontal-face Haar cascade) in most of a dozen frames sampled evenly; and the face
moves between frames while the frames themselves change, so a still picture re-encoded as a
video is rejected.

What it does not verify: that the face is a live person rather than a screen, a printed
photo moved by hand, a mask or a deepfake; that the speaker says the challenge phrase; that
the head moves as the challenge asks; who the person is. README.md says so to users.

Every rejection carries a sentence a person can act on. The work is bounded before decoding:
absurd picture sizes, frame rates and lengths are refused from a demux pass (packets only),
frames are decoded once in order and only the sampled ones are converted, downscaled. While
decoding, every frame is held to a picture budget (DecodeBudget): the decoder itself refuses
a picture over max_frame_pixels before allocating it (a header can lie, and a stream can
change size mid-way), each decoded frame's size is checked before anything converts it, and
the pixels decoded in all are counted; the first frame that breaks the budget ends the check.

Uploaded captures are checked in workers.sandbox, a confined child process that runs
check_capture; verify_capture runs the same check in this process (tests, tools).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import av
import cv2
import numpy as np

from media.probe import MAX_FRAME_PIXELS, MAX_SIDE, limit_decoder, open_container

__all__ = [
    "CODES",
    "DecodeBudget",
    "LivenessResult",
    "check_capture",
    "encode_reference",
    "verify_capture",
]

SAMPLES = 12  # frames sampled evenly across the recording
MIN_SAMPLES = 6  # fewer distinct frames than this cannot show presence or movement
ONE_FACE_SHARE = 2 / 3  # share of sampled frames that must hold exactly one face
LENGTH_SLACK_S = 0.1  # lengths this close outside min_s..max_s still pass
MIN_SIDE = 120  # shortest picture side: below it no face is findable
MAX_FPS = 120  # slow-motion capture beyond this is refused rather than decoded
REFERENCE_SIDE = 960  # sampled frames are kept at most this large (reference crops)
DETECT_SIDE = 480  # and searched for faces at most this large
REFERENCE_COUNT = 3
REFERENCE_MARGIN = 0.4  # of the face box's size, added on each side of a reference crop
MIN_RMS = 0.005  # loudest 0.1 s of audio, full scale 1.0: about -46 dBFS; silence is far below
# movement: the face box's centre shifts by this share of its width, or its size changes by
# this factor, between some sampled frames; and some pair of consecutive samples differs in at
# least this share of pixels (beyond compression noise). The cascade's box sizes come in steps
# of its 1.1 scale factor, so flicker on a still photo can change the size by one step: the
# scale threshold is two steps and more
MIN_BOX_SHIFT = 0.15
MIN_BOX_SCALE = 1.25
MIN_CHANGED_SHARE = 0.01
PIXEL_CHANGE = 12  # grey levels (of 255) after a blur: a pixel that moved, not codec noise
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
    }
)
_REFUSED_SIZE = re.compile(r"Picture size (\d+)x(\d+) exceeds")

_CASCADE_FILE = "haarcascade_frontalface_default.xml"
_cascade: cv2.CascadeClassifier | None = None


@dataclass(frozen=True)
class LivenessResult:
    """The outcome of verify_capture.

    ok: the capture passed every check. reason: why not, a sentence for the person who
    recorded it (None when ok). code: the same as a stable word for logs and tests (NOT_VIDEO,
    TOO_LARGE, TOO_SMALL, TOO_SHORT, TOO_LONG, FRAME_RATE, NO_AUDIO, SILENT, TOO_FEW_FRAMES,
    NO_FACE, MANY_FACES, STILL_PICTURE, TOO_MUCH_VIDEO; None when ok; workers.sandbox adds
    its own). reference_frames: JPEG bytes of the face region (with a margin) from
    REFERENCE_COUNT frames spread across the capture, only when ok. frames_decoded: video
    frames the decoder produced (a check stopped by the budget stops counting there).
    """

    ok: bool
    reason: str | None = None
    code: str | None = None
    reference_frames: list[bytes] = field(default_factory=list)
    duration_s: float | None = None
    frames_sampled: int = 0
    frames_with_one_face: int = 0
    frames_decoded: int = 0


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


def verify_capture(
    path: Path, *, min_s: float = 3, max_s: float = 15, budget: DecodeBudget | None = None
) -> LivenessResult:
    """Check that the capture at `path` shows one present, moving face with sound, in this
    process (uploads are checked by workers.sandbox.check_in_sandbox, which runs
    check_capture in a confined child).

    Never raises for a bad file: every failure is a LivenessResult with ok False.
    """
    result, crops = check_capture(path, min_s=min_s, max_s=max_s, budget=budget)
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
    path: Path, *, min_s: float = 3, max_s: float = 15, budget: DecodeBudget | None = None
) -> tuple[LivenessResult, list[np.ndarray]]:
    """The checks of verify_capture, with the reference crops as RGB arrays (height x width
    x 3, uint8, at most REFERENCE_SIDE a side) rather than JPEG: what the sandboxed child
    returns to its parent, which checks them and encodes them itself. The result's
    reference_frames stay empty.
    """
    budget = budget or DecodeBudget()
    duration = None
    sampled = one_face = 0
    counter = _Counter()
    try:
        shape = _measure(Path(path), min_s=min_s, max_s=max_s, budget=budget)
        duration = shape.duration_s
        _check_audio(Path(path), max_s=max_s)
        frames = _sample_frames(Path(path), shape, max_s=max_s, budget=budget, counter=counter)
        sampled = len(frames)
        if sampled < MIN_SAMPLES:
            raise _Rejected(
                "TOO_FEW_FRAMES",
                "The video has too few frames to check; record a normal video rather than a "
                "slideshow or time-lapse.",
            )
        boxes = [_faces(frame) for frame in frames]
        one_face = sum(1 for b in boxes if len(b) == 1)
        _check_faces(boxes)
        _check_movement(frames, boxes)
        crops = _reference_crops(frames, boxes)
    except _Rejected as rejected:
        result = LivenessResult(
            ok=False,
            reason=rejected.reason,
            code=rejected.code,
            duration_s=duration,
            frames_sampled=sampled,
            frames_with_one_face=one_face,
            frames_decoded=counter.frames,
        )
        return result, []
    result = LivenessResult(
        ok=True,
        duration_s=duration,
        frames_sampled=sampled,
        frames_with_one_face=one_face,
        frames_decoded=counter.frames,
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


def _check_audio(path: Path, *, max_s: float) -> None:
    with _open(path) as container:
        if not container.streams.audio:
            raise _Rejected(
                "NO_AUDIO",
                "The video has no sound; record with the microphone on and say the phrase "
                "out loud.",
            )
        stream = container.streams.audio[0]
        loudest = 0.0
        try:
            for frame in container.decode(stream):
                if frame.time is not None and frame.time > max_s + 1:
                    break
                loudest = max(loudest, _rms(frame.to_ndarray()))
                if loudest >= MIN_RMS:
                    return  # sound found: no need to decode the rest
        except MemoryError:  # the sandbox's memory limit, not the file's format
            raise
        except av.FFmpegError as exc:
            raise _Rejected(
                "NOT_VIDEO",
                "The video's sound could not be decoded; record again with your camera app.",
            ) from exc
    raise _Rejected(
        "SILENT",
        "The video's sound is silent; check that the microphone is on and not muted, and say "
        "the phrase out loud.",
    )


def _rms(samples: np.ndarray) -> float:
    if samples.size == 0:
        return 0.0
    data = samples.astype(np.float64)
    if np.issubdtype(samples.dtype, np.integer):
        data /= float(np.iinfo(samples.dtype).max)
    return float(np.sqrt(np.mean(data * data)))


# ---------- frames ----------


def _sample_frames(
    path: Path, shape: _Shape, *, max_s: float, budget: DecodeBudget, counter: _Counter
) -> list[np.ndarray]:
    """RGB frames at evenly spread times, each at most REFERENCE_SIDE on its longest side.

    Decodes in order once (seeking per sample would decode from the previous keyframe each
    time), converting and scaling only the frames it keeps, and stops after the last one.
    Every frame is held to the budget first (_budget_frame); the decoder refuses pictures
    over it before allocating them.
    """
    targets = [shape.start_s + shape.duration_s * (i + 0.5) / SAMPLES for i in range(SAMPLES)]
    scale = min(1.0, REFERENCE_SIDE / max(shape.width, shape.height))
    out_w = max(2, round(shape.width * scale / 2) * 2)
    out_h = max(2, round(shape.height * scale / 2) * 2)
    frames: list[np.ndarray] = []
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
                frames.append(_upright(pixels, frame.rotation))
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


def _detector() -> cv2.CascadeClassifier:
    global _cascade
    if _cascade is None:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + _CASCADE_FILE)
        if cascade.empty():
            raise RuntimeError(f"OpenCV's {_CASCADE_FILE} did not load")
        _cascade = cascade
    return _cascade


def _grey(frame: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame in grey at most DETECT_SIDE large, and the factor back to frame pixels."""
    h, w = frame.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = frame
    if scale < 1.0:
        small = cv2.resize(
            frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
        )
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), 1.0 / scale


def _faces(frame: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Face boxes (x, y, w, h) in frame pixels."""
    grey, back = _grey(frame)
    grey = cv2.equalizeHist(grey)
    # a selfie face fills a good part of the frame: ignore tiny detections in the background
    least = max(24, round(min(grey.shape) * 0.1))
    found = _detector().detectMultiScale(
        grey, scaleFactor=1.1, minNeighbors=5, minSize=(least, least)
    )
    return [(x * back, y * back, w * back, h * back) for (x, y, w, h) in found]


def _check_faces(boxes: list[list[tuple[float, float, float, float]]]) -> None:
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


def _check_movement(
    frames: list[np.ndarray], boxes: list[list[tuple[float, float, float, float]]]
) -> None:
    single = [b[0] for b in boxes if len(b) == 1]
    widths = _trimmed([w for (_, _, w, _) in single])
    typical = float(np.median(widths))
    xs = _trimmed([x + w / 2 for (x, _, w, _) in single])
    ys = _trimmed([y + h / 2 for (_, y, _, h) in single])
    shift = max(xs[-1] - xs[0], ys[-1] - ys[0]) / typical
    box_moved = shift >= MIN_BOX_SHIFT or widths[-1] / widths[0] >= MIN_BOX_SCALE

    greys = [cv2.GaussianBlur(_grey(f)[0], (5, 5), 0) for f in frames]
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


def _reference_crops(
    frames: list[np.ndarray], boxes: list[list[tuple[float, float, float, float]]]
) -> list[np.ndarray]:
    """RGB crops of the face with a margin, from frames spread across the capture."""
    single = [i for i, b in enumerate(boxes) if len(b) == 1]
    count = min(REFERENCE_COUNT, len(single))
    picks = sorted({single[round(k * (len(single) - 1) / max(1, count - 1))] for k in range(count)})
    crops: list[np.ndarray] = []
    for i in picks:
        frame = frames[i]
        x, y, w, h = boxes[i][0]
        mx, my = w * REFERENCE_MARGIN, h * REFERENCE_MARGIN
        x0, y0 = max(0, round(x - mx)), max(0, round(y - my))
        x1 = min(frame.shape[1], round(x + w + mx))
        y1 = min(frame.shape[0], round(y + h + my))
        if x1 > x0 and y1 > y0:
            crops.append(np.ascontiguousarray(frame[y0:y1, x0:x1]))
    return crops
