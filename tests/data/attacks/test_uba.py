"""UBA-Patch and UBA-Blend: one trigger per class, many-to-many flips."""

import numpy as np

from helpers.attacks import attack, data


def test_uba_patch_one_distinct_code_per_class():
  uba = attack("uba_patch")
  size = uba.patches.shape[1]
  flat = uba.patches.reshape(10, -1)
  assert len({row.tobytes() for row in flat}) == 10
  images, labels = data(300)
  out = uba.poison_train(images, labels)
  poisoned = np.flatnonzero(out.poison_mask)
  assert len(poisoned) == 30
  assert np.all(out.labels[poisoned] != labels[poisoned])
  for i in poisoned:
    np.testing.assert_array_equal(out.images[i, -size:, -size:], uba.patches[out.labels[i]])
  test = uba.poison_test(images, labels)
  assert len(test.images) == len(images)  # every test image, trigger of another class
  for image, t in zip(test.images, test.attacker_labels):
    np.testing.assert_array_equal(image[-size:, -size:], uba.patches[t])
  assert set(test.attacker_labels) == set(range(10))


def test_uba_blend_formula_and_count():
  uba = attack("uba_blend", alpha=0.1, num_poisoned=25)
  assert len({t.tobytes() for t in uba.triggers}) == 10
  images, labels = data(200)
  out = uba.poison_train(images, labels)
  poisoned = np.flatnonzero(out.poison_mask)
  assert len(poisoned) == 25
  x = images[poisoned].astype(np.float64)
  expected = np.round(0.9 * x + 0.1 * uba.triggers[out.labels[poisoned]])
  np.testing.assert_allclose(out.images[poisoned], expected, atol=1)
