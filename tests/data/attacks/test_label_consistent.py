"""The label-consistent attack: clean labels, bounded PGD, the corner triggers."""

import numpy as np
import pytest

from helpers.attacks import attack


def class_images(n=200, shape=(16, 16, 3), seed=0):
  """Learnable toy classes: class c brightens a horizontal band c of the image."""
  rng = np.random.default_rng(seed)
  labels = (np.arange(n) % 10).astype(np.int32)
  images = rng.integers(40, 120, size=(n, *shape)).astype(np.int64)
  for i, c in enumerate(labels):
    images[i, c : c + 3] += 100
  return images.clip(0, 255).astype(np.uint8), labels


def test_label_consistent_clean_label_pgd_and_corners():
  images, labels = class_images()
  lc = attack("label_consistent", rate=0.5, shape=images.shape[1:])
  out = lc.poison_train(images, labels)
  poisoned = np.flatnonzero(out.poison_mask)
  assert len(poisoned) == 10 and np.all(labels[poisoned] == 0)  # half of the 20 zeros
  np.testing.assert_array_equal(out.labels, labels)  # no label flipped
  corner = np.zeros((16, 16), bool)
  for rows in (slice(0, 3), slice(13, 16)):
    for cols in (slice(0, 3), slice(13, 16)):
      corner[rows, cols] = True
  checker = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]]) * 255
  for i in poisoned:
    for corner_cells in (
        out.images[i, :3, :3],
        out.images[i, :3, -3:],
        out.images[i, -3:, :3],
        out.images[i, -3:, -3:],
    ):
      np.testing.assert_array_equal(corner_cells, np.repeat(checker[..., None], 3, -1))
  delta = out.images[poisoned].astype(int) - images[poisoned]
  assert np.abs(delta[:, ~corner]).max() <= 16 and np.abs(delta[:, ~corner]).max() > 0
  adversarial = lc.adversarial_images(images[poisoned], labels[poisoned], images, labels)
  assert np.abs(adversarial.astype(int) - images[poisoned]).max() <= 16  # before stamping
  test = lc.poison_test(images, labels)
  assert np.all(test.true_labels != 0) and np.all(test.attacker_labels == 0)
  np.testing.assert_array_equal(test.images[:, ~corner], images[labels != 0][:, ~corner])


def test_label_consistent_rate_is_a_fraction_of_the_target_class():
  images, labels = class_images()
  with pytest.raises(ValueError, match="fraction of the 20 target-class"):
    attack("label_consistent", rate=0.01, shape=images.shape[1:]).poison_train(images, labels)
  with pytest.raises(ValueError, match="all_to_one"):
    attack("label_consistent", label_mode="all_to_all")
