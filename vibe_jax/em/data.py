"""The training set as the EM loop sees it: inputs and given labels sharded over the mesh."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from vibe_jax import parallel
from vibe_jax.data import rows as rows_lib

__all__ = ["TrainData", "shard_training_data"]


@dataclasses.dataclass(frozen=True)
class TrainData:
  """Training inputs (features or images) and given labels, padded to divide over the
  devices and sharded on rows; the first `num_valid` rows are real. The true labels and
  the poison mask (host arrays, real rows only) serve the diagnostics. `augment` (key, raw
  batch) -> model inputs is the M-step's training transform, `preprocess` raw batch -> model
  inputs the eval transform of the whole-set passes; both None for frozen features."""

  inputs: jax.Array
  given_labels: jax.Array
  num_valid: int
  true_labels: np.ndarray
  poison_mask: np.ndarray
  augment: Callable | None = None
  preprocess: Callable | None = None

  @property
  def valid(self) -> jax.Array:
    return jnp.arange(self.inputs.shape[0]) < self.num_valid


def shard_training_data(
    inputs: np.ndarray | rows_lib.Rows,
    given_labels: np.ndarray,
    true_labels: np.ndarray,
    poison_mask: np.ndarray,
    mesh: Mesh,
    *,
    augment: Callable | None = None,
    preprocess: Callable | None = None,
) -> TrainData:
  """Pads the rows to a multiple of the device count (repeating the last) and shards them
  over the mesh; `inputs` given as Rows are read only where this process's devices need them."""
  num_valid = len(given_labels)
  padded = parallel.padded_length(num_valid, mesh)
  index = np.minimum(np.arange(padded), num_valid - 1)
  pad = lambda a: rows_lib.take(a, index)
  return TrainData(
      inputs=parallel.shard_rows(pad(inputs), mesh),
      given_labels=parallel.shard_rows(pad(given_labels.astype(np.int32)), mesh),
      num_valid=num_valid,
      true_labels=np.asarray(true_labels),
      poison_mask=np.asarray(poison_mask, bool),
      augment=augment,
      preprocess=preprocess,
  )
