"""Adaptive-Blend and Adaptive-Patch (VIBE_SPEC.md section 4): counts, cover samples, pieces."""

import numpy as np
import pytest

from helpers.attacks import SHAPE, attack, data


@pytest.mark.parametrize("name", ["adaptive_blend", "adaptive_patch"])
def test_adaptive_counts_and_cover_samples_keep_labels(name):
  images, labels = data(400)
  out = attack(name, rate=0.05, cover_rate=0.03).poison_train(images, labels)
  poison, cover = out.poison_mask, out.cover_mask
  assert poison.sum() == 20 and cover.sum() == 12 and not (poison & cover).any()
  assert np.all(out.labels[poison] == 0) and np.all(labels[poison] != 0)
  np.testing.assert_array_equal(out.labels[cover], labels[cover])  # cover: true labels
  changed = np.any(out.images != images, axis=(1, 2, 3))
  assert changed[cover].all() and changed[poison].all()


def test_adaptive_blend_pieces_and_alphas():
  images, labels = data(200)
  blend = attack("adaptive_blend", rate=0.1, cover_rate=0.05)
  out = blend.poison_train(images, labels)
  x = images.astype(np.float64)
  weak = np.round(x + 0.15 * (blend.trigger - x))
  for i in np.flatnonzero(out.poison_mask | out.cover_mask):
    kept = 0
    for r in range(0, 32, 8):
      for c in range(0, 32, 8):
        piece = out.images[i, r : r + 8, c : c + 8]
        if np.array_equal(piece, images[i, r : r + 8, c : c + 8]):
          continue
        np.testing.assert_allclose(piece, weak[i, r : r + 8, c : c + 8], atol=1)
        kept += 1
    assert kept == 8  # half of the 16 pieces left out
  full = blend.apply_trigger(images[:5])
  np.testing.assert_allclose(full, np.round(x[:5] + 0.2 * (blend.trigger - x[:5])), atol=1)


def test_adaptive_patch_subset_at_train_all_at_test():
  images, labels = data(200)
  patch = attack("adaptive_patch", rate=0.1, patches_per_sample=2, train_alpha=0.5)
  regions = [(r, c) for r, c in patch.positions]
  size = patch.patch_size
  inside = np.zeros(SHAPE[:2], bool)
  for r, c in regions:
    inside[r : r + size, c : c + size] = True
  out = patch.poison_train(images, labels)
  for i in np.flatnonzero(out.poison_mask):
    np.testing.assert_array_equal(out.images[i][~inside], images[i][~inside])
    touched = [
        not np.array_equal(
            out.images[i, r : r + size, c : c + size], images[i, r : r + size, c : c + size]
        )
        for r, c in regions
    ]
    assert sum(touched) == 2
  full = patch.apply_trigger(images[:3])
  for k, (r, c) in enumerate(regions):  # test_alpha 1: the patch itself
    np.testing.assert_array_equal(
        full[:, r : r + size, c : c + size], np.broadcast_to(patch.patches[k], (3, size, size, 3))
    )
