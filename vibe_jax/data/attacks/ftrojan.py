"""FTrojan (Wang et al., ECCV 2022): a fixed bump on chosen DCT frequencies of the chroma.

The trigger lives in the frequency domain: RGB -> YUV, a blockwise orthonormal 2-D DCT
of the chosen channels, `magnitude` added at the chosen (row, column) frequencies of every
block, inverse DCT, YUV -> RGB, round and clip. Every step before the clip is linear, so
the whole edit is one fixed additive RGB pattern: we compute it once (through the DCT
pipeline above) and add it; the result equals the pipeline up to float rounding.

YUV here is full-range BT.601 YCbCr (the JPEG transform), what FTrojan's code gets from
OpenCV's RGB->YCrCb and calls "YUV"; U = Cb, V = Cr. The DCT runs on the 0..255 scale,
as OpenCV's cv2.dct (orthonormal) does in the reference.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from vibe_jax.data.attacks.base import ATTACKS, Attack

# Rows give Y, U (Cb), V (Cr) from R, G, B (offsets 0/128/128 drop out of a difference).
RGB_TO_YUV = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
YUV_TO_RGB = np.linalg.inv(RGB_TO_YUV)
_CHANNEL_INDEX = {"y": 0, "u": 1, "v": 2}


def parse_positions(text: str) -> list[tuple[int, int]]:
  """'15,15 31,31' -> [(15, 15), (31, 31)]: (row, column) frequencies within a block."""
  try:
    positions = [tuple(int(v) for v in item.split(",")) for item in text.split()]
  except ValueError:
    positions = []
  if not positions or any(len(p) != 2 for p in positions):
    raise ValueError(
        f"attack.params.positions={text!r}: write space-separated row,column "
        "pairs, e.g. '15,15 31,31'."
    )
  return positions


def frequency_perturbation(
    image_shape: tuple[int, int, int],
    *,
    block_size: int,
    positions: list[tuple[int, int]],
    channels: str,
    magnitude: float,
) -> np.ndarray:
  """The (h, w, 3) float RGB pattern that adds `magnitude` to the chosen block-DCT
  coefficients of the chosen YUV channels."""
  height, width = image_shape[:2]
  coefficients = np.zeros((height, width, 3))
  for channel in channels:
    for row, col in positions:
      coefficients[row::block_size, col::block_size, _CHANNEL_INDEX[channel]] = magnitude
  blocks = coefficients.reshape(
      height // block_size, block_size, width // block_size, block_size, 3
  )
  yuv = scipy.fft.idctn(blocks, axes=(1, 3), norm="ortho").reshape(height, width, 3)
  return yuv @ YUV_TO_RGB.T


@ATTACKS.register("ftrojan")
class FTrojan(Attack):
  """Adds a fixed frequency-domain trigger (defaults: FTrojan's CIFAR setting)."""

  def __init__(
      self,
      *,
      magnitude: float = 30.0,
      block_size: int = 32,
      positions: str = "15,15 31,31",
      channels: str = "uv",
      **common,
  ):
    super().__init__(**common)
    height, width = self.image_shape[:2]
    if block_size <= 0 or height % block_size or width % block_size:
      raise ValueError(
          f"attack.params.block_size={block_size} must divide the {height}x{width} "
          "image (32 for CIFAR and 224-pixel ImageNet, 8 for 8-pixel multiples)."
      )
    self.positions = parse_positions(positions)
    if any(not (0 <= r < block_size and 0 <= c < block_size) for r, c in self.positions):
      raise ValueError(
          f"attack.params.positions={positions!r} must lie inside a "
          f"{block_size}x{block_size} block (0..{block_size - 1})."
      )
    if not channels or set(channels) - set(_CHANNEL_INDEX) or len(set(channels)) != len(channels):
      raise ValueError(
          f"attack.params.channels={channels!r}: use distinct letters of 'yuv', "
          "e.g. 'uv' (FTrojan's default)."
      )
    if magnitude <= 0:
      raise ValueError(f"attack.params.magnitude={magnitude} must be positive (FTrojan: 30).")
    self.magnitude, self.block_size, self.channels = magnitude, block_size, channels
    self.perturbation = frequency_perturbation(
        self.image_shape,
        block_size=block_size,
        positions=self.positions,
        channels=channels,
        magnitude=magnitude,
    )

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    poisoned = images.astype(np.float64) + self.perturbation
    return np.clip(np.round(poisoned), 0, 255).astype(np.uint8)
