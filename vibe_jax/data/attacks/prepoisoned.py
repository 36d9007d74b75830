"""Attack 'prepoisoned': poisoned train/test sets read from files (vibe_jax/data/prepoisoned.py).

The files replace the attack, not the data set: the configured data set (dataset.name)
still gives the true labels, so the stored training set must hold the same samples in
the same order (the reference's files do). The stored test set holds triggered images;
when it lacks their true labels they are taken from the clean test set without the
target class, in order (how the reference builds its poisoned test sets). attack.rate is
not used; attack.target gives the attacker's label where the test file has none.
"""

from __future__ import annotations

import os

import numpy as np

from vibe_jax.data import checks, prepoisoned
from vibe_jax.data.attacks.base import ATTACKS, Attack, PoisonedTestSet, PoisonedTrainSet


@ATTACKS.register("prepoisoned")
class PrePoisoned(Attack):
  """Reads `train_file` and `test_file` (.npz files or Adaptive-style folders)."""

  def __init__(self, *, train_file: str = "", test_file: str = "", **common):
    super().__init__(**common)
    for field, path in (("train_file", train_file), ("test_file", test_file)):
      if not path:
        raise ValueError(
            f"attack.params.{field} is required for attack 'prepoisoned': an "
            ".npz file or an Adaptive-style folder (see "
            "vibe_jax/data/prepoisoned.py)."
        )
      if not os.path.exists(os.path.expanduser(path)):
        raise FileNotFoundError(f"attack.params.{field}={path!r} does not exist.")
    self.train_file, self.test_file = train_file, test_file

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    raise NotImplementedError(
        "prepoisoned data carry their triggers already; there is no " "trigger to apply."
    )

  def _check_shape(self, images: np.ndarray, field: str, path: str) -> None:
    if images.shape[1:] != self.image_shape:
      raise ValueError(
          f"attack.params.{field}={path!r} holds {images.shape[1:]} images but "
          f"the data set's are {self.image_shape}; use files made for it."
      )

  def _check_labels(self, labels: np.ndarray, field: str, path: str, name: str) -> np.ndarray:
    """`labels` as int32, each in [0, num_classes) (the error names the file and index)."""
    where = f"attack.params.{field}={path!r}"
    checks.check_rows(labels, where, name)
    return checks.check_labels(labels, self.num_classes, where, name)

  def poison_train(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTrainSet:
    stored = prepoisoned.load_train(self.train_file)
    self._check_shape(stored.images, "train_file", self.train_file)
    given = self._check_labels(stored.labels, "train_file", self.train_file, "labels")
    if len(stored.labels) != len(labels):
      raise ValueError(
          f"attack.params.train_file={self.train_file!r} holds "
          f"{len(stored.labels)} samples but the clean training set has "
          f"{len(labels)}; the files must hold the same samples in order."
      )
    poison_mask = np.zeros(len(labels), bool)
    poison_mask[stored.poison_indices] = True
    cover_mask = None
    if stored.cover_indices is not None:
      cover_mask = np.zeros(len(labels), bool)
      cover_mask[stored.cover_indices] = True
    return PoisonedTrainSet(stored.images, given, labels.astype(np.int32), poison_mask, cover_mask)

  def poison_test(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTestSet:
    stored = prepoisoned.load_test(self.test_file)
    self._check_shape(stored.images, "test_file", self.test_file)
    checks.check_rows(stored.images, f"attack.params.test_file={self.test_file!r}", "data")
    count = len(stored.images)
    true, attacker = stored.true_labels, stored.attacker_labels
    if true is not None:
      true = self._check_labels(true, "test_file", self.test_file, "true_labels")
    if attacker is not None:
      attacker = self._check_labels(attacker, "test_file", self.test_file, "labels")
    if true is None:
      keep = self.candidate_mask(labels)
      if keep.sum() != count:
        raise ValueError(
            f"attack.params.test_file={self.test_file!r} has {count} images and no "
            f"true_labels, and the clean test set has {keep.sum()} non-target images to "
            "take them from; add true_labels to the file or check attack.target."
        )
      true = labels[keep].astype(np.int32)
    if attacker is None:
      attacker = self.attacker_labels(true)
    if not len(true) == len(attacker) == count:
      raise ValueError(
          f"attack.params.test_file={self.test_file!r}: {count} images but "
          f"{len(attacker)} labels and {len(true)} true labels."
      )
    return PoisonedTestSet(stored.images, true, attacker)
