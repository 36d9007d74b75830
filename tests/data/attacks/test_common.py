"""What every attack promises: registered, pure and deterministic, and row by row where it can."""

import numpy as np
import pytest

from helpers.attacks import NEW_ATTACKS, SHAPE, attack, data
from vibe_jax.data.attacks import ATTACKS, PoisonedTestSet, PoisonedTrainSet, attack_parameters
from vibe_jax.data.rows import as_rows


@pytest.mark.parametrize("name", NEW_ATTACKS)
def test_registered_pure_and_deterministic(name):
  images, labels = data(120)
  original = images.copy()
  first = attack(name).poison_train(images, labels)
  second = attack(name).poison_train(images, labels)
  np.testing.assert_array_equal(images, original)  # inputs untouched
  for a, b in zip(
      (first.images, first.labels, first.poison_mask),
      (second.images, second.labels, second.poison_mask),
  ):
    np.testing.assert_array_equal(a, b)
  assert first.images.dtype == np.uint8 and first.images.shape == images.shape
  np.testing.assert_array_equal(first.true_labels, labels)
  touched = first.poison_mask if first.cover_mask is None else first.poison_mask | first.cover_mask
  clean = ~touched
  np.testing.assert_array_equal(first.images[clean], images[clean])
  np.testing.assert_array_equal(first.labels[clean], labels[clean])
  test = attack(name).poison_test(images, labels)
  assert test.images.dtype == np.uint8 and test.images.shape[1:] == SHAPE
  assert len(test.images) == len(test.true_labels) == len(test.attacker_labels)
  assert np.all(test.attacker_labels != test.true_labels)
  if name != "multi":
    other = attack(name, seed=1).poison_train(images, labels)
    assert not np.array_equal(other.poison_mask, first.poison_mask)


def test_result_types_stay_backward_compatible():
  images, labels = data(4)
  mask = np.zeros(4, bool)
  assert PoisonedTrainSet(images, labels, labels, mask).cover_mask is None
  test = PoisonedTestSet(images, labels, labels)
  assert test.attack_index is None and test.attack_names == ()
  assert "cover_rate" in attack_parameters(ATTACKS.get("adaptive_blend"))
  assert "num_poisoned" in attack_parameters(ATTACKS.get("uba_patch"))


ROW_BY_ROW = ("badnets", "blend", "wanet", "ftrojan", "uba_patch", "uba_blend")


@pytest.mark.parametrize("name", ROW_BY_ROW)
def test_poisoning_rows_on_demand_equals_poisoning_the_whole_set(name):
  """Per-host loading: rows read in any order, in pieces, match poison_train's rows."""
  images, labels = data(120)
  whole = attack(name).poison_train(images, labels)
  lazy = attack(name).poison_train_rows(as_rows(images), labels)
  for field in ("labels", "true_labels", "poison_mask"):
    np.testing.assert_array_equal(getattr(lazy, field), getattr(whole, field))
  rows = np.random.default_rng(1).permutation(120)
  for piece in np.array_split(rows, 3):
    np.testing.assert_array_equal(lazy.images.read(piece), whole.images[piece])
  assert not np.array_equal(whole.images, images)  # something was poisoned


@pytest.mark.parametrize(
    "name", ["label_consistent", "adaptive_patch", "adaptive_blend", "multi", "prepoisoned"]
)
def test_attacks_that_need_the_whole_set_refuse_row_by_row_poisoning(name):
  cls = ATTACKS.get(name)
  assert not cls.poisons_row_by_row()
  images, labels = data(40)
  instance = object.__new__(cls)  # the check comes before any use of the instance
  with pytest.raises(ValueError, match="parallel.per_host_loading=False"):
    cls.poison_train_rows(instance, as_rows(images), labels)
  assert all(ATTACKS.get(row_by_row).poisons_row_by_row() for row_by_row in ROW_BY_ROW)
