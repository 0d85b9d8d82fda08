"""Celery workers: the app, the render task, renderers and video encoding."""
