"""kNN classification accuracy of features: the diagnostic for a pretrained backbone.

Labels are used only here, to judge the features after pretraining (the usual SSL "kNN
monitor"); pretraining itself never sees them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["knn_accuracy", "knn_predict"]


def _unit(features: jax.Array) -> jax.Array:
  features = jnp.asarray(features, jnp.float32)
  return features / jnp.maximum(jnp.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _predict_chunk(queries, bank, bank_labels, *, k: int, num_classes: int) -> jax.Array:
  similarity = jnp.matmul(queries, bank.T, precision=jax.lax.Precision.HIGHEST)
  _, neighbours = jax.lax.top_k(similarity, k)
  votes = jax.nn.one_hot(bank_labels[neighbours], num_classes).sum(axis=1)
  return jnp.argmax(votes, axis=-1)  # ties go to the lowest class index


def knn_predict(
    train_feats: np.ndarray | jax.Array,
    train_labels: np.ndarray | jax.Array,
    test_feats: np.ndarray | jax.Array,
    k: int = 20,
    chunk_size: int = 1024,
) -> np.ndarray:
  """Majority vote of the k most cosine-similar training samples, per test sample."""
  train_labels = np.asarray(train_labels)
  if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
    raise ValueError(
        f"features must be (N, D) and (M, D); got {train_feats.shape} and {test_feats.shape}"
    )
  if len(train_labels) != train_feats.shape[0]:
    raise ValueError(f"{len(train_labels)} train labels for {train_feats.shape[0]} train features")
  if not 1 <= k <= train_feats.shape[0]:
    raise ValueError(f"k={k} must lie in [1, {train_feats.shape[0]}] (the bank size)")
  bank = _unit(train_feats)
  queries = _unit(test_feats)
  num_classes = int(train_labels.max()) + 1
  bank_labels = jnp.asarray(train_labels, jnp.int32)
  chunk = min(chunk_size, queries.shape[0])
  predictions = []
  for start in range(0, queries.shape[0], chunk):
    block = queries[start : start + chunk]
    pad = chunk - block.shape[0]
    if pad:  # one compiled shape for every chunk
      block = jnp.pad(block, ((0, pad), (0, 0)))
    predicted = _predict_chunk(block, bank, bank_labels, k=k, num_classes=num_classes)
    predictions.append(np.asarray(predicted[: chunk - pad]))
  return np.concatenate(predictions)


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
