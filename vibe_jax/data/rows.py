"""Rows of a training set read on demand, so each host of a multi-host job reads, poisons
and holds only the rows its own devices train on."""

from __future__ import annotations

from typing import Callable

import numpy as np


class Rows:
  """An (N, ...) array whose rows are produced by `read(indices)` when asked for.

  Indexing with what `jax.make_array_from_callback` passes (a tuple of slices over the
  leading axis) reads just those rows, so a sharded array built from Rows makes each
  process read only the rows of its addressable devices.
  """

  def __init__(
      self,
      read: Callable[[np.ndarray], np.ndarray],
      length: int,
      row_shape: tuple[int, ...],
      dtype: np.dtype,
  ):
    self._read = read
    self.shape = (length, *row_shape)
    self.dtype = np.dtype(dtype)

  def __len__(self) -> int:
    return self.shape[0]

  def read(self, indices: np.ndarray) -> np.ndarray:
    """The rows at `indices` (int array), as one numpy array."""
    indices = np.asarray(indices, np.int64)
    if len(indices) == 0:
      return np.zeros((0, *self.shape[1:]), self.dtype)
    return np.asarray(self._read(indices), self.dtype)

  def take(self, indices: np.ndarray) -> "Rows":
    """The rows at `indices`, in that order, still unread (a filtered or padded view)."""
    indices = np.asarray(indices, np.int64)
    return Rows(lambda i: self.read(indices[i]), len(indices), self.shape[1:], self.dtype)

  def __getitem__(self, index) -> np.ndarray:
    leading, *rest = index if isinstance(index, tuple) else (index,)
    rows = self.read(np.arange(len(self))[leading].reshape(-1))
    return rows[(slice(None), *rest)] if rest else rows


def as_rows(array: np.ndarray | Rows) -> Rows:
  """`array` as Rows (an in-memory array reads by indexing)."""
  if isinstance(array, Rows):
    return array
  return Rows(lambda indices: array[indices], len(array), array.shape[1:], array.dtype)


def take(array: np.ndarray | Rows, indices: np.ndarray) -> np.ndarray | Rows:
  """The rows at `indices`: indexed now for an array, a still unread view for Rows."""
  return array.take(indices) if isinstance(array, Rows) else array[indices]
