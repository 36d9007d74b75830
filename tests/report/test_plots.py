"""The plots' computations (the plots of a run: test_report.py)."""

import numpy as np

from vibe_jax.report import plots


def test_confusion_counts_match_sklearn():
  from sklearn.metrics import confusion_matrix

  rng = np.random.default_rng(0)
  true, predicted = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
  np.testing.assert_array_equal(
      plots._confusion(true, predicted, 5), confusion_matrix(true, predicted, labels=range(5))
  )
