"""Apply a function over fixed-size batches: the one batched pass (features, predictions,
ln P), with the last batch padded so every call has one shape and compiles once."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["batched_apply"]


def batched_apply(fn: Callable, batch_size: int, *arrays):
  """fn(*batches) over consecutive rows of `arrays` (equal lengths), concatenated.

  The last batch is padded by repeating its last row, and its padding dropped from the
  output. Host arrays stay on the host (numpy in, numpy out); device arrays stay on device.
  """
  on_device = isinstance(arrays[0], jax.Array)
  xp = jnp if on_device else np
  total = arrays[0].shape[0]
  batch_size = min(batch_size, total)
  outputs = []
  for start in range(0, total, batch_size):
    chunk = [a[start : start + batch_size] for a in arrays]
    pad = batch_size - chunk[0].shape[0]
    if pad:
      chunk = [xp.concatenate([c, xp.repeat(c[-1:], pad, axis=0)]) for c in chunk]
    out = fn(*chunk)
    out = out if on_device else np.asarray(out)
    outputs.append(out[: batch_size - pad] if pad else out)
  return xp.concatenate(outputs)
