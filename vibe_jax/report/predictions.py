"""predictions.npz: each model's test-set predictions and the labels they are scored against.

Written at the end of a run (process 0) so that the report can draw confusion matrices
without the models:

  <model>_clean, <model>_poisoned   (n,) int32, for model in baseline / vibe
  clean_labels                      (n_clean,) true labels of the clean test set
  poisoned_true_labels              (n_poisoned,) true labels of the triggered test images
  poisoned_attacker_labels          (n_poisoned,) the labels the attacker wants
  num_classes                       ()
"""

from __future__ import annotations

import os

import numpy as np

from vibe_jax import files

__all__ = ["load_predictions", "save_predictions"]


def save_predictions(
    path: str,
    predictions: dict[str, dict[str, np.ndarray]],
    *,
    clean_labels: np.ndarray,
    poisoned_true_labels: np.ndarray,
    poisoned_attacker_labels: np.ndarray,
    num_classes: int,
) -> None:
  """`predictions[model][split]` for split in clean / poisoned; written atomically."""
  arrays = {
      f"{model}_{split}": np.asarray(labels, np.int32)
      for model, by_split in predictions.items()
      for split, labels in by_split.items()
  }
  arrays.update(
      clean_labels=np.asarray(clean_labels, np.int32),
      poisoned_true_labels=np.asarray(poisoned_true_labels, np.int32),
      poisoned_attacker_labels=np.asarray(poisoned_attacker_labels, np.int32),
      num_classes=np.int64(num_classes),
  )
  files.save_npz_atomically(path, **arrays)


def load_predictions(path: str) -> dict[str, np.ndarray] | None:
  """The arrays of `path`, or None when the run has not written it (yet)."""
  if not os.path.exists(path):
    return None
  with np.load(path) as npz:
    return {key: npz[key] for key in npz.files}
