"""Build cameo capture videos for tests: real encoded files made with PyAV, no downloads.

    from tests.capture_videos import make_capture

    path = make_capture(tmp_path / "me.mp4")                      # passes verify_capture
    path = make_capture(tmp_path / "still.mp4", kind="still")     # a photo re-encoded: rejected
    path = make_resizing_capture(tmp_path / "bomb.webm")          # small header, huge frames

Every kind but "not_video" is a real, playable video (H.264/AAC in .mp4/.mov, VP8/Opus in
.webm) whose only defect is the one the kind names, so a test that expects one rejection
reason gets that one. The face is a public-domain photograph (tests/data/faces/README.md)
that OpenCV's bundled frontal-face Haar cascade finds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image

__all__ = [
    "FACE_IMAGE",
    "KINDS",
    "CaptureKind",
    "make_capture",
    "make_resizing_capture",
    "multipart_body",
]

FACE_IMAGE = Path(__file__).parent / "data" / "faces" / "astronaut_face.jpg"

CaptureKind = Literal[
    "good",  # one face moving and scaling, a spoken-like audio track: passes
    "still",  # one face, the very same frame throughout (a photo turned into a video)
    "noisy_still",  # a still photo with flickering light and grain: frames differ, face fixed
    "no_face",  # moving shapes, no face
    "two_faces",  # two faces side by side, moving
    "no_audio",  # a good video without any audio stream
    "silent",  # a good video whose audio stream is all zeros
    "audio_only",  # sound and no video stream at all
    "not_video",  # bytes that are no container at all, whatever the file is named
]
KINDS: tuple[str, ...] = CaptureKind.__args__

_SAMPLE_RATE = 48_000
_CONTAINERS = {
    ".mp4": ("mp4", "libx264", "aac"),
    ".mov": ("mov", "libx264", "aac"),
    ".webm": ("webm", "libvpx", "libopus"),
}


def make_capture(
    path: Path,
    *,
    kind: CaptureKind = "good",
    seconds: float = 4.0,
    fps: int = 12,
    size: tuple[int, int] = (360, 480),
    rotation: int = 0,
) -> Path:
    """Write a capture video of `kind` to `path` and return the path.

    The container follows the suffix: .mp4 (the default for any other suffix), .mov or .webm.
    `seconds` sets the length (use 2 for "too short", 16 for "too long"); `size` is
    (width, height), both even. "not_video" writes a few KB of text whatever the suffix.
    `rotation` (a multiple of 90, counter-clockwise) stores the frames turned the other way
    with a display rotation that turns them upright, as phones store portrait video.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind not in KINDS:
        raise ValueError(f"unknown capture kind {kind!r}; one of {KINDS}")
    if kind == "not_video":
        # looks like nothing PyAV can open: a renamed text file
        path.write_bytes(b"this is not a video, only text named like one\n" * 100)
        return path
    width, height = size
    if width % 2 or height % 2:
        raise ValueError("width and height must be even")
    count = max(1, round(seconds * fps))
    frames = None
    if kind != "audio_only":
        frames = (_frame(kind, i, count, width, height) for i in range(count))
    audio = None
    if kind != "no_audio":
        audio = _audio(count / fps, silent=kind == "silent")
    turns = (rotation // 90) % 4
    if frames is not None and turns:
        frames = (np.ascontiguousarray(np.rot90(f, k=-turns)) for f in frames)
        if turns % 2:
            width, height = height, width
    _encode(path, frames, fps=fps, width=width, height=height, audio=audio, rotation=rotation)
    return path


def make_resizing_capture(
    path: Path,
    *,
    small: tuple[int, int] = (160, 120),
    big: tuple[int, int] = (5000, 5000),
    seconds: float = 4.0,
    fps: int = 4,
) -> Path:
    """A decompression bomb shaped as a capture: a VP8/Opus WebM whose header and first frame
    say `small`, every later frame `big`, with sound (so a check gets as far as decoding
    the picture). Returns the path.

    A VP8 keyframe may change the picture size, and the container's header is not asked: a
    decoder that trusts the header allocates `big` pictures. The file stays small (flat grey:
    one big keyframe, then one empty inter frame repeated) and takes a second or two to
    build. The finding it reproduces used 16000x16000 (VP8 allows up to 16383); 5000x5000
    breaks the 4096-a-side and 9.4-megapixel budget just the same and encodes far faster.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = max(2, round(seconds * fps))
    head = _vp8_packets(*small, frames=1, fps=fps)
    keyframe, repeat = _vp8_packets(*big, frames=2, fps=fps)
    with av.open(str(path), mode="w", format="webm") as out:
        video = out.add_stream("libvpx", rate=fps)
        video.width, video.height, video.pix_fmt = small[0], small[1], "yuv420p"
        sound = out.add_stream("libopus", rate=_SAMPLE_RATE)
        sound.layout = "mono"
        for i, source in enumerate([head[0], keyframe] + [repeat] * (count - 2)):
            packet = av.Packet(bytes(source))
            packet.pts = packet.dts = i
            packet.duration = 1
            packet.time_base = Fraction(1, fps)
            packet.is_keyframe = i < 2
            packet.stream = video
            out.mux(packet)
        _mux_audio(out, sound, _audio(count / fps, silent=False), "libopus")
    return path


def _vp8_packets(width: int, height: int, *, frames: int, fps: int) -> list[av.Packet]:
    """VP8 packets of `frames` flat grey frames: a keyframe, then inter frames."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, fps), fps
    encoder.options = {"deadline": "realtime", "cpu-used": "16", "lag-in-frames": "0"}
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(b"\x80" * plane.buffer_size)
    packets: list[av.Packet] = []
    for i in range(frames):
        frame.pts, frame.time_base = i, Fraction(1, fps)
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return packets


def multipart_body(
    payload: bytes,
    *,
    field: str = "video",
    filename: str = "capture.mp4",
    content_type: str = "video/mp4",
    boundary: str = "reelgraph-test-boundary-7d1f",
) -> tuple[bytes, str]:
    """A multipart/form-data body holding one file part; returns (body, Content-Type header)."""
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    body = head + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# ---------- frames ----------

_face_cache: dict[int, np.ndarray] = {}


def _face(height: int) -> np.ndarray:
    """The face photo scaled to `height` pixels tall, RGB uint8."""
    if height not in _face_cache:
        with Image.open(FACE_IMAGE) as img:
            rgb = img.convert("RGB")
            w = round(rgb.width * height / rgb.height)
            _face_cache[height] = np.asarray(rgb.resize((w, height), Image.Resampling.BILINEAR))
    return _face_cache[height]


def _background(width: int, height: int) -> np.ndarray:
    # a soft gradient: textured enough to encode like a room, with no face-like pattern
    y = np.linspace(40, 120, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 60, width, dtype=np.float32)[None, :]
    base = y + x
    return np.stack([base, base * 0.9 + 20, base * 0.7 + 40], axis=-1).astype(np.uint8)


def _paste(canvas: np.ndarray, img: np.ndarray, cx: float, cy: float) -> None:
    h, w = img.shape[:2]
    x0, y0 = round(cx - w / 2), round(cy - h / 2)
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(canvas.shape[1], x0 + w), min(canvas.shape[0], y0 + h)
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = img[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]


def _frame(kind: str, i: int, count: int, width: int, height: int) -> np.ndarray:
    canvas = _background(width, height)
    if kind == "noisy_still":
        face = _face(round(height * 0.55))
        _paste(canvas, face, width / 2, height / 2)
        # lighting that pulses and sensor grain: every frame differs, nothing moves
        rng = np.random.default_rng(i)
        light = 25 * math.sin(2 * math.pi * i / 6)
        noisy = canvas.astype(np.float32) + light + rng.normal(0, 6, canvas.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)
    # the head turns and nods: the box drifts and grows/shrinks over the clip
    t = 0.0 if kind == "still" else i / max(1, count - 1)
    phase = 2 * math.pi * t
    scale = 1.0 + 0.2 * math.sin(phase)
    dx, dy = 0.12 * width * math.sin(phase), 0.06 * height * math.sin(2 * phase)
    if kind == "no_face":
        # moving coloured blocks: frames change, nothing face-like
        s = round(height * 0.3 * scale)
        block = np.zeros((s, s, 3), np.uint8)
        block[:] = (200, 60, 60)
        block[s // 3 : 2 * s // 3] = (60, 60, 200)
        _paste(canvas, block, width / 2 + dx, height / 2 + dy)
        return canvas
    if kind == "two_faces":
        face = _face(round(height * 0.42 * scale))
        _paste(canvas, face, width * 0.27 + dx * 0.3, height / 2 + dy)
        _paste(canvas, face, width * 0.73 + dx * 0.3, height / 2 + dy)
        return canvas
    face = _face(round(height * 0.55 * scale))
    _paste(canvas, face, width / 2 + dx, height / 2 + dy)
    return canvas


def _audio(seconds: float, *, silent: bool) -> np.ndarray:
    n = round(seconds * _SAMPLE_RATE)
    if silent:
        return np.zeros((1, n), np.float32)
    t = np.arange(n, dtype=np.float32) / _SAMPLE_RATE
    # a voice-like tone whose loudness comes and goes like syllables, with a little noise
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    tone = 0.25 * envelope * np.sin(2 * np.pi * 220.0 * t)
    noise = np.random.default_rng(7).normal(0, 0.01, n).astype(np.float32)
    return (tone + noise).astype(np.float32)[None, :]


def _encode(
    path: Path,
    frames: Iterator[np.ndarray] | None,
    *,
    fps: int,
    width: int,
    height: int,
    audio: np.ndarray | None,
    rotation: int = 0,
) -> None:
    fmt, vcodec, acodec = _CONTAINERS.get(path.suffix.lower(), _CONTAINERS[".mp4"])
    with av.open(str(path), mode="w", format=fmt) as out:
        video = None
        if frames is not None:
            video = out.add_stream(vcodec, rate=fps)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            if vcodec == "libx264":
                video.options = {"preset": "ultrafast", "crf": "23"}
            if rotation % 360:
                video.set_display_rotation(rotation)
        sound = None
        if audio is not None:
            sound = out.add_stream(acodec, rate=_SAMPLE_RATE)
            sound.layout = "mono"
        if video is not None and frames is not None:
            for i, pixels in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                vf.pts, vf.time_base = i, Fraction(1, fps)
                out.mux(video.encode(vf))
            out.mux(video.encode(None))
        if sound is not None and audio is not None:
            _mux_audio(out, sound, audio, acodec)


def _mux_audio(
    out: av.container.OutputContainer, sound: av.AudioStream, audio: np.ndarray, acodec: str
) -> None:
    # one frame at a time keeps each within what the encoder accepts
    step = 960 if acodec == "libopus" else 1024
    fmt_name = sound.codec_context.format.name
    for start in range(0, audio.shape[1], step):
        chunk = audio[:, start : start + step]
        if fmt_name.startswith("s16"):
            chunk = (chunk * 32767).astype(np.int16)
        chunk = np.ascontiguousarray(chunk)  # mono: packed and planar are alike
        af = av.AudioFrame.from_ndarray(chunk, format=fmt_name, layout="mono")
        af.sample_rate = _SAMPLE_RATE
        af.pts, af.time_base = start, Fraction(1, _SAMPLE_RATE)
        out.mux(sound.encode(af))
    out.mux(sound.encode(None))
