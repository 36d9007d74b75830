"""Blend (Chen et al. 2017): x' = (1 - alpha) x + alpha t with a fixed trigger image t."""

from __future__ import annotations

import numpy as np

from vibe_jax.data.attacks import trigger_files
from vibe_jax.data.attacks.base import ATTACKS, Attack


def noise_trigger(image_shape: tuple[int, int, int], seed: int = 1234) -> np.ndarray:
  """A deterministic uniform-noise trigger image (the reference's hello-kitty image is not
  redistributable; random noise is the other trigger of Chen et al.)."""
  return np.random.default_rng(seed).integers(0, 256, size=image_shape, dtype=np.uint8)


@ATTACKS.register("blend")
class Blend(Attack):
  """Blends every poisoned image with a fixed trigger image at opacity `alpha`: the image
  in `trigger_file` resized to the image size (docs/triggers.md), else uniform noise drawn
  from `trigger_seed`."""

  def __init__(
      self, *, alpha: float = 0.1, trigger_seed: int = 1234, trigger_file: str = "", **common
  ):
    super().__init__(**common)
    if not 0.0 < alpha <= 1.0:
      raise ValueError(f"attack.params.alpha={alpha} must lie in (0, 1].")
    self.alpha = alpha
    height, width = self.image_shape[:2]
    self.trigger = (
        trigger_files.read_blend_image(trigger_file, height, width)
        if trigger_file
        else noise_trigger(self.image_shape, trigger_seed)
    )

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    # The reference's arithmetic, so its trigger files give its pixels exactly: float32
    # in [0, 1], blended, scaled back and truncated (torch's .byte()), not rounded.
    scale = np.float32(255)
    blended = (images.astype(np.float32) / scale) * np.float32(1.0 - self.alpha) + (
        self.trigger.astype(np.float32) / scale
    ) * np.float32(self.alpha)
    return np.clip(blended * scale, 0, 255).astype(np.uint8)
