"""Exact k-nearest neighbours on device: one search for the Leiden filter and the SSL kNN
monitor (a module of its own, so that neither package imports the other).

The Leiden filter needs a kNN graph over the whole training set (50k samples for CIFAR, up
to 1.28M for ImageNet); the kNN monitor, the training-set neighbours of every test sample.
A dense (N, N) distance matrix does not fit at that scale, so the search is blocked:
queries are processed ``query_chunk_size`` at a time and, for each query block, the
database is scanned ``database_chunk_size`` rows at a time while a running top-k is kept.
Peak memory is O(query_chunk_size * database_chunk_size) on top of the features.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["KnnResult", "exact_knn"]


class KnnResult(NamedTuple):
  """Neighbours of every query, nearest first."""

  indices: np.ndarray  # (queries, k) int32, rows of the features
  distances: np.ndarray  # (queries, k) float32, euclidean


@functools.partial(jax.jit, static_argnames=("num_neighbors", "exclude_self"))
def _knn_query_block(
    queries: jax.Array,
    query_offset: jax.Array,
    database_blocks: jax.Array,
    database_sq_norms: jax.Array,
    num_valid: jax.Array,
    *,
    num_neighbors: int,
    exclude_self: bool,
) -> tuple[jax.Array, jax.Array]:
  """Top-k of one query block against the whole (blocked, padded) database.

  Returns squared distances (from the |q|^2 - 2 q.x + |x|^2 expansion) and global indices.
  With `exclude_self` the queries are database rows from `query_offset` on, each excluded
  from its own neighbours.
  """
  num_queries = queries.shape[0]
  num_blocks, block_size, _ = database_blocks.shape
  query_sq_norms = jnp.sum(queries * queries, axis=-1)
  query_ids = query_offset + jnp.arange(num_queries, dtype=jnp.int32)

  def scan_block(carry, block):
    best_neg_sq, best_idx = carry
    block_id, rows, row_sq_norms = block
    # HIGHEST precision: TPU/GPU default matmul precision (bf16 / tf32) reorders neighbours.
    cross = jnp.dot(queries, rows.T, precision=jax.lax.Precision.HIGHEST)
    neg_sq = -(query_sq_norms[:, None] - 2.0 * cross + row_sq_norms[None, :])
    row_ids = block_id * block_size + jnp.arange(block_size, dtype=jnp.int32)
    invalid = row_ids[None, :] >= num_valid
    if exclude_self:
      invalid = invalid | (row_ids[None, :] == query_ids[:, None])
    neg_sq = jnp.where(invalid, -jnp.inf, neg_sq)
    block_vals, block_pos = jax.lax.top_k(neg_sq, num_neighbors)
    # Running results first: on ties top_k keeps the earlier (lower) global index.
    merged_vals = jnp.concatenate([best_neg_sq, block_vals], axis=1)
    merged_idx = jnp.concatenate([best_idx, row_ids[block_pos]], axis=1)
    vals, pos = jax.lax.top_k(merged_vals, num_neighbors)
    return (vals, jnp.take_along_axis(merged_idx, pos, axis=1)), None

  init = (
      jnp.full((num_queries, num_neighbors), -jnp.inf, dtype=queries.dtype),
      jnp.zeros((num_queries, num_neighbors), dtype=jnp.int32),
  )
  block_ids = jnp.arange(num_blocks, dtype=jnp.int32)
  (best_neg_sq, best_idx), _ = jax.lax.scan(
      scan_block, init, (block_ids, database_blocks, database_sq_norms)
  )
  return -best_neg_sq, best_idx


@jax.jit
def _exact_distances(queries: jax.Array, neighbours: jax.Array) -> jax.Array:
  """Recomputes distances as |q - x| so reported values avoid the expansion's cancellation."""
  diff = queries[:, None, :] - neighbours
  return jnp.sqrt(jnp.sum(diff * diff, axis=-1))


def exact_knn(
    features: np.ndarray | jax.Array,
    num_neighbors: int,
    *,
    queries: np.ndarray | jax.Array | None = None,
    query_chunk_size: int = 1024,
    database_chunk_size: int = 65536,
) -> KnnResult:
  """Exact euclidean kNN among the rows of ``features``: of each row of ``queries``, or
  without ``queries``, of every row of ``features`` among the other rows.

  Without ``queries`` each sample's own index is excluded (duplicates of it are still valid
  neighbours). Ties are broken towards the lower index. Computation is float32 on the
  default device.

  Args:
    features: (N, D) array, the database.
    num_neighbors: k, with 1 <= k < N (1 <= k <= N with ``queries``).
    queries: optional (M, D) array.
    query_chunk_size: queries per jitted call; the last chunk is padded, so one compile.
    database_chunk_size: database rows per scan step; lower it if (query_chunk_size x
      database_chunk_size) float32 does not fit on the device.

  Returns:
    KnnResult with (M, k) (or (N, k)) int32 indices into ``features`` and float32
    distances, nearest first.
  """
  features = jnp.asarray(features, dtype=jnp.float32)
  if features.ndim != 2:
    raise ValueError(f"features must be 2-D (N, D); got shape {features.shape}.")
  num_samples = features.shape[0]
  exclude_self = queries is None
  if exclude_self:
    queries = features
    if not 1 <= num_neighbors < num_samples:
      raise ValueError(
          f"num_neighbors must be in [1, N) = [1, {num_samples}); got {num_neighbors}. "
          "Use fewer neighbours or more samples."
      )
  else:
    queries = jnp.asarray(queries, dtype=jnp.float32)
    if queries.ndim != 2 or queries.shape[1] != features.shape[1]:
      raise ValueError(
          f"queries must be (M, D) with the features' D; got {queries.shape} for features "
          f"{features.shape}."
      )
    if not 1 <= num_neighbors <= num_samples:
      raise ValueError(
          f"num_neighbors must be in [1, N] = [1, {num_samples}] (the number of features); "
          f"got {num_neighbors}."
      )
  if query_chunk_size < 1:
    raise ValueError(f"query_chunk_size must be >= 1; got {query_chunk_size}.")
  if database_chunk_size < num_neighbors:
    raise ValueError(
        f"database_chunk_size ({database_chunk_size}) must be >= num_neighbors "
        f"({num_neighbors}); raise database_chunk_size."
    )

  # Database: pad to whole blocks; padded rows are masked out by index inside the kernel.
  block_size = min(database_chunk_size, num_samples)
  num_blocks = -(-num_samples // block_size)
  padded = jnp.pad(features, ((0, num_blocks * block_size - num_samples), (0, 0)))
  database_blocks = padded.reshape(num_blocks, block_size, -1)
  del padded
  database_sq_norms = jnp.sum(database_blocks * database_blocks, axis=-1)
  num_valid = jnp.asarray(num_samples, dtype=jnp.int32)

  # Queries: pad to whole chunks so every call has the same shape (a single compilation).
  num_queries = queries.shape[0]
  chunk = min(query_chunk_size, num_queries)
  num_chunks = -(-num_queries // chunk)
  queries_padded = jnp.pad(queries, ((0, num_chunks * chunk - num_queries), (0, 0)))

  index_chunks, distance_chunks = [], []
  for chunk_id in range(num_chunks):
    start = chunk_id * chunk
    query_block = jax.lax.dynamic_slice_in_dim(queries_padded, start, chunk, axis=0)
    _, indices = _knn_query_block(
        query_block,
        jnp.asarray(start, dtype=jnp.int32),
        database_blocks,
        database_sq_norms,
        num_valid,
        num_neighbors=num_neighbors,
        exclude_self=exclude_self,
    )
    index_chunks.append(indices)
    distance_chunks.append(_exact_distances(query_block, features[indices]))

  indices = np.asarray(jnp.concatenate(index_chunks)[:num_queries])
  distances = np.asarray(jnp.concatenate(distance_chunks)[:num_queries])
  return KnnResult(indices=indices, distances=distances)
