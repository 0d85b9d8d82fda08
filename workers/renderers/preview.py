"""A CPU renderer with no model: the prompt over moving colour, with a soft chord.

Everything costly (background, text overlay, audio) is computed once per clip; each frame is
a few array slices plus a blend inside the overlay's boxes, built straight in yuv420p so the
encoder needs no colour conversion.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from workers.renderers.base import ProgressCallback, RenderSpec, monotonic_progress, temp_mp4
from workers.renderers.encode import AUDIO_SAMPLE_RATE, encode_mp4

__all__ = ["PreviewRenderer"]

_MARGIN = 24
_PAD = 16
_MAX_PROMPT_LINES = 9
_MAX_BADGES = 3


@dataclass(frozen=True)
class _Patch:
    """One overlay box on one plane (0=Y, 1=U, 2=V): plane = (plane * keep + premult) >> 8."""

    plane: int
    rows: slice
    cols: slice
    keep: np.ndarray  # uint16: 256 - alpha
    premult: np.ndarray  # uint16: overlay value * alpha

    def apply(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        region = planes[self.plane][self.rows, self.cols]
        mixed = region.astype(np.uint16)
        mixed *= self.keep
        mixed += self.premult
        mixed >>= 8
        region[:] = mixed


class PreviewRenderer:
    name = "preview"

    def __init__(
        self,
        *,
        size: tuple[int, int] = (640, 384),
        fps: int = 24,
        tmp_dir: Path | None = None,
    ) -> None:
        height, width = size
        if height % 2 or width % 2 or height < 64 or width < 64:
            raise ValueError("size must be even and at least 64x64")
        self.height, self.width, self.fps = height, width, fps
        self.tmp_dir = tmp_dir

    def render(self, spec: RenderSpec, on_progress: ProgressCallback) -> Path:
        report = monotonic_progress(on_progress)
        report(0.0)
        digest = hashlib.sha256(
            f"{spec.seed}\x00{spec.prompt}\x00{','.join(spec.moods)}".encode()
        ).digest()
        n_frames = spec.duration_s * self.fps
        frames = self._frames(spec, digest, n_frames)
        audio = _chord(digest, spec.duration_s, minor=_is_minor(spec.moods))
        with temp_mp4(spec.clip_id, self.tmp_dir) as path:
            encode_mp4(
                frames,
                path,
                fps=self.fps,
                audio=audio,
                pixel_format="yuv420p",
                on_frame=lambda n: report(0.98 * n / n_frames),
                mark=spec.author_handle or None,
            )
            report(1.0)
        return path

    def _frames(self, spec: RenderSpec, digest: bytes, n_frames: int):
        h, w = self.height, self.width
        period = 2 * h  # rows per colour cycle; even so chroma rows stay aligned
        cy, cu, cv = _yuv_planes(_gradient(digest, h + period, w, period))
        patches = _overlay(spec, h, w)
        thumbs = _thumbnails(spec, h, w)
        out = np.empty((h * 3 // 2, w), dtype=np.uint8)
        planes = (
            out[:h],
            out[h : h + h // 4].reshape(h // 2, w // 2),
            out[h + h // 4 :].reshape(h // 2, w // 2),
        )
        y_plane, u_plane, v_plane = planes
        step = period / (6 * self.fps)  # one full colour cycle every six seconds
        bar_y0, bar_y1 = h - 8, h - 4

        for i in range(n_frames):
            off = (2 * round(step * i / 2)) % period
            y_plane[:] = cy[off : off + h]
            u_plane[:] = cu[off // 2 : off // 2 + h // 2]
            v_plane[:] = cv[off // 2 : off // 2 + h // 2]
            for patch in patches:
                patch.apply(planes)
            for thumb in thumbs:
                thumb.apply(planes)
            # a progress bar along the bottom makes the clip's length visible
            filled = (w * (i + 1) // n_frames) & ~1
            y_plane[bar_y0:bar_y1, :filled] = 235
            u_plane[bar_y0 // 2 : bar_y1 // 2, : filled // 2] = 128
            v_plane[bar_y0 // 2 : bar_y1 // 2, : filled // 2] = 128
            yield out


_THUMB = 96  # px, even so its chroma lines up
_THUMB_GAP = 8


@dataclass(frozen=True)
class _Thumb:
    """A featured cameo's reference frame, pasted opaque at (y, x) on every frame."""

    y: int
    x: int
    planes: tuple[np.ndarray, np.ndarray, np.ndarray]

    def apply(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        y_plane, u_plane, v_plane = planes
        ty, tu, tv = self.planes
        y_plane[self.y : self.y + _THUMB, self.x : self.x + _THUMB] = ty
        cy, cx = self.y // 2, self.x // 2
        u_plane[cy : cy + _THUMB // 2, cx : cx + _THUMB // 2] = tu
        v_plane[cy : cy + _THUMB // 2, cx : cx + _THUMB // 2] = tv


def _thumbnails(spec: RenderSpec, h: int, w: int) -> list[_Thumb]:
    """One square thumbnail per featured cameo, bottom right, from its first reference
    frame: consent-gated rendering made visible (no token, no decrypted frame, no face)."""
    thumbs: list[_Thumb] = []
    y = h - 8 - _THUMB_GAP - _THUMB  # above the progress bar
    x = w - _MARGIN - _THUMB
    for cameo in spec.cameos[:_MAX_BADGES]:
        if not cameo.frames or x < _MARGIN or y < _MARGIN:
            continue
        try:
            with Image.open(io.BytesIO(cameo.frames[0])) as image:
                square = ImageOps.fit(image.convert("RGB"), (_THUMB, _THUMB))
        except (OSError, ValueError):  # not an image: show nothing rather than fail
            continue
        rgb = np.asarray(square, dtype=np.uint8).copy()
        rgb[:2], rgb[-2:], rgb[:, :2], rgb[:, -2:] = 255, 255, 255, 255  # a white frame
        thumbs.append(_Thumb(y & ~1, x & ~1, _yuv_planes(rgb)))
        x -= _THUMB + _THUMB_GAP
    return thumbs


def _palette(digest: bytes) -> list[tuple[float, float, float]]:
    base = digest[0] / 255
    colours = []
    for k in range(3):
        hue = (base + k * (0.18 + digest[1 + k] / 255 * 0.2)) % 1.0
        sat = 0.55 + digest[4 + k] / 255 * 0.25
        val = 0.55 + digest[7 + k] / 255 * 0.25
        colours.append(colorsys.hsv_to_rgb(hue, sat, val))
    return colours


def _gradient(digest: bytes, rows: int, width: int, period: int) -> np.ndarray:
    """Diagonal bands cycling through three seeded colours, periodic in y with `period` rows."""
    palette = _palette(digest)
    colours = np.array([*palette, palette[0]], dtype=np.float32) * 255
    pos = np.linspace(0.0, 3.0, period, endpoint=False, dtype=np.float32)
    seg = pos.astype(np.int32)
    frac = pos - seg
    frac = frac * frac * (3 - 2 * frac)  # smoothstep: no visible seams between colours
    lut = colours[seg] * (1 - frac)[:, None] + colours[seg + 1] * frac[:, None]
    y = np.arange(rows, dtype=np.int32)[:, None]
    x = np.arange(width, dtype=np.int32)[None, :]
    return lut[(y + x // 2) % period].astype(np.uint8)


def _yuv_planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # the same conversion the encoder would apply, done once for the whole canvas
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    h, w = rgb.shape[:2]
    flat = frame.to_ndarray()
    y = flat[:h].copy()
    u = flat[h : h + h // 4].reshape(h // 2, w // 2).copy()
    v = flat[h + h // 4 :].reshape(h // 2, w // 2).copy()
    return y, u, v


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, max_width: int, max_lines: int) -> list[str]:
    """Greedy word wrap; over-long words are split, overflow ends in an ellipsis."""
    words = text.split()
    lines: list[str] = []
    line = ""
    i = 0
    while i < len(words) and len(lines) < max_lines:
        word = words[i]
        candidate = f"{line} {word}" if line else word
        if draw.textlength(candidate, font=font) <= max_width:
            line, i = candidate, i + 1
        elif line:
            lines.append(line)
            line = ""
        else:
            cut = len(word) - 1
            while cut > 1 and draw.textlength(word[:cut], font=font) > max_width:
                cut -= 1
            lines.append(word[:cut])
            words[i] = word[cut:]
    if line:
        lines.append(line)
    if i < len(words):
        last = lines[-1]
        while last and draw.textlength(last + "...", font=font) > max_width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "..."
    return lines or [""]


def _overlay(spec: RenderSpec, h: int, w: int) -> list[_Patch]:
    panels = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    text = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    pd, td = ImageDraw.Draw(panels), ImageDraw.Draw(text)
    boxes: list[tuple[int, int, int, int]] = []

    def pill_width(label: str, font) -> int:
        left, _, right, _ = td.textbbox((0, 0), label, font=font)
        return right - left + 20

    def pill(x: int, y: int, label: str, font) -> int:
        left, top, right, bottom = td.textbbox((0, 0), label, font=font)
        bw, bh = right - left + 20, bottom - top + 12
        pd.rounded_rectangle((x, y, x + bw, y + bh), radius=bh // 2, fill=(0, 0, 0, 140))
        td.text((x + 10 - left, y + 6 - top), label, font=font, fill=(255, 255, 255, 255))
        boxes.append((y, y + bh, x, x + bw))
        return x + bw + 8

    small = _font(16)
    x = pill(_MARGIN, _MARGIN, "PREVIEW", small)
    limit = w - _MARGIN
    labels = [f"@{label}" for label in spec.cameo_labels]
    for k, label in enumerate(labels):
        rest = len(labels) - k - 1
        more = f"+{rest}" if rest else ""
        room = limit - x - (pill_width(more, small) + 8 if more else 0)
        if k < _MAX_BADGES and pill_width(label, small) <= room:
            x = pill(x, _MARGIN, label, small)
            continue
        more = f"+{len(labels) - k}"
        if pill_width(more, small) <= limit - x:
            pill(x, _MARGIN, more, small)
        break

    body = _font(26)
    inner = w - 2 * _MARGIN - 2 * _PAD
    lines = _wrap(td, spec.prompt.strip() or "(no prompt)", body, inner, _MAX_PROMPT_LINES)
    line_h = 34
    mood_line = " · ".join(spec.moods)
    mood_font = _font(18)
    block_h = len(lines) * line_h + (28 if mood_line else 0)
    top = max(_MARGIN + 48, (h - block_h) // 2 - _PAD)
    bottom = top + block_h + 2 * _PAD
    pd.rounded_rectangle((_MARGIN, top, w - _MARGIN, bottom), radius=18, fill=(0, 0, 0, 115))
    for k, line in enumerate(lines):
        td.text(
            (_MARGIN + _PAD, top + _PAD + k * line_h), line, font=body, fill=(255, 255, 255, 255)
        )
    if mood_line:
        moods = _wrap(td, mood_line, mood_font, inner, 1)[0]
        td.text(
            (_MARGIN + _PAD, top + _PAD + len(lines) * line_h + 4),
            moods,
            font=mood_font,
            fill=(230, 230, 230, 255),
        )
    boxes.append((top, bottom, _MARGIN, w - _MARGIN))

    rgba = np.asarray(Image.alpha_composite(panels, text))
    # alpha 0..255 -> 0..256 so the blend divides by shifting; the overlay is grey, so its
    # chroma is neutral (128) and only its alpha matters on U and V
    alpha = rgba[..., 3].astype(np.uint16)
    alpha += alpha >> 7
    luma = 16 + (rgba[..., 0].astype(np.uint16) * 219 + 127) // 255
    chroma_alpha = alpha.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).astype(np.uint16)
    patches = []
    for y0, y1, x0, x1 in boxes:
        y0, x0 = y0 & ~1, x0 & ~1
        y1, x1 = min(h, (y1 + 2) & ~1), min(w, (x1 + 2) & ~1)
        rows, cols = slice(y0, y1), slice(x0, x1)
        a = alpha[rows, cols]
        patches.append(_Patch(0, rows, cols, 256 - a, luma[rows, cols] * a))
        rows, cols = slice(y0 // 2, y1 // 2), slice(x0 // 2, x1 // 2)
        a = chroma_alpha[rows, cols]
        patches += [_Patch(p, rows, cols, 256 - a, 128 * a) for p in (1, 2)]
    return patches


_MINOR_MOODS = {"sad", "melancholy", "moody", "dark", "eerie", "somber", "tense", "mysterious"}


def _is_minor(moods: tuple[str, ...]) -> bool:
    return any(m.lower() in _MINOR_MOODS for m in moods)


def _chord(digest: bytes, duration_s: int, *, minor: bool) -> np.ndarray:
    """A quiet mono triad with a slow swell, exactly duration_s long (mono: half the AAC cost)."""
    sr = AUDIO_SAMPLE_RATE
    n = duration_s * sr
    t = np.arange(n, dtype=np.float32) / sr
    root = (196.0, 220.0, 246.94, 261.63, 293.66)[digest[10] % 5]
    ratios = (1.0, 1.2 if minor else 1.25, 1.5, 0.5)
    gains = (0.5, 0.35, 0.35, 0.25)
    wave = np.zeros(n, dtype=np.float32)
    for ratio, gain in zip(ratios, gains, strict=True):
        wave += gain * np.sin((2 * np.pi * root * ratio) * t)
    swell = 0.75 + 0.25 * np.sin((2 * np.pi * 0.25) * t)
    fade = np.minimum(t / 0.3, (duration_s - t) / 0.5).clip(0.0, 1.0)
    return (wave * (0.12 * swell * fade))[None, :].astype(np.float32)
