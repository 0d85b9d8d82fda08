"""The one H.264/AAC MP4 writer every renderer uses (PyAV)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

__all__ = ["AUDIO_SAMPLE_RATE", "encode_mp4"]

AUDIO_SAMPLE_RATE = 48_000


def encode_mp4(
    frames: Iterable[np.ndarray],
    out_path: Path,
    *,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    on_frame: Callable[[int], None] | None = None,
    crf: int = 23,
    preset: str = "ultrafast",
    pixel_format: Literal["rgb24", "yuv420p"] = "rgb24",
    mark: str | None = None,
) -> int:
    """Encode frames and optional audio to an H.264/AAC MP4.

    Frames are uint8 with even height H and width W: H x W x 3 for "rgb24", or planar
    (H * 3 // 2) x W (Y, then U, then V) for "yuv420p", which skips the colour conversion.

    audio is float32 in [-1, 1] shaped (channels, samples) with 1 or 2 channels; it is muxed
    interleaved with the video. on_frame(n) runs after the n-th frame is encoded and may raise
    to abort (the partial file is the caller's to remove). Returns the number of frames written.

    mark, the creator's handle, draws the visible moving mark (provenance.mark) into every
    frame as it is encoded; renderers pass RenderSpec.author_handle, so every rendered video
    carries it whatever made its pixels.
    """
    if fps <= 0:
        raise ValueError("fps must be positive")
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("no frames to encode")
    height, width = _check_frame(first, None, pixel_format)
    pcm = _check_audio(audio) if audio is not None else None
    marker = None
    if mark:
        from provenance.mark import VisibleMark

        marker = VisibleMark(mark, width, height, fps)

    # faststart puts the index first so players can start streaming before the download ends
    with av.open(str(out_path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        video.codec_context.gop_size = fps  # a keyframe a second keeps scrubbing cheap
        video.options = {"preset": preset, "crf": str(crf)}
        frame_tb = Fraction(1, fps)

        sound = None
        audio_tb = Fraction(1, sample_rate)
        audio_sent = 0
        if pcm is not None:
            sound = out.add_stream("aac", rate=sample_rate)
            sound.layout = "stereo" if pcm.shape[0] == 2 else "mono"
            sound.bit_rate = 96_000

        def send_audio(until: int) -> None:
            nonlocal audio_sent
            until = min(until, pcm.shape[1])
            if until <= audio_sent:
                return
            chunk = np.ascontiguousarray(pcm[:, audio_sent:until])
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=sound.layout.name)
            af.sample_rate = sample_rate
            af.pts = audio_sent
            af.time_base = audio_tb
            out.mux(sound.encode(af))
            audio_sent = until

        count = 0
        for pixels in itertools.chain([first], it):
            if count:
                _check_frame(pixels, (height, width), pixel_format)
            if marker is not None:
                pixels = marker.apply(pixels, count, pixel_format)
            vf = av.VideoFrame.from_ndarray(pixels, format=pixel_format)
            vf.pts = count
            vf.time_base = frame_tb
            out.mux(video.encode(vf))
            count += 1
            if sound is not None:
                # keep audio in step with video so the muxer interleaves both streams
                send_audio(count * sample_rate // fps)
            if on_frame is not None:
                on_frame(count)

        out.mux(video.encode(None))
        if sound is not None:
            send_audio(pcm.shape[1])
            out.mux(sound.encode(None))
    return count


def _check_frame(
    pixels: np.ndarray, size: tuple[int, int] | None, pixel_format: str
) -> tuple[int, int]:
    if pixel_format == "rgb24":
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"rgb24 frames must be HxWx3 uint8, got {pixels.shape} {pixels.dtype}")
        height, width = pixels.shape[:2]
    elif pixel_format == "yuv420p":
        if pixels.ndim != 2 or pixels.shape[0] % 3 or pixels.dtype != np.uint8:
            raise ValueError(f"yuv420p frames must be (H*3/2)xW uint8, got {pixels.shape}")
        height, width = pixels.shape[0] * 2 // 3, pixels.shape[1]
    else:
        raise ValueError(f"unsupported pixel format {pixel_format!r}")
    if size is None and (height % 2 or width % 2):
        raise ValueError(f"yuv420p needs even dimensions, got {width}x{height}")
    if size is not None and (height, width) != size:
        raise ValueError(f"frame size changed from {size} to {(height, width)}")
    return height, width


def _check_audio(audio: np.ndarray) -> np.ndarray:
    if audio.ndim != 2 or audio.shape[0] not in (1, 2):
        raise ValueError(
            f"audio must be (channels, samples) with 1 or 2 channels, got {audio.shape}"
        )
    return np.clip(audio.astype(np.float32, copy=False), -1.0, 1.0)
