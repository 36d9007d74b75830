"""Data sets, attacks and poisoning."""

from vibe_jax.data import (  # noqa: F401  (registers every data set loader by name)
    datasets,
    idx,
    own_data,
)
