"""The visible mark every rendered video carries: the creator's handle, moving over the frame.

The encoder (workers/renderers/encode.py) draws it into each frame as it encodes, so every
renderer that writes through it, the preview and diffusers ones included, marks its output
without knowing how. The label ("AI · @handle") is drawn once with Pillow into a small
patch, then alpha-blended into each frame at a position that glides along a slow Lissajous
path: a mark that moves cannot be cropped away or covered by one fixed patch, and a
stationary logo remover has nothing to lock on to. The mark is white text on a translucent
dark pill, readable on light and dark frames alike.

It is no secret and no proof: anyone can blur it, which is why published clips also carry a
signed manifest and a fingerprint (provenance.manifest, provenance.fingerprints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["VisibleMark", "mark_label"]

_MARGIN_FRACTION = 0.03
# one full sweep across takes this long on each axis (seconds); unequal periods make the
# path cover the frame instead of a single diagonal
_PERIOD_X_S = 7.0
_PERIOD_Y_S = 4.6
_PILL_ALPHA = 150  # of 255: the dark pill behind the text
_TEXT_LUMA = 235  # video white


def mark_label(handle: str) -> str:
    """What the mark says for a creator's handle."""
    return f"AI · @{handle.strip().lstrip('@')}"


@dataclass(frozen=True)
class _Patch:
    """The label, pre-multiplied for the blends: alpha 0..256 and the colour it adds."""

    alpha: np.ndarray  # uint16 h x w, 0..256
    luma: np.ndarray  # uint16 h x w: Y * alpha
    chroma_alpha: np.ndarray  # uint16 h/2 x w/2
    rgb: np.ndarray  # uint16 h x w x 3: RGB * alpha


class VisibleMark:
    """The mark for one video: `apply(frame, index)` blends it into frame number `index`.

    width and height are the frame's (even, as yuv420p needs); fps places each frame on the
    mark's path, so the mark moves at the same speed at any frame rate.
    """

    def __init__(self, handle: str, width: int, height: int, fps: float) -> None:
        if not handle.strip().lstrip("@"):
            raise ValueError("the mark needs the creator's handle")
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.label = mark_label(handle)
        self.width, self.height, self.fps = width, height, fps
        self._patch = _draw(self.label, width, height)
        self.mark_height, self.mark_width = self._patch.alpha.shape

    def box(self, index: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the mark in frame `index`; even, for chroma."""
        t = index / self.fps
        margin_x = max(2, int(self.width * _MARGIN_FRACTION))
        margin_y = max(2, int(self.height * _MARGIN_FRACTION))
        room_x = max(0, self.width - self.mark_width - 2 * margin_x)
        room_y = max(0, self.height - self.mark_height - 2 * margin_y)
        fx = 0.5 - 0.5 * math.cos(2 * math.pi * t / _PERIOD_X_S)
        fy = 0.5 - 0.5 * math.cos(2 * math.pi * t / _PERIOD_Y_S + 1.3)
        # inside the frame even when the mark is nearly as wide (or tall) as the frame
        left = min(margin_x + round(room_x * fx), self.width - self.mark_width) & ~1
        top = min(margin_y + round(room_y * fy), self.height - self.mark_height) & ~1
        return top, top + self.mark_height, left, left + self.mark_width

    def apply(self, frame: np.ndarray, index: int, pixel_format: str) -> np.ndarray:
        """The frame with the mark blended in: in place when the array is writable, else a
        copy. pixel_format is "rgb24" (H x W x 3) or "yuv420p" (planar, (H * 3 // 2) x W)."""
        if not frame.flags.writeable:
            frame = frame.copy()
        top, bottom, left, right = self.box(index)
        patch = self._patch
        h, w = bottom - top, right - left
        if pixel_format == "rgb24":
            region = frame[top:bottom, left:right]
            mixed = region.astype(np.uint16)
            mixed *= (256 - patch.alpha[:h, :w])[..., None]
            mixed += patch.rgb[:h, :w]
            mixed >>= 8
            region[:] = mixed
            return frame
        if pixel_format != "yuv420p":
            raise ValueError(f"unsupported pixel format {pixel_format!r}")
        height, width = self.height, self.width
        y_plane = frame[:height]
        u_plane = frame[height : height + height // 4].reshape(height // 2, width // 2)
        v_plane = frame[height + height // 4 :].reshape(height // 2, width // 2)
        _blend(y_plane[top:bottom, left:right], patch.alpha[:h, :w], patch.luma[:h, :w])
        ca = patch.chroma_alpha[: h // 2, : w // 2]
        neutral = ca * 128
        for plane in (u_plane, v_plane):
            _blend(plane[top // 2 : bottom // 2, left // 2 : right // 2], ca, neutral)
        return frame


def _blend(region: np.ndarray, alpha: np.ndarray, premultiplied: np.ndarray) -> None:
    mixed = region.astype(np.uint16)
    mixed *= 256 - alpha
    mixed += premultiplied
    mixed >>= 8
    region[:] = mixed


def _draw(label: str, width: int, height: int) -> _Patch:
    """The label on its pill, as an even-sized patch no larger than the frame."""
    size = max(11, min(width, height) // 22)
    font = ImageFont.load_default(size=size)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), label, font=font)
    pad_x, pad_y = size // 2, size // 3
    w = min(width, right - left + 2 * pad_x) & ~1
    h = min(height, bottom - top + 2 * pad_y) & ~1
    pill = Image.new("L", (w, h), 0)
    ImageDraw.Draw(pill).rounded_rectangle((0, 0, w - 1, h - 1), radius=h // 2, fill=_PILL_ALPHA)
    text = Image.new("L", (w, h), 0)
    ImageDraw.Draw(text).text((pad_x - left, pad_y - top), label, font=font, fill=255)
    pill_a = np.asarray(pill, dtype=np.float32) / 255
    text_a = np.asarray(text, dtype=np.float32) / 255
    # text over the pill: alpha and colour of the composite (the pill is black)
    alpha = text_a + pill_a * (1 - text_a)
    white = np.divide(text_a, alpha, out=np.zeros_like(alpha), where=alpha > 0)
    alpha256 = np.rint(alpha * 256).astype(np.uint16)
    luma = np.rint(16 + white * (_TEXT_LUMA - 16)).astype(np.uint16)
    rgb = np.rint(white * 255).astype(np.uint16)
    chroma_alpha = alpha256.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).astype(np.uint16)
    return _Patch(
        alpha=alpha256,
        luma=luma * alpha256,
        chroma_alpha=chroma_alpha,
        rgb=rgb[..., None].repeat(3, axis=2) * alpha256[..., None],
    )
