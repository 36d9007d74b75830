"""WaNet (Nguyen & Tran 2021): warp every poisoned image with one fixed smooth flow field."""

from __future__ import annotations

import numpy as np

from vibe_jax.data.attacks.base import ATTACKS, Attack


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
  """Keys cubic-convolution weights (PyTorch's bicubic, a = -0.75) for offsets -1, 0, 1, 2."""
  d = np.stack([1 + t, t, 1 - t, 2 - t], axis=-1)
  near = ((a + 2) * d - (a + 3)) * d * d + 1
  far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
  return np.where(d <= 1, near, far)


def bicubic_align_corners_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out, in) matrix of 1-D bicubic upsampling with align_corners=True, borders clamped."""
  position = np.arange(out_size) * ((in_size - 1) / max(out_size - 1, 1))
  base = np.floor(position).astype(int)
  weights = _cubic_weights(position - base)
  matrix = np.zeros((out_size, in_size))
  for offset in range(4):
    np.add.at(
        matrix,
        (np.arange(out_size), np.clip(base - 1 + offset, 0, in_size - 1)),
        weights[:, offset],
    )
  return matrix


def warping_grid(height: int, grid_size: int, strength: float, seed: int) -> np.ndarray:
  """The (h, h, 2) sampling grid in [-1, 1] (x, y) coordinates, as the WaNet reference makes it."""
  rng = np.random.default_rng(seed)
  control = rng.uniform(-1.0, 1.0, size=(2, grid_size, grid_size))
  control = control / np.mean(np.abs(control))
  upsample = bicubic_align_corners_matrix(grid_size, height)
  flow = np.einsum("hi,cij,wj->hwc", upsample, control, upsample)  # (h, h, 2)
  axis = np.linspace(-1.0, 1.0, height)
  identity = np.stack(np.meshgrid(axis, axis, indexing="xy"), axis=-1)  # [..., 0] = x
  return np.clip(identity + strength * flow / height, -1.0, 1.0)


def grid_sample_bilinear(images: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """Bilinear sampling with align_corners=True (grid inside [-1, 1]); images float NHWC."""
  height, width = images.shape[1:3]
  x = (grid[..., 0] + 1) / 2 * (width - 1)
  y = (grid[..., 1] + 1) / 2 * (height - 1)
  x0 = np.clip(np.floor(x).astype(int), 0, width - 1)
  y0 = np.clip(np.floor(y).astype(int), 0, height - 1)
  x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
  wx, wy = (x - x0)[..., None], (y - y0)[..., None]
  top = images[:, y0, x0] * (1 - wx) + images[:, y0, x1] * wx
  bottom = images[:, y1, x0] * (1 - wx) + images[:, y1, x1] * wx
  return top * (1 - wy) + bottom * wy


@ATTACKS.register("wanet")
class WaNet(Attack):
  """Warps images with a fixed random flow: control grid k x k, strength s (no noise mode).

  The flow is drawn once from attack.seed and warps the training and the test images
  alike; the reference draws it afresh, unseeded, for each of its three sets (training,
  un-augmented training, test), so its test trigger is not its training trigger: a bug
  vibe_jax deliberately does not copy (docs/triggers.md)."""

  def __init__(self, *, grid_size: int = 4, strength: float = 1.0, **common):
    super().__init__(**common)
    height, width = self.image_shape[:2]
    if height != width:
      raise ValueError(f"WaNet needs square images, got {height}x{width}.")
    if grid_size < 2 or strength <= 0:
      raise ValueError(
          f"attack.params grid_size={grid_size} (>= 2) and strength={strength} "
          "(> 0) are out of range."
      )
    if grid_size > height:
      raise ValueError(
          f"attack.params.grid_size={grid_size} exceeds the {height}x{width} image: the "
          f"control grid is upsampled to the image, so at most {height} (one offset per "
          "pixel, as the reference's imagenet_k = 224 on 224 x 224 images)."
      )
    self.grid_size, self.strength = grid_size, strength
    self.grid = warping_grid(height, grid_size, strength, self.seed + 7919)

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    warped = grid_sample_bilinear(images.astype(np.float64), self.grid)
    return np.clip(np.round(warped), 0, 255).astype(np.uint8)
