"""Media files: probing uploaded and rendered video."""

from media.probe import VideoInfo, probe_video

__all__ = ["VideoInfo", "probe_video"]
