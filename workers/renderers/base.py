"""What every renderer shares: the spec it renders, its protocol, progress and temp-file rules."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "MAX_DURATION_S",
    "MIN_DURATION_S",
    "CameoReference",
    "ProgressCallback",
    "RenderCancelled",
    "RenderSpec",
    "Renderer",
    "monotonic_progress",
    "temp_mp4",
]

MIN_DURATION_S = 1
MAX_DURATION_S = 20

ProgressCallback = Callable[[float], None]


class RenderCancelled(Exception):
    """Raised by an on_progress callback to stop a render; the renderer re-raises it."""


@dataclass(frozen=True, repr=False)
class CameoReference:
    """A featured cameo's decrypted reference frames (JPEG bytes), held in memory only: the
    worker decrypts them after the render token verified and never writes them to disk."""

    label: str  # the owner's handle, shown by the preview renderer
    frames: tuple[bytes, ...]

    def __repr__(self) -> str:  # never dump a likeness into a log
        return f"CameoReference(label={self.label!r}, frames={len(self.frames)})"


@dataclass(frozen=True)
class RenderSpec:
    clip_id: str
    prompt: str
    duration_s: int
    moods: tuple[str, ...] = ()
    seed: int = 0
    cameo_labels: tuple[str, ...] = ()
    cameos: tuple[CameoReference, ...] = ()
    # the creator's handle: the visible mark every render carries (encode_mp4's `mark`)
    author_handle: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.duration_s, bool) or not isinstance(self.duration_s, int):
            raise TypeError("duration_s must be an int")
        if not MIN_DURATION_S <= self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration_s must be {MIN_DURATION_S}..{MAX_DURATION_S}")
        if not self.clip_id:
            raise ValueError("clip_id is required")


@runtime_checkable
class Renderer(Protocol):
    name: str

    def render(self, spec: RenderSpec, on_progress: ProgressCallback) -> Path:
        """Write an MP4 to a fresh temporary file and return its path (the caller owns it).

        Encode with encode_mp4(..., mark=spec.author_handle): every rendered video carries
        the creator's visible mark (provenance.mark)."""
        ...


def monotonic_progress(on_progress: ProgressCallback, min_step: float = 0.01) -> ProgressCallback:
    """Wrap on_progress so it sees clamped, non-decreasing fractions, at most one per min_step.

    Skipped calls keep callers (event publishing, cancellation checks) cheap on long renders;
    1.0 is always delivered once.
    """
    last = -1.0

    def report(fraction: float) -> None:
        nonlocal last
        value = min(1.0, max(0.0, float(fraction)))
        if value <= last or (value < 1.0 and value - last < min_step):
            return
        last = value
        on_progress(value)

    return report


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@contextmanager
def temp_mp4(clip_id: str, tmp_dir: Path | None = None) -> Iterator[Path]:
    """A fresh empty .mp4 path; removed again if the body raises (cancellation included)."""
    prefix = f"render-{_UNSAFE.sub('_', clip_id)[:40]}-"
    fd, name = tempfile.mkstemp(suffix=".mp4", prefix=prefix, dir=tmp_dir)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    except BaseException:
        path.unlink(missing_ok=True)
        raise
