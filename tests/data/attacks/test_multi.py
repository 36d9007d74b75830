"""Several attacks at once ('multi'): disjoint samples, own targets, validation of the parts."""

import numpy as np
import pytest

from helpers.attacks import attack, data


def test_multi_disjoint_samples_own_targets():
  images, labels = data(400)
  multi = attack("multi", attacks="badnets,blend,wanet", targets="0,1,2")
  out = multi.poison_train(images, labels)
  assert out.poison_mask.sum() == 3 * 40
  for k, sub in enumerate(multi.attacks):
    members = out.poison_mask & (out.labels == k)  # each target belongs to one attack
    assert members.sum() == 40 and np.all(labels[members] != k)
    np.testing.assert_array_equal(out.images[members], sub.apply_trigger(images[members]))
  test = multi.poison_test(images, labels)
  assert test.attack_names == ("badnets", "blend", "wanet")
  for k in range(3):
    rows = test.attack_index == k
    assert rows.sum() == np.sum(labels != k) and np.all(test.attacker_labels[rows] == k)


def test_multi_validates_its_parts():
  with pytest.raises(ValueError, match="own poisoning scheme"):
    attack("multi", attacks="badnets,adaptive_blend", targets="0,1")
  with pytest.raises(ValueError, match="one target per attack"):
    attack("multi", attacks="badnets,blend", targets="0")
  with pytest.raises(ValueError, match="known"):
    attack("multi", attacks="badnets,nope", targets="0,1")
  repeated = attack(
      "multi", attacks="badnets,badnets", targets="0,1", sub_params={"badnets": {"row": 20}}
  )
  assert repeated.names == ("badnets_0", "badnets_1") and repeated.attacks[1].row == 20
