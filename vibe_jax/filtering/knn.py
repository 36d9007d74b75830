"""Exact k-nearest neighbours of a feature set within itself, on device.

The Leiden filter needs a kNN graph over the whole training set (50k samples for CIFAR, up
to 1.28M for ImageNet). A dense (N, N) distance matrix does not fit at that scale, so the
search is blocked: queries are processed ``query_chunk_size`` at a time and, for each query
block, the database is scanned ``database_chunk_size`` rows at a time while a running top-k
is kept. Peak memory is O(query_chunk_size * database_chunk_size) on top of the features.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["KnnResult", "exact_knn"]


class KnnResult(NamedTuple):
  """Neighbours of every sample, nearest first (self-matches excluded)."""

  indices: np.ndarray  # (N, k) int32
  distances: np.ndarray  # (N, k) float32, euclidean


@functools.partial(jax.jit, static_argnames=("num_neighbors",))
def _knn_query_block(
    queries: jax.Array,
    query_offset: jax.Array,
    database_blocks: jax.Array,
    database_sq_norms: jax.Array,
    num_valid: jax.Array,
    *,
    num_neighbors: int,
) -> tuple[jax.Array, jax.Array]:
  """Top-k of one query block against the whole (blocked, padded) database.

  Returns squared distances (from the |q|^2 - 2 q.x + |x|^2 expansion) and global indices.
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
    invalid = (row_ids[None, :] >= num_valid) | (row_ids[None, :] == query_ids[:, None])
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
    query_chunk_size: int = 1024,
    database_chunk_size: int = 65536,
) -> KnnResult:
  """Exact euclidean kNN of every row of ``features`` among the other rows.

  Each sample's own index is excluded (duplicates of it are still valid neighbours). Ties
  are broken towards the lower index. Computation is float32 on the default device.

  Args:
    features: (N, D) array.
    num_neighbors: k, with 1 <= k < N.
    query_chunk_size: queries per jitted call; the last chunk is padded, so one compile.
    database_chunk_size: database rows per scan step; lower it if (query_chunk_size x
      database_chunk_size) float32 does not fit on the device.

  Returns:
    KnnResult with (N, k) int32 indices and float32 distances, nearest first.
  """
  features = jnp.asarray(features, dtype=jnp.float32)
  if features.ndim != 2:
    raise ValueError(f"features must be 2-D (N, D); got shape {features.shape}.")
  num_samples = features.shape[0]
  if not 1 <= num_neighbors < num_samples:
    raise ValueError(
        f"num_neighbors must be in [1, N) = [1, {num_samples}); got {num_neighbors}. "
        "Use fewer neighbours or more samples."
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
  chunk = min(query_chunk_size, num_samples)
  num_chunks = -(-num_samples // chunk)
  queries_padded = jnp.pad(features, ((0, num_chunks * chunk - num_samples), (0, 0)))

  index_chunks, distance_chunks = [], []
  for chunk_id in range(num_chunks):
    start = chunk_id * chunk
    queries = jax.lax.dynamic_slice_in_dim(queries_padded, start, chunk, axis=0)
    _, indices = _knn_query_block(
        queries,
        jnp.asarray(start, dtype=jnp.int32),
        database_blocks,
        database_sq_norms,
        num_valid,
        num_neighbors=num_neighbors,
    )
    index_chunks.append(indices)
    distance_chunks.append(_exact_distances(queries, features[indices]))

  indices = np.asarray(jnp.concatenate(index_chunks)[:num_samples])
  distances = np.asarray(jnp.concatenate(distance_chunks)[:num_samples])
  return KnnResult(indices=indices, distances=distances)
