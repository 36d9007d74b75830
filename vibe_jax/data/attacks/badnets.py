"""BadNets (Gu et al. 2017): paste a small fixed patch."""

from __future__ import annotations

import numpy as np

from vibe_jax.data.attacks.base import ATTACKS, Attack

# The reference CIFAR trigger (its resources/cifar_1.png): a 2x2 RGB patch whose top-left
# pixel sits at row 4, column 4 (0-based).
REFERENCE_CIFAR_PATCH = np.array(
    [[[180, 249, 112], [155, 50, 126]], [[234, 82, 68], [187, 201, 219]]], dtype=np.uint8
)


@ATTACKS.register("badnets")
class BadNets(Attack):
  """Pastes `patch` (uint8 (h, w, 3)) at (row, col) wherever the patch is non-zero."""

  def __init__(self, *, row: int = 4, col: int = 4, patch: np.ndarray | None = None, **common):
    super().__init__(**common)
    self.patch = REFERENCE_CIFAR_PATCH if patch is None else np.asarray(patch, np.uint8)
    height, width = self.image_shape[:2]
    ph, pw = self.patch.shape[:2]
    if not (0 <= row <= height - ph and 0 <= col <= width - pw):
      raise ValueError(
          f"attack.params row={row}, col={col}: a {ph}x{pw} patch must fit in "
          f"the {height}x{width} image."
      )
    self.row, self.col = row, col

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    out = images.copy()
    ph, pw = self.patch.shape[:2]
    region = out[:, self.row : self.row + ph, self.col : self.col + pw]
    paste = np.any(self.patch > 0, axis=-1)
    region[:, paste] = self.patch[paste]
    return out
