"""Tests for vibe_jax.knn (exact kNN) and vibe_jax.filtering (outlier rule, Leiden filter)."""

from __future__ import annotations


import numpy as np
import pytest
import scipy.spatial.distance

from vibe_jax.filtering import (
    LeidenFilterResult,
    filter_report,
    flag_poison_cluster,
    leiden_poison_filter,
)
from vibe_jax.knn import exact_knn

NUM_CLASSES = 5
DIM = 16


@pytest.fixture
def rng() -> np.random.Generator:
  return np.random.default_rng(0)


def _brute_force_knn(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  distances = scipy.spatial.distance.cdist(features, features)
  np.fill_diagonal(distances, np.inf)
  order = np.argsort(distances, axis=1, kind="stable")[:, :k]
  return order, np.take_along_axis(distances, order, axis=1)


def _gaussian_clusters(
    rng: np.random.Generator, per_class: int, num_poison: int
) -> tuple[np.ndarray, np.ndarray]:
  """C clean blobs at 10 * e_c (pairwise 14.1 apart) + a tight poison blob at 30 * e_C."""
  centers = 10.0 * np.eye(DIM)[:NUM_CLASSES]
  clean = np.concatenate([c + rng.normal(size=(per_class, DIM)) for c in centers])
  poison = 30.0 * np.eye(DIM)[NUM_CLASSES] + 0.5 * rng.normal(size=(num_poison, DIM))
  features = np.concatenate([clean, poison]).astype(np.float32)
  poison_mask = np.arange(len(features)) >= len(clean)
  order = rng.permutation(len(features))  # the filter must not rely on sample order
  return features[order], poison_mask[order]


# --- exact kNN -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query_chunk_size, database_chunk_size",
    [(1024, 65536), (50, 64), (203, 7)],  # one block; neither divides N; k-sized blocks
)
def test_knn_matches_brute_force(rng, query_chunk_size, database_chunk_size):
  features = rng.normal(size=(203, 8)).astype(np.float32)
  k = 7
  expected_indices, expected_distances = _brute_force_knn(features.astype(np.float64), k)

  result = exact_knn(
      features, k, query_chunk_size=query_chunk_size, database_chunk_size=database_chunk_size
  )

  assert result.indices.shape == (203, k) and result.distances.shape == (203, k)
  np.testing.assert_array_equal(result.indices, expected_indices)
  np.testing.assert_allclose(result.distances, expected_distances, rtol=1e-5, atol=1e-5)


def test_knn_excludes_self_but_keeps_duplicates(rng):
  base = rng.normal(size=(20, 4)).astype(np.float32)
  features = np.concatenate([base, base])  # sample i and i + 20 coincide

  result = exact_knn(features, 3, query_chunk_size=6, database_chunk_size=8)

  own = np.arange(40)[:, None]
  assert not np.any(result.indices == own)
  np.testing.assert_array_equal(result.indices[:, 0], (np.arange(40) + 20) % 40)
  np.testing.assert_allclose(result.distances[:, 0], 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_neighbors=10), "num_neighbors"),
        (dict(num_neighbors=0), "num_neighbors"),
        (dict(num_neighbors=3, database_chunk_size=2), "database_chunk_size"),
        (dict(num_neighbors=3, query_chunk_size=0), "query_chunk_size"),
    ],
)
def test_knn_rejects_bad_arguments(rng, kwargs, match):
  with pytest.raises(ValueError, match=match):
    exact_knn(rng.normal(size=(10, 3)), **kwargs)


# --- centroid outlier rule -------------------------------------------------------------


def _reference_outlier_rule(centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Independent loop version: normalised mean distances and deviation from the others."""
  k = len(centroids)
  mean_distance = np.array(
      [sum(np.linalg.norm(centroids[i] - centroids[j]) for j in range(k)) / k for i in range(k)]
  )
  normalized = mean_distance / mean_distance.max()
  deviation = np.array([abs(normalized[i] - np.mean(np.delete(normalized, i))) for i in range(k)])
  return normalized, deviation


def test_outlier_rule_hand_computed():
  # 1-D centroids 0, 1, 10: mean distances 11/3, 10/3, 19/3 -> normalised 11/19, 10/19, 1;
  # deviations 7/38, 10/38, 17/38 (= 0.447).
  centroids = np.array([[0.0], [1.0], [10.0]])
  flagged, normalized = flag_poison_cluster(centroids, 0.275)
  assert flagged == 2
  np.testing.assert_allclose(normalized, [11 / 19, 10 / 19, 1.0], rtol=1e-12)

  assert flag_poison_cluster(centroids, 17 / 38 + 1e-9)[0] is None
  assert flag_poison_cluster(centroids, 17 / 38 - 1e-9)[0] == 2


def test_outlier_rule_matches_reference_on_planted_outlier(rng):
  centroids = rng.normal(size=(11, 32))
  centroids[4] += 25.0  # far-away poison centroid
  expected_normalized, expected_deviation = _reference_outlier_rule(centroids)
  assert expected_deviation.argmax() == 4 and expected_deviation[4] > 0.275

  flagged, normalized = flag_poison_cluster(centroids, 0.275)

  assert flagged == 4
  np.testing.assert_allclose(normalized, expected_normalized, rtol=1e-12)


def test_outlier_rule_flags_only_the_most_deviating(rng):
  centroids = rng.normal(size=(8, 6))
  centroids[1] += 40.0
  centroids[6] -= 60.0
  _, expected_deviation = _reference_outlier_rule(centroids)
  assert np.sum(expected_deviation > 0.275) == 2  # two candidates above the threshold

  flagged, _ = flag_poison_cluster(centroids, 0.275)

  assert flagged == int(np.argmax(expected_deviation)) == 6


def test_outlier_rule_flags_nothing_when_symmetric():
  centroids = 5.0 * np.eye(6)  # regular simplex: all normalised distances equal 1
  flagged, normalized = flag_poison_cluster(centroids, 0.275)
  assert flagged is None
  np.testing.assert_allclose(normalized, np.ones(6))
  assert flag_poison_cluster(np.zeros((1, 3)), 0.275)[0] is None  # a single cluster


# --- end to end ------------------------------------------------------------------------


def test_filter_removes_planted_poison_cluster(rng):
  # 40 poison samples < 50 neighbours, so the poison blob is linked to clean samples.
  features, poison_mask = _gaussian_clusters(rng, per_class=200, num_poison=40)

  result = leiden_poison_filter(features, NUM_CLASSES)
  report = filter_report(result, poison_mask)

  assert result.num_clusters == NUM_CLASSES + 1
  assert result.flagged_cluster is not None
  assert report["recall"] >= 0.95
  assert report["clean_removed_fraction"] < 0.02
  removed = ~result.keep_mask
  assert (
      report["num_removed"]
      == removed.sum()
      == np.sum(result.cluster_labels == result.flagged_cluster)
  )
  assert report["num_removed_poisoned"] == np.sum(removed & poison_mask)


def test_filter_keeps_everything_without_poison(rng):
  features, poison_mask = _gaussian_clusters(rng, per_class=150, num_poison=0)
  assert not poison_mask.any()

  result = leiden_poison_filter(features, NUM_CLASSES, resolutions=np.linspace(0.1, 3, 6))

  assert result.flagged_cluster is None
  assert result.keep_mask.all()
  assert np.all(result.deviations <= 0.275)
  assert filter_report(result)["num_removed"] == 0


def test_filter_report_counts():
  keep_mask = np.array([True, False, False, True, False, True])
  poison_mask = np.array([False, True, True, True, False, False])
  result = LeidenFilterResult(
      keep_mask=keep_mask,
      cluster_labels=np.array([0, 1, 1, 0, 1, 0]),
      flagged_cluster=1,
      normalized_mean_distances=np.array([0.5, 1.0]),
      deviations=np.array([0.5, 0.5]),
      resolution=0.1,
      num_clusters=2,
  )

  report = filter_report(result, poison_mask)

  assert report["num_removed"] == 3 and report["num_poisoned"] == 3
  assert report["num_removed_poisoned"] == 2 and report["num_removed_clean"] == 1
  assert report["precision"] == pytest.approx(2 / 3)
  assert report["recall"] == pytest.approx(2 / 3)
  assert report["clean_removed_fraction"] == pytest.approx(1 / 3)
  assert filter_report(result, np.zeros(6, bool))["recall"] is None  # no poison


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "features, kwargs, match",
    [
        (np.zeros(10), {}, "2-D"),
        (np.full((10, 2), np.nan), {}, "non-finite"),
        (np.zeros((10, 2)), dict(num_classes=1), "num_classes"),
        (np.zeros((10, 2)), dict(num_neighbors=10), "num_neighbors"),
        (np.zeros((10, 2)), dict(num_neighbors=3, delta=0.0), "delta"),
        (np.zeros((10, 2)), dict(num_neighbors=3, resolutions=[]), "resolutions"),
    ],
)
def test_filter_rejects_bad_input(features, kwargs, match):
  kwargs = {"num_classes": 2, **kwargs}
  with pytest.raises(ValueError, match=match):
    leiden_poison_filter(features, **kwargs)


def test_flag_and_report_reject_bad_input():
  with pytest.raises(ValueError, match="delta"):
    flag_poison_cluster(np.eye(3), -0.1)
  result = LeidenFilterResult(
      keep_mask=np.ones(4, bool),
      cluster_labels=np.zeros(4, int),
      flagged_cluster=None,
      normalized_mean_distances=np.ones(1),
      deviations=np.zeros(1),
      resolution=0.1,
      num_clusters=1,
  )
  with pytest.raises(ValueError, match="poison_mask"):
    filter_report(result, np.zeros(5, bool))
  with pytest.raises(ValueError, match="poison_mask"):
    filter_report(result, np.zeros(4, int))
