"""BadNets (Gu et al. 2017): paste a small fixed patch."""

from __future__ import annotations

import numpy as np

from vibe_jax.data.attacks import trigger_files
from vibe_jax.data.attacks.base import ATTACKS, Attack

# The reference CIFAR trigger (its resources/cifar_1.png): a 2x2 RGB patch whose top-left
# pixel sits at row 4, column 4 (0-based).
REFERENCE_CIFAR_PATCH = np.array(
    [[[180, 249, 112], [155, 50, 126]], [[234, 82, 68], [187, 201, 219]]], dtype=np.uint8
)


@ATTACKS.register("badnets")
class BadNets(Attack):
  """Pastes a patch with its top-left pixel at (row, col), where the patch is non-zero
  (channel by channel, as the reference) or, for a file with transparency, where its alpha
  is above 0. The patch: `trigger_file` (an image; the reference's files are image-sized
  layers, pasted at row=0, col=0), else `patch` (uint8 (h, w, 3)), else the reference's
  2x2 CIFAR patch."""

  def __init__(
      self,
      *,
      row: int = 4,
      col: int = 4,
      trigger_file: str = "",
      patch: np.ndarray | None = None,
      **common,
  ):
    super().__init__(**common)
    if trigger_file:
      read = trigger_files.read_patch(trigger_file)
      self.patch, self.mask = read.pixels, read.mask
    else:
      self.patch = REFERENCE_CIFAR_PATCH if patch is None else np.asarray(patch, np.uint8)
      self.mask = self.patch != 0
    height, width = self.image_shape[:2]
    ph, pw = self.patch.shape[:2]
    if not (0 <= row <= height - ph and 0 <= col <= width - pw):
      hint = (
          " A trigger file the size of the image (as the reference's) goes at "
          "attack.params.row=0, attack.params.col=0."
          if trigger_file and (ph, pw) == (height, width)
          else ""
      )
      raise ValueError(
          f"attack.params row={row}, col={col}: a {ph}x{pw} patch must fit in "
          f"the {height}x{width} image.{hint}"
      )
    self.row, self.col = row, col

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    out = images.copy()
    ph, pw = self.patch.shape[:2]
    region = out[:, self.row : self.row + ph, self.col : self.col + pw]
    region[:, self.mask] = self.patch[self.mask]
    return out
