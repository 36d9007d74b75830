"""E-step snapshots: what the E-step saw and decided, for the feature-projection plot.

At the first and the last E-step of a VIBE run, `EstepSnapshots` (an `on_estep` callback of
`em.loop.fit`) saves workdir/snapshots/estep_<step>.npz with

  features        (n, D) float16  training features, L2-normalised (the head compares
                                  directions only); eval mode for a fine-tuned backbone
  given_labels, true_labels, pseudo_labels   (n,) int32
  poison_mask     (n,) bool
  indices         (n,) int64      rows of the training set (after any Leiden filter)
  mu_z, mu_y      (C, D) float32  the prototypes at that E-step
  step            ()   int64

where n <= max_points is one fixed random subset, the same rows in every snapshot. Every
process computes (the features may span hosts); process 0 writes.
"""

from __future__ import annotations

import glob
import os
import re

import jax
import numpy as np

from vibe_jax import files, parallel
from vibe_jax.em import inference
from vibe_jax.em.data import TrainData
from vibe_jax.models.vibe import VibeModel
from vibe_jax.normalize import l2_normalize

__all__ = ["EstepSnapshots", "estep_iterations", "load_snapshots", "MAX_POINTS"]

MAX_POINTS = 5000
_NAME = re.compile(r"estep_(\d+)\.npz$")


def estep_iterations(steps: int, period: int) -> list[int]:
  """The iterations at which `em.loop.fit` runs an E-step: 0, period, 2 period, ... < steps."""
  return list(range(0, steps, period))


def _replicated_to_host(array: jax.Array) -> np.ndarray:
  """A replicated (possibly multi-host) array's value, read from a local copy."""
  return np.asarray(array.addressable_data(0))


class EstepSnapshots:
  """Saves snapshots at the first and the last scheduled E-step (the last one is known in
  advance, so an interrupted run simply lacks it)."""

  def __init__(
      self,
      directory: str,
      data: TrainData,
      steps: int,
      period: int,
      max_points: int = MAX_POINTS,
      seed: int = 0,
      batch_size: int = 1024,
  ):
    iterations = estep_iterations(steps, period)
    self.snapshot_steps = {iterations[0], iterations[-1]} if iterations else set()
    self._directory = directory
    self._data = data
    self._batch_size = batch_size
    count = min(max_points, data.num_valid)
    rng = np.random.default_rng(seed)
    self._indices = np.sort(rng.choice(data.num_valid, count, replace=False))
    given = parallel.to_host(data.given_labels)[: data.num_valid]
    self._labels = {
        "given_labels": given[self._indices].astype(np.int32),
        "true_labels": data.true_labels[self._indices].astype(np.int32),
        "poison_mask": data.poison_mask[self._indices].astype(bool),
    }

  def __call__(self, step: int, model: VibeModel, pseudo_labels: jax.Array) -> None:
    if step not in self.snapshot_steps:
      return
    features = parallel.to_host(
        inference.head_features(model, self._data.inputs, self._batch_size, self._data.preprocess)
    )
    pseudo = parallel.to_host(pseudo_labels)
    if jax.process_index() != 0:
      return
    features = features[: self._data.num_valid][self._indices].astype(np.float32)
    os.makedirs(self._directory, exist_ok=True)
    path = os.path.join(self._directory, f"estep_{step}.npz")
    files.save_npz_atomically(
        path,
        features=l2_normalize(features).astype(np.float16),
        pseudo_labels=pseudo[: self._data.num_valid][self._indices].astype(np.int32),
        indices=self._indices,
        step=np.int64(step),
        mu_z=_replicated_to_host(model.head.mu_z[...]).astype(np.float32),
        mu_y=_replicated_to_host(model.head.mu_y[...]).astype(np.float32),
        **self._labels,
    )


def load_snapshots(directory: str) -> list[dict[str, np.ndarray]]:
  """Every snapshot in `directory`, by E-step iteration (an empty list when none)."""
  found = []
  for path in glob.glob(os.path.join(directory, "estep_*.npz")):
    match = _NAME.search(path)
    if match:
      with np.load(path) as npz:
        found.append((int(match.group(1)), {key: npz[key] for key in npz.files}))
  return [snapshot for _, snapshot in sorted(found, key=lambda item: item[0])]
