"""Video renderers: a model-free CPU preview and diffusers' LTX-Video.

Importing this package never imports torch or diffusers; the diffusers renderer (and its
model) loads only when asked for and first used.
"""

from __future__ import annotations

from functools import lru_cache

from workers.renderers.base import RenderCancelled, Renderer, RenderSpec

__all__ = ["RenderCancelled", "RenderSpec", "Renderer", "get_renderer"]


def get_renderer(name: str, model: str) -> Renderer:
    """The process-wide renderer for a settings pair (model is ignored by "preview")."""
    if name == "preview":
        model = ""
    return _cached_renderer(name, model)


@lru_cache(maxsize=4)
def _cached_renderer(name: str, model: str) -> Renderer:
    if name == "preview":
        from workers.renderers.preview import PreviewRenderer

        return PreviewRenderer()
    if name == "diffusers":
        from workers.renderers.diffusion import DiffusersRenderer

        return DiffusersRenderer(model)
    raise ValueError(f"unknown renderer {name!r}: expected 'preview' or 'diffusers'")
