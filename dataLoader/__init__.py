"""Data side of the toolkit: poses, normalization, rays, frame caches, depth targets."""
