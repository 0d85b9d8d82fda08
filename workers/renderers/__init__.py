"""Video renderers: a model-free CPU preview and diffusers' LTX-Video.

Importing this package never imports torch or diffusers; the diffusers renderer (and its
model) loads only when asked for and first used.
"""

from __future__ import annotations

from functools import lru_cache

from workers.renderers.base import RenderCancelled, Renderer, RenderSpec

__all__ = ["RenderCancelled", "RenderSpec", "Renderer", "get_renderer"]


def get_renderer(
    name: str, model: str, *, resolution: tuple[int, int] | None = None, steps: int | None = None
) -> Renderer:
    """The process-wide renderer for these settings (model and the rest are diffusers-only)."""
    if name == "preview":
        model, resolution, steps = "", None, None
    return _cached_renderer(name, model, resolution, steps)


@lru_cache(maxsize=4)
def _cached_renderer(
    name: str, model: str, resolution: tuple[int, int] | None, steps: int | None
) -> Renderer:
    if name == "preview":
        from workers.renderers.preview import PreviewRenderer

        return PreviewRenderer()
    if name == "diffusers":
        from workers.renderers.diffusion import DiffusersRenderer

        options: dict = {}
        if resolution is not None:
            options["resolution"] = resolution
        if steps is not None:
            options["num_inference_steps"] = steps
        return DiffusersRenderer(model, **options)
    raise ValueError(f"unknown renderer {name!r}: expected 'preview' or 'diffusers'")
