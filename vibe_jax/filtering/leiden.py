"""The Leiden poison-cluster filter (VIBE_SPEC.md section 3), run once before training.

Poisoned samples of a backdoor attack share the trigger, so in a self-supervised feature
space they tend to form one extra, tight cluster away from the C clean classes. The filter
looks for C + 1 communities in a kNN graph and removes the one community whose centroid sits
unusually far from all the others.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import igraph
import leidenalg
import numpy as np
import scipy.sparse
import scipy.spatial.distance
from absl import logging

from vibe_jax.knn import exact_knn

__all__ = [
    "LeidenFilterResult",
    "centroid_outlier_scores",
    "filter_report",
    "flag_poison_cluster",
    "leiden_poison_filter",
]

DEFAULT_RESOLUTIONS = np.linspace(0.1, 3.0, 50)


@dataclasses.dataclass(frozen=True)
class LeidenFilterResult:
  """What the filter decided, with enough detail to audit the decision."""

  keep_mask: np.ndarray  # (N,) bool: True for samples kept for training.
  cluster_labels: np.ndarray  # (N,) int: Leiden community of each sample, 0..K-1.
  flagged_cluster: int | None  # community judged to be poison, None if none deviates.
  normalized_mean_distances: np.ndarray  # (K,) mean centroid distance / its max.
  deviations: np.ndarray  # (K,) |value - mean of the other clusters' values|.
  resolution: float  # Leiden resolution of the chosen partition.
  num_clusters: int  # K


def centroid_outlier_scores(centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-centroid normalised mean distance and its deviation from the other clusters'.

  For centroid i: m_i = mean_j |c_i - c_j| (j over all K centroids, itself included),
  n_i = m_i / max(m), deviation_i = |n_i - mean_{j != i} n_j|.
  Fewer than two centroids, or all centroids equal, give zero deviations (nothing to flag).
  """
  centroids = np.asarray(centroids, dtype=np.float64)
  if centroids.ndim != 2:
    raise ValueError(f"centroids must be 2-D (K, D); got shape {centroids.shape}.")
  num_clusters = centroids.shape[0]
  if num_clusters < 2:
    return np.ones(num_clusters), np.zeros(num_clusters)
  mean_distances = scipy.spatial.distance.cdist(centroids, centroids).mean(axis=1)
  largest = mean_distances.max()
  if largest == 0.0:
    return np.ones(num_clusters), np.zeros(num_clusters)
  normalized = mean_distances / largest
  mean_of_others = (normalized.sum() - normalized) / (num_clusters - 1)
  return normalized, np.abs(normalized - mean_of_others)


def flag_poison_cluster(centroids: np.ndarray, delta: float) -> tuple[int | None, np.ndarray]:
  """The most deviating cluster if its deviation exceeds ``delta``, else None.

  Only one cluster is ever flagged (the reference removes the single most deviating one).
  Ties go to the lowest index. Returns (index or None, normalised mean distances).
  """
  if not delta > 0:
    raise ValueError(f"delta must be > 0; got {delta}. The reference uses 0.275.")
  normalized, deviations = centroid_outlier_scores(centroids)
  if deviations.size == 0:
    return None, normalized
  most_deviating = int(np.argmax(deviations))
  if deviations[most_deviating] > delta:
    return most_deviating, normalized
  return None, normalized


def _knn_graph(neighbor_indices: np.ndarray) -> igraph.Graph:
  """Unweighted undirected kNN graph; i-j and j-i collapse to one edge, no self-loops."""
  num_samples, num_neighbors = neighbor_indices.shape
  sources = np.repeat(np.arange(num_samples, dtype=np.int64), num_neighbors)
  targets = neighbor_indices.reshape(-1).astype(np.int64)
  low, high = np.minimum(sources, targets), np.maximum(sources, targets)
  keys = np.unique(low[low != high] * num_samples + high[low != high])
  edges = np.stack([keys // num_samples, keys % num_samples], axis=1)
  return igraph.Graph(n=num_samples, edges=edges, directed=False)


def _scan_resolutions(
    graph: igraph.Graph,
    target_clusters: int,
    resolutions: Sequence[float],
    seed: int,
    n_iterations: int,
) -> tuple[np.ndarray, float]:
  """Leiden over the resolutions; the first partition closest to ``target_clusters`` wins.

  Stops at the first resolution that gives exactly ``target_clusters``.
  """
  best_labels, best_resolution, best_gap = None, math.nan, math.inf
  scanned = []
  for resolution in resolutions:
    partition = leidenalg.find_partition(
        graph,
        leidenalg.RBConfigurationVertexPartition,
        resolution_parameter=float(resolution),
        seed=seed,
        n_iterations=n_iterations,
    )
    num_clusters = len(partition)
    gap = abs(num_clusters - target_clusters)
    scanned.append(f"{resolution:.3f}:{num_clusters}")
    logging.vlog(1, "Leiden resolution %.3f: %d clusters.", resolution, num_clusters)
    if gap < best_gap:
      best_labels = np.asarray(partition.membership, dtype=np.int64)
      best_resolution, best_gap = float(resolution), gap
      if gap == 0:
        break
  logging.info(
      "Leiden scan (resolution:clusters, target %d): %s; chose resolution %.3f.",
      target_clusters,
      " ".join(scanned),
      best_resolution,
  )
  return best_labels, best_resolution


def _cluster_centroids(features: np.ndarray, labels: np.ndarray, num_clusters: int) -> np.ndarray:
  """Mean feature of each cluster (labels are 0..K-1, every cluster non-empty)."""
  num_samples = features.shape[0]
  membership = scipy.sparse.csr_matrix(
      (np.ones(num_samples), (labels, np.arange(num_samples))),
      shape=(num_clusters, num_samples),
  )
  sums = membership @ features.astype(np.float64)
  counts = np.bincount(labels, minlength=num_clusters).astype(np.float64)
  return sums / counts[:, None]


def leiden_poison_filter(
    features: np.ndarray,
    num_classes: int,
    *,
    num_neighbors: int = 50,
    resolutions: Sequence[float] = DEFAULT_RESOLUTIONS,
    delta: float = 0.275,
    seed: int = 0,
    n_iterations: int = -1,
    query_chunk_size: int = 1024,
    database_chunk_size: int = 65536,
) -> LeidenFilterResult:
  """Finds the suspected poison cluster among the training features and masks it out.

  Steps: exact euclidean kNN graph (on device) -> Leiden (RBConfiguration, i.e. modularity
  with a resolution) scanned over ``resolutions`` for the partition with closest to
  ``num_classes + 1`` communities -> centroid outlier rule (``flag_poison_cluster``).

  Args:
    features: (N, D) finite training features (e.g. the SS backbone's embeddings).
    num_classes: C, the number of classes in the training set (>= 2).
    num_neighbors: k of the kNN graph (reference: 50); must be < N.
    resolutions: Leiden resolutions to scan, in order (reference: linspace(0.1, 3, 50)).
    delta: deviation threshold of the outlier rule (reference: 0.275).
    seed: Leiden's random seed, the same for every resolution.
    n_iterations: Leiden iterations; -1 runs until no improvement (the reference asks
      cuGraph for up to 1000 levels, i.e. effectively to convergence).
    query_chunk_size, database_chunk_size: memory blocking of the kNN search, see
      ``exact_knn``.

  Returns:
    LeidenFilterResult; ``keep_mask`` selects the samples to train on.
  """
  features = np.asarray(features)
  if features.ndim != 2:
    raise ValueError(
        f"features must be 2-D (N, D); got shape {features.shape}. Flatten per-sample "
        "features first."
    )
  if not np.issubdtype(features.dtype, np.number) or np.issubdtype(
      features.dtype, np.complexfloating
  ):
    raise ValueError(f"features must be real numbers; got dtype {features.dtype}.")
  if not np.all(np.isfinite(features)):
    raise ValueError(
        f"features contain {np.count_nonzero(~np.isfinite(features))} non-finite values; "
        "check the backbone's feature extraction."
    )
  num_samples = features.shape[0]
  if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
    raise ValueError(f"num_classes must be an integer >= 2; got {num_classes}.")
  if not 1 <= num_neighbors < num_samples:
    raise ValueError(
        f"num_neighbors must be in [1, N) = [1, {num_samples}); got {num_neighbors}. "
        "Lower num_neighbors or pass more samples."
    )
  if not delta > 0:
    raise ValueError(f"delta must be > 0; got {delta}. The reference uses 0.275.")
  resolutions = np.asarray(resolutions, dtype=np.float64).reshape(-1)
  if resolutions.size == 0 or not np.all(resolutions > 0):
    raise ValueError(
        f"resolutions must be a non-empty sequence of positive values; got {resolutions}."
    )

  logging.info(
      "Leiden filter: N=%d, D=%d, C=%d, k=%d, delta=%.3f.",
      num_samples,
      features.shape[1],
      num_classes,
      num_neighbors,
      delta,
  )
  neighbors = exact_knn(
      features,
      num_neighbors,
      query_chunk_size=query_chunk_size,
      database_chunk_size=database_chunk_size,
  )
  graph = _knn_graph(neighbors.indices)
  logging.info("kNN graph: %d vertices, %d edges.", graph.vcount(), graph.ecount())

  raw_labels, resolution = _scan_resolutions(
      graph, int(num_classes) + 1, resolutions, seed, n_iterations
  )
  # Relabel to 0..K-1 so labels index the centroid arrays directly.
  _, cluster_labels = np.unique(raw_labels, return_inverse=True)
  num_clusters = int(cluster_labels.max()) + 1

  centroids = _cluster_centroids(features, cluster_labels, num_clusters)
  flagged_cluster, normalized = flag_poison_cluster(centroids, delta)
  _, deviations = centroid_outlier_scores(centroids)
  keep_mask = (
      np.ones(num_samples, dtype=bool)
      if flagged_cluster is None
      else cluster_labels != flagged_cluster
  )
  logging.info(
      "Leiden filter: resolution %.3f, %d clusters, max deviation %.3f -> %s.",
      resolution,
      num_clusters,
      float(deviations.max()),
      "nothing removed"
      if flagged_cluster is None
      else f"cluster {flagged_cluster} removed ({num_samples - keep_mask.sum()} samples)",
  )
  return LeidenFilterResult(
      keep_mask=keep_mask,
      cluster_labels=cluster_labels,
      flagged_cluster=flagged_cluster,
      normalized_mean_distances=normalized,
      deviations=deviations,
      resolution=resolution,
      num_clusters=num_clusters,
  )


def filter_report(
    result: LeidenFilterResult, poison_mask: np.ndarray | None = None
) -> dict[str, Any]:
  """Summary of what was removed; with the true poison mask, how well it was targeted.

  precision = poisoned removed / removed, recall = poisoned removed / poisoned,
  clean_removed_fraction = clean removed / clean; undefined ratios are None (JSON null).
  """
  keep_mask = np.asarray(result.keep_mask, dtype=bool)
  removed = ~keep_mask
  report: dict[str, Any] = {
      "num_samples": int(keep_mask.size),
      "num_removed": int(removed.sum()),
      "num_clusters": int(result.num_clusters),
      "resolution": float(result.resolution),
      "flagged_cluster": result.flagged_cluster,
      "max_deviation": float(np.max(result.deviations)) if result.deviations.size else 0.0,
  }
  if poison_mask is None:
    return report
  poison_mask = np.asarray(poison_mask)
  if poison_mask.shape != keep_mask.shape or poison_mask.dtype != np.bool_:
    raise ValueError(
        f"poison_mask must be a bool array of shape {keep_mask.shape}; got dtype "
        f"{poison_mask.dtype}, shape {poison_mask.shape}."
    )

  def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None

  num_poisoned = int(poison_mask.sum())
  num_clean = int(poison_mask.size - num_poisoned)
  removed_poisoned = int((removed & poison_mask).sum())
  removed_clean = int((removed & ~poison_mask).sum())
  report.update(
      num_poisoned=num_poisoned,
      num_removed_poisoned=removed_poisoned,
      num_removed_clean=removed_clean,
      precision=ratio(removed_poisoned, report["num_removed"]),
      recall=ratio(removed_poisoned, num_poisoned),
      clean_removed_fraction=ratio(removed_clean, num_clean),
  )
  return report
