"""Facts about a video file, read from the file itself (never from what a client claims).

Also what reading an untrusted video needs, shared by the upload route (media.uploads) and
the capture check (workers.liveness, run in workers.sandbox): the container opened with the
demuxer its bytes call for, the picture-size budget, a decoder held to that budget, and the
frame sizes VP8/VP9 packets state in their headers (read without decoding anything).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

__all__ = [
    "MAX_FRAME_PIXELS",
    "MAX_SIDE",
    "VideoInfo",
    "limit_decoder",
    "open_container",
    "probe_video",
    "sniff_format",
    "stated_frame_sizes",
]

_CHUNK = 1 << 20

# the picture budget of an untrusted video, every frame of it: 4K (DCI 4096x2160 and UHD
# 3840x2160, either way up) fits; a frame past either limit is refused, never converted
MAX_SIDE = 4096
MAX_FRAME_PIXELS = 4096 * 2304
_MOV_BOXES = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"


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


# ---------- untrusted videos ----------


def sniff_format(path: Path) -> str | None:
    """The FFmpeg demuxer the file's first bytes call for: "mov" or "matroska", else None.

    Opening untrusted files with a fixed demuxer (never FFmpeg's guess) keeps playlist and
    concat demuxers, which read other files or URLs, out of reach.
    """
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) >= 8 and head[4:8] in _MOV_BOXES:
        return "mov"
    if head.startswith(_EBML_MAGIC):
        return "matroska"
    return None


def open_container(path: Path) -> av.container.InputContainer:
    """Open an untrusted video with the demuxer its bytes call for.

    Raises ValueError when the bytes are no MP4/QuickTime/Matroska container, and PyAV's
    av.FFmpegError when the demuxer cannot open them.
    """
    fmt = sniff_format(path)
    if fmt is None:
        raise ValueError("not an MP4, MOV or WebM container")
    return av.open(str(path), mode="r", format=fmt)


def limit_decoder(
    stream: av.VideoStream, *, max_pixels: int = MAX_FRAME_PIXELS, threads: int = 1
) -> None:
    """Hold the stream's decoder to max_pixels a picture and `threads` threads; call before
    the first decode.

    FFmpeg then refuses (av.FFmpegError) any picture bigger than max_pixels before it
    allocates it, whatever the header said and however often the size changes mid-stream:
    a 160x120 header followed by 16000x16000 frames costs one failed allocation check, not
    gigabytes. A fixed thread count bounds the frames in flight (FFmpeg's "auto" starts one
    thread per core, each holding frames).
    """
    ctx = stream.codec_context
    ctx.options = {**ctx.options, "max_pixels": str(max_pixels)}
    ctx.thread_count = threads
    ctx.thread_type = "AUTO" if threads > 1 else "NONE"


def stated_frame_sizes(codec: str, data: bytes | memoryview) -> list[tuple[int, int]]:
    """The picture sizes (width, height) a VP8 or VP9 packet states outright, read from its
    headers without decoding it; [] for frames that reuse a size, and for other codecs.

    VP8 states a size in each keyframe; VP9 in keyframes, intra-only frames and inter frames
    that do not take a reference frame's size, and may pack several frames in one packet (a
    superframe). Every size a stream ever takes is stated somewhere, so checking these checks
    them all. A packet too short or malformed to read states nothing here: the decoder,
    held by limit_decoder, is the real guard.
    """
    view = memoryview(data)
    if codec == "vp8":
        return _vp8_size(view)
    if codec == "vp9":
        sizes = []
        for frame in _vp9_frames(view):
            size = _vp9_size(frame)
            if size is not None:
                sizes.append(size)
        return sizes
    return []


def _vp8_size(data: memoryview) -> list[tuple[int, int]]:
    # RFC 6386 9.1: a 3-byte frame tag whose low bit is 0 on keyframes, then a start code and
    # two little-endian 14-bit sizes (the top two bits are a scaling hint)
    if len(data) < 10 or data[0] & 1 or bytes(data[3:6]) != b"\x9d\x01\x2a":
        return []
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return [(width, height)]


def _vp9_frames(data: memoryview) -> list[memoryview]:
    # a superframe ends with an index: a marker byte 0b110mmfff, (fff+1) frame sizes of mm+1
    # bytes each, and the marker again (VP9 bitstream spec, annex B)
    if not len(data):
        return []
    marker = data[-1]
    if marker & 0xE0 == 0xC0:
        count, size_bytes = (marker & 7) + 1, ((marker >> 3) & 3) + 1
        index = 2 + size_bytes * count
        if len(data) >= index and data[-index] == marker:
            frames, offset = [], 0
            for i in range(count):
                at = len(data) - index + 1 + i * size_bytes
                size = int.from_bytes(data[at : at + size_bytes], "little")
                frames.append(data[offset : offset + size])
                offset += size
            return frames
    return [data]


class _Bits:
    def __init__(self, data: memoryview) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("short header")
            value = (value << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value


def _vp9_size(frame: memoryview) -> tuple[int, int] | None:
    """The size a VP9 frame's uncompressed header states, if it states one (spec 6.2)."""
    bits = _Bits(frame)
    try:
        if bits.read(2) != 2:  # frame_marker
            return None
        low, high = bits.read(1), bits.read(1)
        profile = (high << 1) | low
        if profile == 3:
            bits.read(1)  # reserved_zero
        if bits.read(1):  # show_existing_frame: shows a frame already decoded
            return None
        key = bits.read(1) == 0  # frame_type
        show_frame = bits.read(1)
        error_resilient = bits.read(1)
        if key:
            if bits.read(24) != 0x498342:  # frame_sync_code
                return None
            _vp9_color_config(bits, profile)
            return bits.read(16) + 1, bits.read(16) + 1
        intra_only = 0 if show_frame else bits.read(1)
        if not error_resilient:
            bits.read(2)  # reset_frame_context
        if intra_only:
            if bits.read(24) != 0x498342:
                return None
            if profile > 0:
                _vp9_color_config(bits, profile)
            bits.read(8)  # refresh_frame_flags
            return bits.read(16) + 1, bits.read(16) + 1
        bits.read(8)  # refresh_frame_flags
        bits.read(3 * 4)  # ref_frame_idx and ref_frame_sign_bias, three times
        for _ in range(3):
            if bits.read(1):  # found_ref: the size of a reference frame, stated before
                return None
        return bits.read(16) + 1, bits.read(16) + 1
    except ValueError:
        return None


def _vp9_color_config(bits: _Bits, profile: int) -> None:
    if profile >= 2:
        bits.read(1)  # ten_or_twelve_bit
    color_space = bits.read(3)
    if color_space != 7:  # not CS_RGB
        bits.read(1)  # color_range
        if profile in (1, 3):
            bits.read(3)  # subsampling_x, subsampling_y, reserved_zero
    elif profile in (1, 3):
        bits.read(1)  # reserved_zero
