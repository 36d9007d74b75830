"""The kNN evaluation of a pretrained backbone (vibe_jax/ssl/knn_eval.py)."""

import numpy as np
import pytest

from vibe_jax.ssl import knn_eval


def test_knn_accuracy_matches_bruteforce():
  rng = np.random.default_rng(3)
  train, test = rng.normal(size=(40, 5)), rng.normal(size=(13, 5))
  train_labels, test_labels = rng.integers(0, 3, 40), rng.integers(0, 3, 13)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  neighbours = np.argsort(-unit(test) @ unit(train).T, axis=1)[:, :5]
  votes = np.stack([np.bincount(train_labels[row], minlength=3) for row in neighbours])
  expected = np.mean(votes.argmax(1) == test_labels)
  got = knn_eval.knn_accuracy(train, train_labels, test, test_labels, k=5)
  assert got == pytest.approx(expected)
  # Chunking with a padded last chunk gives the same predictions.
  np.testing.assert_array_equal(
      knn_eval.knn_predict(train, train_labels, test, k=5, chunk_size=4), votes.argmax(1)
  )
