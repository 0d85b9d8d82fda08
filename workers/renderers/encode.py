"""The one H.264/AAC MP4 writer every renderer uses (PyAV), and a threaded front to it.

x264's settings are chosen by measurement (benchmarks/encode_presets.py: 121 frames of
768x512 moving content, each preset and CRF, PSNR against a lossless encode): "superfast" at
CRF 20 gives about 42.7 dB (above the ~40 dB where losses stop being visible) at twice the
speed "veryfast" needs for the same PSNR, for a file ~1.5x larger; x264 threads itself
(threads=0: one per core, as x264 picks).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "DEFAULT_CRF",
    "DEFAULT_PRESET",
    "EncoderAborted",
    "StreamingEncoder",
    "encode_mp4",
]

AUDIO_SAMPLE_RATE = 48_000
DEFAULT_PRESET = "superfast"
DEFAULT_CRF = 20


def encode_mp4(
    frames: Iterable[np.ndarray],
    out_path: Path,
    *,
    fps: int,
    audio: np.ndarray | Callable[[], np.ndarray] | None = None,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    audio_channels: int = 1,
    on_frame: Callable[[int], None] | None = None,
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
    threads: int = 0,
    pixel_format: Literal["rgb24", "yuv420p"] = "rgb24",
    mark: str | None = None,
) -> int:
    """Encode frames and optional audio to an H.264/AAC MP4.

    Frames are uint8 with even height H and width W: H x W x 3 for "rgb24", or planar
    (H * 3 // 2) x W (Y, then U, then V) for "yuv420p", which skips the colour conversion.

    audio is float32 in [-1, 1] shaped (channels, samples) with 1 or 2 channels; it is muxed
    interleaved with the video. audio may instead be a callable returning that array, called
    once the last frame is encoded (a model that makes its sound after its pictures); its
    track is then audio_channels wide, and muxed after the video. on_frame(n) runs after the
    n-th frame is encoded and may raise to abort (the partial file is the caller's to
    remove). Returns the number of frames written.

    mark, the creator's handle, draws the visible moving mark (provenance.mark) into every
    frame as it is encoded; renderers pass RenderSpec.author_handle, so every rendered video
    carries it whatever made its pixels.

    threads is x264's thread count (0: x264 chooses, one per core).
    """
    if fps <= 0:
        raise ValueError("fps must be positive")
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("no frames to encode")
    height, width = _check_frame(first, None, pixel_format)
    late_audio = audio if callable(audio) else None
    pcm = _check_audio(audio) if audio is not None and late_audio is None else None
    channels = pcm.shape[0] if pcm is not None else audio_channels
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
        video.options = {"preset": preset, "crf": str(crf), "threads": str(threads)}
        frame_tb = Fraction(1, fps)

        sound = None
        audio_tb = Fraction(1, sample_rate)
        audio_sent = 0
        if audio is not None:
            if channels not in (1, 2):
                raise ValueError(f"audio must have 1 or 2 channels, got {channels}")
            sound = out.add_stream("aac", rate=sample_rate)
            sound.layout = "stereo" if channels == 2 else "mono"
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
            if pcm is not None:
                # keep audio in step with video so the muxer interleaves both streams
                send_audio(count * sample_rate // fps)
            if on_frame is not None:
                on_frame(count)

        out.mux(video.encode(None))
        if late_audio is not None:
            pcm = _check_audio(late_audio())
            if pcm.shape[0] != channels:
                raise ValueError(f"audio has {pcm.shape[0]} channels, not {channels}")
        if sound is not None and pcm is not None:
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


class EncoderAborted(Exception):
    """The render stopped before the encoder got all its frames."""


_END = object()


class StreamingEncoder:
    """encode_mp4 in a thread of its own, fed frames while they are still being made (as the
    VAE decodes them), so encoding overlaps the model instead of following it.

    put() hands frames on; finish(audio) ends the stream (audio: the late track, when the
    encoder was opened with audio_channels) and returns the frame count; abort() stops it.
    Progress callbacks never run in the encoder thread: callers read frames_done from their
    own thread (a render's progress report writes to the graph on that thread's loop).
    Errors in the thread surface from put() and finish().
    """

    def __init__(
        self,
        out_path: Path,
        *,
        fps: int,
        audio_channels: int | None = None,
        max_queued: int = 48,
        **options,
    ) -> None:
        self.frames_done = 0
        self._frames: queue.Queue = queue.Queue(maxsize=max_queued)
        self._audio: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._aborted = threading.Event()
        self._ended = False
        self._count = 0
        if audio_channels is not None:
            options = {**options, "audio": self._late_audio, "audio_channels": audio_channels}
        self._thread = threading.Thread(
            target=self._run,
            args=(out_path, fps, options),
            name="reelgraph-encoder",
            daemon=True,
        )
        self._thread.start()

    def _late_audio(self) -> np.ndarray:
        pcm = self._audio.get()
        if pcm is _END:
            raise EncoderAborted
        return pcm

    def _stream(self) -> Iterable[np.ndarray]:
        while (item := self._frames.get()) is not _END:
            if self._aborted.is_set():
                raise EncoderAborted
            yield item

    def _count_frame(self, n: int) -> None:
        self.frames_done = n

    def _run(self, out_path: Path, fps: int, options: dict) -> None:
        try:
            self._count = encode_mp4(
                self._stream(), out_path, fps=fps, on_frame=self._count_frame, **options
            )
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    self._frames.get_nowait()
                except queue.Empty:
                    break

    def _raise_if_failed(self) -> None:
        if self._error is not None and not isinstance(self._error, EncoderAborted):
            raise self._error

    def put(self, frames: np.ndarray | Iterable[np.ndarray]) -> None:
        """Queue frames (one H x W x 3 frame, an N x H x W x 3 batch, or any iterable)."""
        batch = frames if not isinstance(frames, np.ndarray) or frames.ndim == 4 else [frames]
        for frame in batch:
            while True:
                self._raise_if_failed()
                if not self._thread.is_alive():
                    raise EncoderAborted("the encoder stopped")
                try:
                    self._frames.put(frame, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def wait(self, timeout: float) -> bool:
        """True once the encoder has finished (or failed); False after timeout seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def end_frames(self, audio: np.ndarray | None = None) -> None:
        """No more frames; audio is the late track when the encoder was opened for one."""
        if self._ended:
            return
        self._ended = True
        self._audio.put_nowait(audio if audio is not None else _END)
        while self._thread.is_alive():  # a failed encoder no longer takes frames
            try:
                self._frames.put(_END, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self, audio: np.ndarray | None = None) -> int:
        """end_frames(audio) unless called already, wait for the file, and return how many
        frames it holds."""
        self.end_frames(audio)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._count

    def abort(self) -> None:
        """Stop without a complete file (the caller removes it)."""
        self._aborted.set()
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._frames.put(_END, timeout=1)
            with contextlib.suppress(queue.Full):
                self._audio.put_nowait(_END)
            self._thread.join(timeout=30)
