"""FTrojan (VIBE_SPEC.md section 4): the DCT coefficients it changes, against a DCT written here."""

import numpy as np
import pytest

from helpers.attacks import SHAPE, attack, data

# -- an independent reference ---------------------------------------------------------------


def dct_matrix(n: int) -> np.ndarray:
  """Orthonormal DCT-II matrix, written out from its definition (not scipy)."""
  k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
  matrix[0] /= np.sqrt(2.0)
  return matrix


def rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
  """JPEG (full-range BT.601) luma / blue / red chroma, without offsets."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  y = 0.299 * r + 0.587 * g + 0.114 * b
  return np.stack([y, (b - y) / 1.772, (r - y) / 1.402], axis=-1)


def blockwise_dct(channel: np.ndarray, block: int) -> np.ndarray:
  """(n, h, w) -> per-block 2-D DCT coefficients, same layout."""
  d = dct_matrix(block)
  n, h, w = channel.shape
  blocks = channel.reshape(n, h // block, block, w // block, block)
  coefficients = np.einsum("ki,nbiBj,lj->nbkBl", d, blocks, d)
  return coefficients.reshape(n, h, w)


@pytest.mark.parametrize("block,positions", [(32, "15,15 31,31"), (16, "7,7 15,15")])
def test_ftrojan_changes_exactly_the_chosen_dct_coefficients(block, positions):
  ftrojan = attack("ftrojan", magnitude=30.0, block_size=block, positions=positions)
  expected = np.zeros(SHAPE[:2])
  for pos in positions.split():
    r, c = map(int, pos.split(","))
    expected[r::block, c::block] = 30.0
  # The pattern before rounding: +30 at the chosen frequencies of U and V, nothing else.
  yuv = rgb_to_yuv(ftrojan.perturbation[None])
  for channel, want in ((0, np.zeros_like(expected)), (1, expected), (2, expected)):
    np.testing.assert_allclose(blockwise_dct(yuv[..., channel], block)[0], want, atol=1e-4)
  # Applied to images that do not clip, the uint8 change is that pattern rounded; its
  # measured coefficients stay within the rounding error of the intended ones.
  images, _ = data(8, low=60, high=196)
  change = ftrojan.apply_trigger(images).astype(np.float64) - images
  np.testing.assert_array_equal(
      change, np.broadcast_to(np.round(ftrojan.perturbation), change.shape)
  )
  measured = blockwise_dct(rgb_to_yuv(change)[..., 1], block)[0]
  assert np.all(np.abs(measured - expected) < 2.5)
  assert np.all(measured[expected > 0] > 27.0)


def test_ftrojan_clips_to_uint8_and_validates():
  black, white = np.zeros((2, *SHAPE), np.uint8), np.full((2, *SHAPE), 255, np.uint8)
  for images in (black, white):
    out = attack("ftrojan", magnitude=100.0).apply_trigger(images)
    assert out.dtype == np.uint8 and out.shape == images.shape
  with pytest.raises(ValueError, match="block_size"):
    attack("ftrojan", block_size=24)
  with pytest.raises(ValueError, match="positions"):
    attack("ftrojan", positions="32,0")
  with pytest.raises(ValueError, match="channels"):
    attack("ftrojan", channels="uq")
