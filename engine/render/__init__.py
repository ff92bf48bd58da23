"""Rendering: model frames and videos, camera paths, static-model depth export."""
