"""The attack interface: a trigger plus the label the attacker wants, and the registry."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np

from vibe_jax.data.rows import Rows
from vibe_jax.registry import Registry

LABEL_MODES = ("all_to_one", "all_to_all")


@dataclasses.dataclass(frozen=True)
class PoisonedTrainSet:
  """A poisoned training set; `labels` are the given (possibly flipped) labels.

  `poison_mask` marks the samples the attacker poisoned to plant the backdoor (for a
  clean-label attack they keep their label). `cover_mask`, when not None, marks the
  "regularisation" samples of adaptive attacks: they carry a trigger but keep their true
  label, so they are not in `poison_mask` (the E-step diagnostics count restored labels).
  """

  images: np.ndarray | Rows  # Rows: read on demand (per-host loading)
  labels: np.ndarray
  true_labels: np.ndarray
  poison_mask: np.ndarray
  cover_mask: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class PoisonedTestSet:
  """Triggered test images with their true labels and the labels the attacker wants.

  Several attacks at once (attack 'multi') also fill `attack_index` (int (N,), which of
  `attack_names` triggered each image), so metrics can report an ASR per attack.
  `source_index` (int (N,)): the clean test image each one was made from, so the report can
  show and measure the trigger; None where unknown (pre-poisoned files).
  """

  images: np.ndarray
  true_labels: np.ndarray
  attacker_labels: np.ndarray
  attack_index: np.ndarray | None = None
  attack_names: tuple[str, ...] = ()
  source_index: np.ndarray | None = None


class Attack:
  """A dirty-label trigger attack over uint8 NHWC arrays.

  Subclasses implement `apply_trigger` (pure and deterministic given the constructor's
  seed); attacks with other poisoning schemes (clean-label, cover samples) override
  `poison_train` / `poison_test`. Keyword parameters are the attack's own knobs
  (config field attack.params): keyword-only arguments of the subclass constructor.
  `plants_backdoor` is False only for attack 'none' (a data owner's own data): its
  poisoned test set is empty and ASR / RA are not scored. `caches_poison`: see below.
  """

  plants_backdoor = True
  # Whether the poisoned training set is worth caching in the workdir (a surrogate
  # trained inside the attack): experiment.build_experiment.
  caches_poison = False

  def __init__(
      self,
      *,
      num_classes: int,
      image_shape: tuple[int, int, int],
      target: int,
      rate: float,
      label_mode: str = "all_to_one",
      seed: int = 0,
  ):
    if label_mode not in LABEL_MODES:
      raise ValueError(f"attack.label_mode={label_mode!r}; use one of {LABEL_MODES}.")
    if not 0.0 < rate < 1.0:
      raise ValueError(f"attack.rate={rate} must lie in (0, 1), e.g. 0.1 for 10 %.")
    if label_mode == "all_to_one" and not 0 <= target < num_classes:
      raise ValueError(
          f"attack.target={target} must lie in [0, {num_classes}) for an all-to-one attack."
      )
    self.num_classes = num_classes
    self.image_shape = tuple(image_shape)
    self.target = target
    self.rate = rate
    self.label_mode = label_mode
    self.seed = seed

  # -- to implement ------------------------------------------------------------------
  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  # -- shared behaviour ----------------------------------------------------------------
  def attacker_labels(self, labels: np.ndarray) -> np.ndarray:
    """The label the attacker wants for triggered images of true class `labels`."""
    if self.label_mode == "all_to_all":
      return ((labels + 1) % self.num_classes).astype(np.int32)
    return np.full_like(labels, self.target, dtype=np.int32)

  def candidate_mask(self, labels: np.ndarray) -> np.ndarray:
    """Samples an attacker may poison (and that enter the poisoned test set)."""
    if self.label_mode == "all_to_all":
      return np.ones(labels.shape, bool)
    return labels != self.target

  def poison_indices(self, labels: np.ndarray) -> np.ndarray:
    """rate x N indices (N = all samples), drawn from the candidate samples."""
    candidates = np.flatnonzero(self.candidate_mask(labels))
    count = int(round(self.rate * len(labels)))
    if count > len(candidates):
      raise ValueError(
          f"attack.rate={self.rate} asks for {count} poisoned samples but only "
          f"{len(candidates)} non-target samples exist; lower attack.rate."
      )
    rng = np.random.default_rng(self.seed)
    return np.sort(rng.choice(candidates, size=count, replace=False))

  def poison_labels(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The given labels and the poison mask of a training set with true `labels`."""
    indices = self.poison_indices(labels)
    given = labels.astype(np.int32).copy()
    given[indices] = self.poisoned_labels(labels[indices])
    mask = np.zeros(len(labels), bool)
    mask[indices] = True
    return given, mask

  def poisoned_labels(self, labels: np.ndarray) -> np.ndarray:
    """The labels poisoned training samples of true class `labels` are given."""
    return self.attacker_labels(labels)

  def trigger_rows(
      self, images: np.ndarray, given_labels: np.ndarray, poison_mask: np.ndarray
  ) -> np.ndarray:
    """Some training rows with the trigger stamped on those the mask marks (the arrays are
    those rows' entries of `poison_labels`); each row depends on nothing else."""
    poisoned = images.copy()
    poisoned[poison_mask] = self.apply_trigger(images[poison_mask])
    return poisoned

  @classmethod
  def poisons_row_by_row(cls) -> bool:
    """Whether training images are poisoned one by one from a plan drawn from the labels
    alone (poison_labels + trigger_rows), so a host can poison only the rows it loads."""
    return cls.poison_train is Attack.poison_train

  def poison_train(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTrainSet:
    check_images(images)
    given, mask = self.poison_labels(labels)
    return PoisonedTrainSet(
        self.trigger_rows(images, given, mask), given, labels.astype(np.int32), mask
    )

  def poison_train_rows(self, images: Rows, labels: np.ndarray) -> PoisonedTrainSet:
    """poison_train on images read on demand: the same plan, each row poisoned as it is
    read (attacks for which poisons_row_by_row() holds)."""
    if not self.poisons_row_by_row():
      raise ValueError(
          f"attack {type(self).__name__} poisons from the whole training set and cannot "
          "poison rows one host at a time; set parallel.per_host_loading=False."
      )
    given, mask = self.poison_labels(labels)
    poisoned = Rows(
        lambda i: self.trigger_rows(images.read(i), given[i], mask[i]),
        len(images),
        images.shape[1:],
        np.uint8,
    )
    return PoisonedTrainSet(poisoned, given, labels.astype(np.int32), mask)

  def poison_test(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTestSet:
    check_images(images)
    keep = self.candidate_mask(labels)
    return PoisonedTestSet(
        self.apply_trigger(images[keep]),
        labels[keep].astype(np.int32),
        self.attacker_labels(labels[keep]),
        source_index=np.flatnonzero(keep),
    )


def check_images(images: np.ndarray) -> None:
  """Attacks work on uint8 NHWC RGB arrays; anything else is a caller error."""
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"Attacks take uint8 NHWC RGB arrays, got {images.dtype} {images.shape}.")


ATTACKS: Registry[type[Attack]] = Registry("attack")


def make_attack(
    name: str,
    *,
    num_classes: int,
    image_shape: tuple[int, int, int],
    target: int,
    rate: float,
    label_mode: str = "all_to_one",
    seed: int = 0,
    params: dict[str, Any] | None = None,
) -> Attack:
  """Builds a registered attack; `params` are its own knobs (config field attack.params)."""
  cls = ATTACKS.get(name, field="attack.name")
  params = dict(params or {})
  own = attack_parameters(cls)
  unknown = sorted(set(params) - set(own))
  if unknown:
    raise ValueError(
        f"attack.params {unknown} are not parameters of attack {name!r}; "
        f"it takes {sorted(own) or 'none'}."
    )
  return cls(
      num_classes=num_classes,
      image_shape=image_shape,
      target=target,
      rate=rate,
      label_mode=label_mode,
      seed=seed,
      **params,
  )


def attack_parameters(cls: type[Attack]) -> dict[str, Any]:
  """The attack's own keyword parameters and their defaults, including those of its
  intermediate base classes (e.g. cover_rate of the adaptive attacks)."""
  shared = set(inspect.signature(Attack.__init__).parameters)
  own: dict[str, Any] = {}
  for klass in reversed(cls.__mro__):
    if isinstance(klass, type) and issubclass(klass, Attack) and klass is not Attack:
      own.update(
          {
              name: p.default
              for name, p in inspect.signature(klass.__init__).parameters.items()
              if name not in shared and p.kind == p.KEYWORD_ONLY
          }
      )
  return own
