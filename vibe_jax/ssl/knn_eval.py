"""kNN classification accuracy of features: the diagnostic for a pretrained backbone.

Labels are used only here, to judge the features after pretraining (the usual SSL "kNN
monitor"); pretraining itself never sees them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vibe_jax.knn import exact_knn
from vibe_jax.normalize import l2_normalize

__all__ = ["knn_accuracy", "knn_predict"]


def knn_predict(
    train_feats: np.ndarray | jax.Array,
    train_labels: np.ndarray | jax.Array,
    test_feats: np.ndarray | jax.Array,
    k: int = 20,
    chunk_size: int = 1024,
) -> np.ndarray:
  """Majority vote of the k most cosine-similar training samples, per test sample (ties go
  to the lowest class index).

  On unit vectors the euclidean neighbours are the cosine ones (|q - x|^2 = 2 - 2 q.x).
  """
  train_labels = np.asarray(train_labels)
  if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
    raise ValueError(
        f"features must be (N, D) and (M, D); got {train_feats.shape} and {test_feats.shape}"
    )
  if len(train_labels) != train_feats.shape[0]:
    raise ValueError(f"{len(train_labels)} train labels for {train_feats.shape[0]} train features")
  if not 1 <= k <= train_feats.shape[0]:
    raise ValueError(f"k={k} must lie in [1, {train_feats.shape[0]}] (the bank size)")
  unit = lambda features: l2_normalize(jnp.asarray(features, jnp.float32))
  neighbours = exact_knn(
      unit(train_feats), k, queries=unit(test_feats), query_chunk_size=chunk_size
  ).indices
  votes = np.zeros((len(neighbours), int(train_labels.max()) + 1), np.int64)
  np.add.at(votes, (np.arange(len(neighbours))[:, None], train_labels[neighbours]), 1)
  return votes.argmax(axis=1)


def knn_accuracy(
    train_feats: np.ndarray | jax.Array,
    train_labels: np.ndarray | jax.Array,
    test_feats: np.ndarray | jax.Array,
    test_labels: np.ndarray | jax.Array,
    k: int = 20,
) -> float:
  """Fraction of test samples whose cosine kNN majority vote equals their label."""
  predicted = knn_predict(train_feats, train_labels, test_feats, k)
  return float(np.mean(predicted == np.asarray(test_labels)))
