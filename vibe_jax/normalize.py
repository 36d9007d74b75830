"""Row L2 normalisation, one definition for host (numpy) and device (jax) arrays.

It imports neither library, so benchmarks/common.py can use it before jax starts.
"""

from __future__ import annotations

from typing import TypeVar

Array = TypeVar("Array")


def l2_normalize(x: Array, axis: int = -1, eps: float = 1e-12) -> Array:
  """x / max(||x||, eps) along `axis` (torch's F.normalize).

  Computed with the input's own library (its `__array_namespace__`): numpy arrays stay on
  the host with numpy's arithmetic, jax arrays and tracers stay on device with jax's.
  """
  xp = x.__array_namespace__()
  return x / xp.maximum(xp.linalg.norm(x, axis=axis, keepdims=True), eps)
