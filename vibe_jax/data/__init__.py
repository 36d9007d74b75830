"""Data sets, attacks and poisoning."""

from vibe_jax.data import datasets, idx  # noqa: F401  (registers every data set loader by name)
