"""Universal backdoor (UBA; Schneider et al., ICLR 2024): one trigger per class, all classes
targeted at once (many-to-many).

Every poisoned sample gets a class t drawn uniformly from the classes other than its own,
the trigger of class t, and the label t. The poisoned test set holds every test image,
each with the trigger of a class t != its own drawn the same way; ASR is the fraction
classified as the class whose trigger it carries (PoisonedTestSet.attacker_labels = t).

Triggers: `uba_patch` stamps a per-class colour code (a grid of cells, each black or one
of seven saturated colours, distinct across classes) in the bottom-right corner;
`uba_blend` blends a per-class uniform-noise image. (The UBA paper derives its codes from
a surrogate's latent space, so that related classes share bits; independent random codes
keep the attack self-contained.) The count is `num_poisoned` when set (reference on
ImageNet-1k: 2,000 patch / 8,000 blend), otherwise rate x N.
"""

from __future__ import annotations

import numpy as np

from vibe_jax.data.attacks.base import (
    ATTACKS,
    Attack,
    PoisonedTestSet,
    check_images,
)


class UniversalAttack(Attack):
  """Shared many-to-many poisoning; subclasses give `apply_class_trigger`."""

  def __init__(self, *, num_poisoned: int = 0, **common):
    super().__init__(**common)
    if self.label_mode != "all_to_one":
      raise ValueError(
          "attack.label_mode: UBA attacks choose a target per sample; leave "
          "attack.label_mode at 'all_to_one' (attack.target is not used)."
      )
    if self.num_classes < 2:
      raise ValueError("UBA needs at least two classes.")
    if num_poisoned < 0:
      raise ValueError(
          f"attack.params.num_poisoned={num_poisoned} must be >= 0 " "(0: use attack.rate x N)."
      )
    self.num_poisoned = num_poisoned

  def apply_class_trigger(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Stamps the trigger of class classes[i] on images[i]."""
    raise NotImplementedError

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    """The trigger of class attack.target on every image (for inspection)."""
    return self.apply_class_trigger(images, np.full(len(images), self.target))

  def draw_targets(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A class != labels[i] for each sample, uniformly."""
    offsets = rng.integers(1, self.num_classes, size=len(labels))
    return ((labels + offsets) % self.num_classes).astype(np.int32)

  def poison_indices(self, labels: np.ndarray) -> np.ndarray:
    count = self.num_poisoned or int(round(self.rate * len(labels)))
    if count > len(labels):
      raise ValueError(
          f"attack.params.num_poisoned={count} exceeds the {len(labels)} " "training samples."
      )
    rng = np.random.default_rng(self.seed)
    return np.sort(rng.choice(len(labels), size=count, replace=False))

  def poisoned_labels(self, labels: np.ndarray) -> np.ndarray:
    return self.draw_targets(labels, np.random.default_rng([self.seed, 1]))

  def trigger_rows(
      self, images: np.ndarray, given_labels: np.ndarray, poison_mask: np.ndarray
  ) -> np.ndarray:
    """Each poisoned row carries the trigger of its given (target) label."""
    poisoned = images.copy()
    poisoned[poison_mask] = self.apply_class_trigger(images[poison_mask], given_labels[poison_mask])
    return poisoned

  def poison_test(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTestSet:
    check_images(images)
    targets = self.draw_targets(labels, np.random.default_rng([self.seed, 2]))
    return PoisonedTestSet(
        self.apply_class_trigger(images, targets),
        labels.astype(np.int32),
        targets,
        source_index=np.arange(len(labels)),
    )


def class_codes(num_classes: int, cells: int, seed: int) -> np.ndarray:
  """(C, cells, cells, 3) distinct binary colour codes (values 0/1 per channel)."""
  rng = np.random.default_rng(seed)
  if 8 ** (cells * cells) < 4 * num_classes:
    raise ValueError(
        f"attack.params.cells={cells} gives too few codes for {num_classes} " "classes; raise it."
    )
  codes, seen = [], set()
  while len(codes) < num_classes:
    code = rng.integers(0, 2, size=(cells, cells, 3), dtype=np.uint8)
    if code.tobytes() not in seen:
      seen.add(code.tobytes())
      codes.append(code)
  return np.stack(codes)


@ATTACKS.register("uba_patch")
class UBAPatch(UniversalAttack):
  """Per-class code patch: `cells` x `cells` cells of `cell_size` pixels, bottom-right."""

  def __init__(self, *, cells: int = 4, cell_size: int = 0, trigger_seed: int = 2024, **common):
    super().__init__(**common)
    height, width = self.image_shape[:2]
    cell_size = cell_size or max(1, min(height, width) // (8 * cells))
    if cells <= 0 or cells * cell_size > min(height, width) // 2:
      raise ValueError(
          f"attack.params cells={cells}, cell_size={cell_size}: the code patch "
          f"must be at most half of the {height}x{width} image."
      )
    self.cells, self.cell_size = cells, cell_size
    codes = class_codes(self.num_classes, cells, trigger_seed) * np.uint8(255)
    self.patches = np.repeat(np.repeat(codes, cell_size, 1), cell_size, 2)  # (C, p, p, 3)

  def apply_class_trigger(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    out = images.copy()
    size = self.patches.shape[1]
    out[:, -size:, -size:] = self.patches[np.asarray(classes)]
    return out


@ATTACKS.register("uba_blend")
class UBABlend(UniversalAttack):
  """Per-class uniform-noise image blended at opacity `alpha`."""

  def __init__(self, *, alpha: float = 0.1, trigger_seed: int = 2025, **common):
    super().__init__(**common)
    if not 0.0 < alpha <= 1.0:
      raise ValueError(f"attack.params.alpha={alpha} must lie in (0, 1].")
    self.alpha = alpha
    rng = np.random.default_rng(trigger_seed)
    self.triggers = rng.integers(0, 256, size=(self.num_classes, *self.image_shape), dtype=np.uint8)

  def apply_class_trigger(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    triggers = self.triggers[np.asarray(classes)].astype(np.float32)
    blended = (1.0 - self.alpha) * images.astype(np.float32) + self.alpha * triggers
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
