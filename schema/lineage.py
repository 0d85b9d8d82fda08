"""Remix lineage: the Clip fields that walk the remix graph, and remixTree."""

from __future__ import annotations

import strawberry

__all__ = ["ClipLineageFields", "LineageQueries"]


@strawberry.type
class ClipLineageFields:
    """Mixed into Clip: root, lineage, remixes, remixCount, forkDepth."""


@strawberry.type
class LineageQueries:
    """Mixed into Query: remixTree."""
