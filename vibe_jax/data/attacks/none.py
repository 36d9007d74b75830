"""No attack: a data owner's training set as given, for `--mode defend` on data whose
poison (if any) nobody has marked."""

from __future__ import annotations

import numpy as np

from vibe_jax.data.attacks.base import ATTACKS, Attack, PoisonedTestSet


@ATTACKS.register("none")
class NoAttack(Attack):
  """Keeps every label and image (the poison mask is all False) and triggers no test
  image: the poisoned test set is empty, so a run reports ACC (on a validation set, when
  there is one) but no ASR or RA. attack.rate, target and label_mode are not used."""

  plants_backdoor = False

  def poison_labels(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return labels.astype(np.int32).copy(), np.zeros(len(labels), bool)

  def trigger_rows(
      self, images: np.ndarray, given_labels: np.ndarray, poison_mask: np.ndarray
  ) -> np.ndarray:
    return images

  def poison_test(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTestSet:
    empty = labels[:0].astype(np.int32)
    return PoisonedTestSet(images[:0], empty, empty)
