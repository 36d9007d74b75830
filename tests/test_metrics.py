import numpy as np

from vibe_jax import metrics


def test_defense_metrics():
  result = metrics.defense_metrics(
      clean_predictions=np.array([0, 1, 2, 2]),
      clean_labels=np.array([0, 1, 2, 0]),
      poisoned_predictions=np.array([0, 0, 2]),
      poisoned_true_labels=np.array([1, 2, 2]),
      attacker_labels=np.array([0, 0, 0]),
  )
  assert result == {"acc": 0.75, "asr": 2 / 3, "ra": 1 / 3}


def test_pseudo_label_diagnostics():
  result = metrics.pseudo_label_diagnostics(
      pseudo_labels=np.array([1, 1, 2, 0]),
      given_labels=np.array([0, 1, 2, 0]),
      true_labels=np.array([1, 1, 2, 3]),
      poison_mask=np.array([True, False, False, True]),
  )
  assert result == {"agree_given": 0.75, "agree_true": 0.75, "poison_restored": 0.5}
