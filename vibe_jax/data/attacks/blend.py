"""Blend (Chen et al. 2017): x' = (1 - alpha) x + alpha t with a fixed trigger image t."""

from __future__ import annotations

import numpy as np

from vibe_jax.data.attacks.base import ATTACKS, Attack


def noise_trigger(image_shape: tuple[int, int, int], seed: int = 1234) -> np.ndarray:
  """A deterministic uniform-noise trigger image (the reference's hello-kitty image is not
  redistributable; random noise is the other trigger of Chen et al.)."""
  return np.random.default_rng(seed).integers(0, 256, size=image_shape, dtype=np.uint8)


@ATTACKS.register("blend")
class Blend(Attack):
  """Blends every poisoned image with a fixed trigger image at opacity `alpha`."""

  def __init__(self, *, alpha: float = 0.1, trigger_seed: int = 1234, **common):
    super().__init__(**common)
    if not 0.0 < alpha <= 1.0:
      raise ValueError(f"attack.params.alpha={alpha} must lie in (0, 1].")
    self.alpha = alpha
    self.trigger = noise_trigger(self.image_shape, trigger_seed)

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    blended = (1.0 - self.alpha) * images.astype(np.float32) + self.alpha * self.trigger
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
