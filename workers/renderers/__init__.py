"""Video renderers: a model-free CPU preview, diffusers' LTX-Video ("diffusers") and LTX-2
with its own audio ("diffusers-av"), or any class by path.

Importing this package never imports torch or diffusers; the diffusers renderer (and its
model) loads only when asked for and first used. A name of the form "package.module:Class"
names a renderer class to construct with no arguments (another model, or the tests' gated
renderer).
"""

from __future__ import annotations

import importlib
from functools import lru_cache

from workers.renderers.base import RenderCancelled, Renderer, RenderSpec

__all__ = ["RenderCancelled", "RenderSpec", "Renderer", "get_renderer"]


def get_renderer(
    name: str, model: str, *, resolution: tuple[int, int] | None = None, steps: int | None = None
) -> Renderer:
    """The process-wide renderer for these settings (model and the rest are diffusers-only)."""
    if name not in ("diffusers", "diffusers-av"):
        model, resolution, steps = "", None, None
    return _cached_renderer(name, model, resolution, steps)


@lru_cache(maxsize=4)
def _cached_renderer(
    name: str, model: str, resolution: tuple[int, int] | None, steps: int | None
) -> Renderer:
    if name == "preview":
        from workers.renderers.preview import PreviewRenderer

        return PreviewRenderer()
    if name in ("diffusers", "diffusers-av"):
        from workers.renderers.diffusion import DiffusersAVRenderer, DiffusersRenderer

        options: dict = {}
        if resolution is not None:
            options["resolution"] = resolution
        if steps is not None:
            options["num_inference_steps"] = steps
        kind = DiffusersAVRenderer if name == "diffusers-av" else DiffusersRenderer
        return kind(model, **options)
    module_name, colon, class_name = name.partition(":")
    if colon and module_name and class_name:
        renderer = getattr(importlib.import_module(module_name), class_name)()
        if not isinstance(renderer, Renderer):
            raise TypeError(f"{name} is not a renderer: it has no name or render(spec, progress)")
        return renderer
    raise ValueError(
        f"unknown renderer {name!r}: expected 'preview', 'diffusers', 'diffusers-av' or "
        "'package.module:Class'"
    )
