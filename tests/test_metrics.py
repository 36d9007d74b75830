"""ACC / ASR / RA, per attack, and the E-step's pseudo-label diagnostics."""

import numpy as np
import pytest

from vibe_jax import metrics


def test_defense_metrics():
  result = metrics.defense_metrics(
      clean_predictions=np.array([0, 1, 2, 2]),
      clean_labels=np.array([0, 1, 2, 0]),
      poisoned_predictions=np.array([0, 0, 2]),
      poisoned_true_labels=np.array([1, 2, 2]),
      attacker_labels=np.array([0, 0, 0]),
  )
  # asr_floor: class 1's one clean image is predicted 1 (not 0): 0; of class 2's one, 0 too.
  assert result == {"acc": 0.75, "asr": 2 / 3, "ra": 1 / 3, "asr_floor": 0.0}


def test_asr_floor_is_the_clean_confusion_into_the_attackers_label():
  # Clean test set: class 1 predicted 0 in 1 of 4, class 2 in 2 of 2, class 3 never seen.
  clean_labels = np.array([1, 1, 1, 1, 2, 2, 0])
  clean_predictions = np.array([0, 1, 1, 1, 0, 0, 0])
  # Triggered: two of class 1 (target 0), one of class 2 (target 0), one of class 2 with
  # another attacker label (all-to-all: 3), one of the unseen class 3.
  true = np.array([1, 1, 2, 2, 3])
  wanted = np.array([0, 0, 0, 3, 0])
  result = metrics.defense_metrics(clean_predictions, clean_labels, wanted, true, wanted)
  assert result["asr"] == 1.0  # every triggered image lands on its attacker label
  assert result["asr_floor"] == pytest.approx((0.25 + 0.25 + 1.0 + 0.0 + 0.0) / 5)


def test_pseudo_label_diagnostics():
  result = metrics.pseudo_label_diagnostics(
      pseudo_labels=np.array([1, 1, 2, 0]),
      given_labels=np.array([0, 1, 2, 0]),
      true_labels=np.array([1, 1, 2, 3]),
      poison_mask=np.array([True, False, False, True]),
  )
  assert result == {"agree_given": 0.75, "agree_true": 0.75, "poison_restored": 0.5}


def test_asr_counts_the_class_whose_trigger_an_image_carries():
  true = np.array([1, 2, 3, 4])
  wanted = np.array([5, 6, 7, 8])
  predicted = np.array([5, 6, 3, 0])
  result = metrics.defense_metrics(true, true, predicted, true, wanted)
  assert result["asr"] == 0.5 and result["ra"] == 0.25


def test_per_attack_metrics_against_a_loop():
  rng = np.random.default_rng(0)
  index = rng.integers(0, 3, 90)
  wanted, true = index.copy(), (index + 1 + rng.integers(0, 8, 90)) % 10
  predicted = np.where(rng.random(90) < 0.6, wanted, true)
  names = ("badnets", "blend", "wanet")
  got = metrics.per_attack_metrics(predicted, true, wanted, index, names)
  for k, name in enumerate(names):
    rows = [i for i in range(90) if index[i] == k]
    assert got[f"asr/{name}"] == pytest.approx(np.mean([predicted[i] == wanted[i] for i in rows]))
    assert got[f"ra/{name}"] == pytest.approx(np.mean([predicted[i] == true[i] for i in rows]))
