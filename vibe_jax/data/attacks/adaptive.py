"""Adaptive-Blend and Adaptive-Patch (Qi et al., ICLR 2023, "Revisiting the assumption of
latent separability for backdoor defenses").

Both weaken the link between trigger and target so that poisoned samples do not form
their own cluster in feature space: at training time the trigger is only partly present
(pieces of a blend trigger, or some of several low-opacity patches), and "cover"
(regularisation) samples carry the same weak trigger but keep their correct label. At
test time the full trigger is applied.

Poison samples (label flipped) are drawn from the non-target classes, rate x N of them
(VIBE_SPEC.md section 4; Qi et al. draw from all classes); cover samples, cover_rate x N,
from the remaining samples of any class. Cover samples are marked in
PoisonedTrainSet.cover_mask, not in poison_mask.
"""

from __future__ import annotations

import math

import numpy as np

from vibe_jax.data.attacks.base import ATTACKS, Attack, PoisonedTrainSet, check_images
from vibe_jax.data.attacks.blend import noise_trigger


def _blend(images: np.ndarray, trigger: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  """x + alpha (t - x), alpha broadcast per pixel; rounded to uint8."""
  images = images.astype(np.float32)
  return np.clip(np.round(images + alpha * (trigger - images)), 0, 255).astype(np.uint8)


class AdaptiveAttack(Attack):
  """Shared poisoning scheme: weak training trigger on poison and cover samples."""

  def __init__(self, *, cover_rate: float = 0.01, **common):
    super().__init__(**common)
    if not 0.0 <= cover_rate < 1.0:
      raise ValueError(
          f"attack.params.cover_rate={cover_rate} must lie in [0, 1) "
          "(Qi et al.: 0.01, as many cover as poison samples)."
      )
    self.cover_rate = cover_rate

  def apply_train_trigger(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The weak, randomly partial training-time trigger (one random draw per image)."""
    raise NotImplementedError

  def cover_indices(self, labels: np.ndarray, poison: np.ndarray) -> np.ndarray:
    """cover_rate x N samples of any class, disjoint from the poison samples."""
    remaining = np.setdiff1d(np.arange(len(labels)), poison)
    count = int(round(self.cover_rate * len(labels)))
    if count > len(remaining):
      raise ValueError(
          f"attack.params.cover_rate={self.cover_rate} asks for {count} cover "
          f"samples but only {len(remaining)} unpoisoned samples remain."
      )
    rng = np.random.default_rng([self.seed, 1])
    return np.sort(rng.choice(remaining, size=count, replace=False))

  def poison_train(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTrainSet:
    check_images(images)
    poison = self.poison_indices(labels)
    cover = self.cover_indices(labels, poison)
    rng = np.random.default_rng([self.seed, 2])
    poisoned_images = images.copy()
    poisoned_images[poison] = self.apply_train_trigger(images[poison], rng)
    poisoned_images[cover] = self.apply_train_trigger(images[cover], rng)
    given = labels.astype(np.int32).copy()
    given[poison] = self.attacker_labels(labels[poison])
    poison_mask = np.zeros(len(labels), bool)
    poison_mask[poison] = True
    cover_mask = np.zeros(len(labels), bool)
    cover_mask[cover] = True
    return PoisonedTrainSet(
        poisoned_images, given, labels.astype(np.int32), poison_mask, cover_mask
    )


@ATTACKS.register("adaptive_blend")
class AdaptiveBlend(AdaptiveAttack):
  """Blend trigger cut into `pieces` square pieces; at training time a random
  `mask_rate` of them is left out per image and the rest blended at `train_alpha`; at
  test time the whole trigger at `test_alpha`. The trigger image is deterministic
  uniform noise (the reference's hello-kitty image is not redistributable)."""

  def __init__(
      self,
      *,
      train_alpha: float = 0.15,
      test_alpha: float = 0.2,
      pieces: int = 16,
      mask_rate: float = 0.5,
      trigger_seed: int = 1234,
      **common,
  ):
    super().__init__(**common)
    height, width = self.image_shape[:2]
    side = math.isqrt(pieces)
    if pieces <= 0 or side * side != pieces or height % side or width % side:
      raise ValueError(
          f"attack.params.pieces={pieces} must be a square number whose root "
          f"divides the {height}x{width} image (Qi et al.: 16)."
      )
    for field, alpha in (("train_alpha", train_alpha), ("test_alpha", test_alpha)):
      if not 0.0 < alpha <= 1.0:
        raise ValueError(f"attack.params.{field}={alpha} must lie in (0, 1].")
    if not 0.0 <= mask_rate < 1.0:
      raise ValueError(
          f"attack.params.mask_rate={mask_rate} must lie in [0, 1) "
          "(the fraction of pieces left out at training time; Qi et al.: 0.5)."
      )
    self.train_alpha, self.test_alpha = train_alpha, test_alpha
    self.pieces, self.side, self.mask_rate = pieces, side, mask_rate
    self.trigger = noise_trigger(self.image_shape, trigger_seed)

  def piece_masks(self, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, h, w, 1) float masks: 1 on the kept pieces of each image."""
    height, width = self.image_shape[:2]
    left_out = int(round(self.mask_rate * self.pieces))
    keep = np.ones((count, self.pieces), np.float32)
    for row in keep:
      row[rng.choice(self.pieces, size=left_out, replace=False)] = 0.0
    grid = keep.reshape(count, self.side, self.side)
    masks = np.repeat(np.repeat(grid, height // self.side, 1), width // self.side, 2)
    return masks[..., None]

  def apply_train_trigger(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _blend(images, self.trigger, self.train_alpha * self.piece_masks(len(images), rng))

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    return _blend(images, self.trigger, np.float32(self.test_alpha))


def patch_positions(
    image_shape: tuple[int, int, int], size: int, count: int, margin: int
) -> list[tuple[int, int]]:
  """Top-left corners of `count` patches: the four corners, then the edge midpoints."""
  height, width = image_shape[:2]
  bottom, right = height - margin - size, width - margin - size
  mid_row, mid_col = (height - size) // 2, (width - size) // 2
  places = [
      (margin, margin),
      (margin, right),
      (bottom, margin),
      (bottom, right),
      (margin, mid_col),
      (mid_row, margin),
      (bottom, mid_col),
      (mid_row, right),
  ]
  return places[:count]


@ATTACKS.register("adaptive_patch")
class AdaptivePatch(AdaptiveAttack):
  """`num_patches` distinct random-colour square patches at the corners (then the edge
  midpoints). Training: `patches_per_sample` of them, drawn per image, blended at
  `train_alpha`; test: all of them at `test_alpha`. (The reference uses four logo-like
  images with opacities 0.5/0.2/0.5/0.3, one per training image, and two at opacity 1 at
  test time; synthetic patches keep the project free of image assets.)"""

  def __init__(
      self,
      *,
      num_patches: int = 4,
      patch_size: int = 0,
      patches_per_sample: int = 1,
      train_alpha: float = 0.5,
      test_alpha: float = 1.0,
      trigger_seed: int = 4321,
      **common,
  ):
    super().__init__(**common)
    height, width = self.image_shape[:2]
    patch_size = patch_size or max(3, min(height, width) // 8)
    margin = max(1, min(height, width) // 32)
    if not 1 <= num_patches <= 8:
      raise ValueError(f"attack.params.num_patches={num_patches} must lie in [1, 8].")
    if not 1 <= patches_per_sample <= num_patches:
      raise ValueError(
          f"attack.params.patches_per_sample={patches_per_sample} must lie in "
          f"[1, num_patches={num_patches}]."
      )
    if 2 * (patch_size + margin) > min(height, width):
      raise ValueError(
          f"attack.params.patch_size={patch_size} is too large for the "
          f"{height}x{width} image; patches must not overlap."
      )
    for field, alpha in (("train_alpha", train_alpha), ("test_alpha", test_alpha)):
      if not 0.0 < alpha <= 1.0:
        raise ValueError(f"attack.params.{field}={alpha} must lie in (0, 1].")
    self.num_patches, self.patch_size = num_patches, patch_size
    self.patches_per_sample = patches_per_sample
    self.train_alpha, self.test_alpha = train_alpha, test_alpha
    rng = np.random.default_rng(trigger_seed)
    # Colours in [64, 255] so that no patch pixel is (near) black, the digits' background.
    self.patches = rng.integers(64, 256, size=(num_patches, patch_size, patch_size, 3))
    self.positions = patch_positions(self.image_shape, patch_size, num_patches, margin)

  def trigger_layers(self) -> tuple[np.ndarray, np.ndarray]:
    """(k, h, w, 3) trigger images and (k, h, w, 1) masks, one per patch."""
    height, width, channels = self.image_shape
    marks = np.zeros((self.num_patches, height, width, channels), np.float32)
    masks = np.zeros((self.num_patches, height, width, 1), np.float32)
    size = self.patch_size
    for k, (row, col) in enumerate(self.positions):
      marks[k, row : row + size, col : col + size] = self.patches[k]
      masks[k, row : row + size, col : col + size] = 1.0
    return marks, masks

  def _apply(self, images: np.ndarray, chosen: np.ndarray, alpha: float) -> np.ndarray:
    """Blends the chosen patches ((n, k) bool) into each image (patches do not overlap)."""
    marks, masks = self.trigger_layers()
    weight = alpha * np.einsum("nk,khwc->nhwc", chosen.astype(np.float32), masks)
    return _blend(images, marks.sum(0), weight)  # marks are zero outside their patch

  def apply_train_trigger(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    chosen = np.zeros((len(images), self.num_patches), bool)
    for row in chosen:
      row[rng.choice(self.num_patches, size=self.patches_per_sample, replace=False)] = True
    return self._apply(images, chosen, self.train_alpha)

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    return self._apply(images, np.ones((len(images), self.num_patches), bool), self.test_alpha)
