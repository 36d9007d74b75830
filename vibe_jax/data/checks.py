"""Checks of labels and features where they enter a run (data sets, features files,
pre-poisoned files), each failing with one line that names the source, the array and the
first bad index.

Why here and not downstream: a label past the class count silently widens the model (one
label 50 made 51 classes; one label 1,000,000 grew memory until the process was killed), a
float label was truncated, a negative one indexed from the end, a NaN feature reached the
E-step as a NaN loss far from its cause.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_finite", "check_labels", "check_rows"]


def check_rows(array: np.ndarray, where: str, name: str) -> None:
  """At least one row."""
  if len(array) == 0:
    raise ValueError(f"{where}: {name} has no rows; it needs at least one.")


def check_labels(labels: np.ndarray, num_classes: int, where: str, name: str) -> np.ndarray:
  """`labels` as int32 after checking: 1-D, integer dtype, every value in [0, num_classes)."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"{where}: {name} has shape {labels.shape}; labels are one per row (N,).")
  if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
        f"{where}: {name} has dtype {labels.dtype}; labels must be integers (class indices)."
    )
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if len(bad):
    raise ValueError(
        f"{where}: {name}[{bad[0]}] = {labels[bad[0]]} is not a class index in "
        f"[0, {num_classes}) ({len(bad)} such label(s))."
    )
  return labels.astype(np.int32)


def check_finite(features: np.ndarray, where: str, name: str) -> None:
  """Every value finite (no NaN or inf)."""
  finite = np.isfinite(features)
  if not finite.all():
    row = int(np.flatnonzero(~finite.reshape(len(features), -1).all(axis=1))[0])
    raise ValueError(
        f"{where}: {name}[{row}] holds a non-finite value (NaN or inf); features must be " "finite."
    )
