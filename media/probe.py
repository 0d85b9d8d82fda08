"""Facts about a video file, read from the file itself (never from what a client claims)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

__all__ = ["VideoInfo", "probe_video"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class VideoInfo:
    duration_ms: int
    width: int  # as displayed: rotation metadata is applied
    height: int
    fps: float
    has_audio: bool
    sha256: str
    size_bytes: int
    mime_type: str = "video/mp4"


def probe_video(path: Path) -> VideoInfo:
    """Read a video file's streams and hash its bytes.

    Raises ValueError when the file is missing, empty, not a container PyAV can open, has
    no video stream, or its first video frame does not decode.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path.name}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path.name}: empty file")
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise ValueError(f"{path.name}: no video stream")
            video = container.streams.video[0]
            has_audio = bool(container.streams.audio)
            fps = _fps(video)
            duration_ms = _duration_ms(container, video)
            mime_type = _mime_type(container, video)
            # decoding one frame proves the stream is playable, not just a valid header
            first = next(container.decode(video), None)
            if first is None:
                raise ValueError(f"{path.name}: video stream has no frames")
            width, height = first.width, first.height
            if first.rotation in (90, -90, 270, -270):
                width, height = height, width
    except av.FFmpegError as exc:
        raise ValueError(f"{path.name}: not a playable video ({exc.strerror or exc})") from exc
    if duration_ms <= 0:
        raise ValueError(f"{path.name}: unknown or zero duration")
    return VideoInfo(
        duration_ms=duration_ms,
        width=width,
        height=height,
        fps=fps,
        has_audio=has_audio,
        sha256=_sha256(path),
        size_bytes=size,
        mime_type=mime_type,
    )


def _fps(video: av.VideoStream) -> float:
    rate: Fraction | None = video.average_rate or video.guessed_rate or video.base_rate
    return round(float(rate), 3) if rate else 0.0


def _duration_ms(container: av.container.InputContainer, video: av.VideoStream) -> int:
    # the video stream's own duration: AAC priming can make the container a little longer
    if video.duration is not None and video.time_base is not None:
        return round(video.duration * video.time_base * 1000)
    if container.duration is not None:
        return round(container.duration * 1000 / av.time_base)
    return 0


def _mime_type(container: av.container.InputContainer, video: av.VideoStream) -> str:
    names = set(container.format.name.split(","))
    if "mp4" in names or "mov" in names:
        brand = container.metadata.get("major_brand", "").strip()
        return "video/quicktime" if brand == "qt" else "video/mp4"
    if "webm" in names or "matroska" in names:
        webm = video.codec_context.name in {"vp8", "vp9", "av1"}
        return "video/webm" if webm else "video/x-matroska"
    return f"video/{sorted(names)[0]}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
