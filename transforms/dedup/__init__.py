"""Beam building blocks of the dedup stages: connected components of a similarity graph."""
