"""Attack 'backdoorbench': the poison of a BackdoorBench attack record
(vibe_jax/data/backdoorbench.py), on the configured clean data set.

BackdoorBench saves only the poisoned samples, so the configured data set (dataset.name,
the record's `clean_data`, in BackdoorBench's order, which for CIFAR is the original
files') supplies the clean ones; each poisoned sample's original label must match it (a
record of another data set or split fails here). The poisoned test set is the record's
(its triggered images, with their original and attacker labels). attack.rate, target and
label_mode are not used: the record fixes them.
"""

from __future__ import annotations

import numpy as np

from vibe_jax.data import backdoorbench
from vibe_jax.data.attacks.base import ATTACKS, Attack, PoisonedTestSet, PoisonedTrainSet
from vibe_jax.data.rows import Rows


@ATTACKS.register("backdoorbench")
class BackdoorBenchRecord(Attack):
  """Reads `record`, a BackdoorBench record folder (record/<name>/)."""

  def __init__(self, *, record: str = "", **common):
    super().__init__(**common)
    if not record:
      raise ValueError(
          "attack.params.record is required for attack 'backdoorbench': a BackdoorBench "
          "record folder holding attack_result.pt and bd_train_dataset/."
      )
    self.record = backdoorbench.load_record(record)
    where = f"attack.params.record={record!r}"
    if self.record.num_classes and self.record.num_classes != self.num_classes:
      raise ValueError(
          f"{where} was made on {self.record.clean_data!r} with {self.record.num_classes} "
          f"classes but the configured data set has {self.num_classes}; set dataset.name "
          "to the record's data set."
      )
    self.where = where

  @classmethod
  def poisons_row_by_row(cls) -> bool:
    return True  # each host swaps in the saved images of its own rows

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    raise NotImplementedError("a BackdoorBench record carries its poisoned images already.")

  def _check_split(self, split: backdoorbench.PoisonedSplit, labels: np.ndarray, name: str):
    if split.size != len(labels):
      raise ValueError(
          f"{self.where}: its {name} split has {split.size} samples but the configured "
          f"data set's has {len(labels)}; set dataset.name to the record's data set "
          f"({self.record.clean_data!r})."
      )
    wrong = np.flatnonzero(labels[split.indices] != split.original_labels)
    if len(wrong):
      i = split.indices[wrong[0]]
      raise ValueError(
          f"{self.where}: {name} sample {i} has original label {split.original_labels[wrong[0]]} "
          f"in the record but {labels[i]} in the configured data set: the record was made "
          "on another data set or sample order."
      )
    bad = split.given_labels[(split.given_labels < 0) | (split.given_labels >= self.num_classes)]
    if len(bad):
      raise ValueError(
          f"{self.where}: {name} labels {bad[:3]} lie outside [0, {self.num_classes})."
      )

  def _swap_in(self, rows: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """`rows` (the clean rows at `indices`) with the poisoned ones replaced by the record's."""
    split = self.record.train
    if not len(split.indices):
      return rows
    where_poisoned = np.searchsorted(split.indices, indices)
    hit = (where_poisoned < len(split.indices)) & (
        split.indices[np.minimum(where_poisoned, len(split.indices) - 1)] == indices
    )
    if not hit.any():
      return rows
    saved = backdoorbench.read_images([split.image_paths[k] for k in where_poisoned[hit]])
    if saved.shape[1:] != rows.shape[1:]:
      raise ValueError(
          f"{self.where}: its images are {saved.shape[1:]} but the data set's are "
          f"{rows.shape[1:]}; set dataset.name (and its image size) to the record's."
      )
    rows = np.array(rows, copy=True)
    rows[hit] = saved
    return rows

  def _train_labels(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    split = self.record.train
    self._check_split(split, labels, "bd_train")
    given = labels.astype(np.int32).copy()
    given[split.indices] = split.given_labels
    mask = np.zeros(len(labels), bool)
    mask[split.indices] = True
    return given, mask

  def poison_train(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTrainSet:
    given, mask = self._train_labels(labels)
    poisoned = self._swap_in(images, np.arange(len(images)))
    return PoisonedTrainSet(poisoned, given, labels.astype(np.int32), mask)

  def poison_train_rows(self, images: Rows, labels: np.ndarray) -> PoisonedTrainSet:
    given, mask = self._train_labels(labels)
    poisoned = Rows(
        lambda i: self._swap_in(images.read(i), np.asarray(i, np.int64)),
        len(images),
        images.shape[1:],
        np.uint8,
    )
    return PoisonedTrainSet(poisoned, given, labels.astype(np.int32), mask)

  def poison_test(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTestSet:
    split = self.record.test
    self._check_split(split, labels, "bd_test")
    triggered = backdoorbench.read_images(split.image_paths)
    if triggered.shape[1:] != images.shape[1:]:
      raise ValueError(
          f"{self.where}: its test images are {triggered.shape[1:]} but the data set's are "
          f"{images.shape[1:]}; set dataset.name (and its image size) to the record's."
      )
    return PoisonedTestSet(
        triggered, split.original_labels.astype(np.int32), split.given_labels.astype(np.int32)
    )
