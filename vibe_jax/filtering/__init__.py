"""Pre-training data filtering: the Leiden poison-cluster filter and its kNN search."""

from vibe_jax.filtering.knn import KnnResult, exact_knn
from vibe_jax.filtering.leiden import (
    LeidenFilterResult,
    centroid_outlier_scores,
    filter_report,
    flag_poison_cluster,
    leiden_poison_filter,
)

__all__ = [
    "KnnResult",
    "LeidenFilterResult",
    "centroid_outlier_scores",
    "exact_knn",
    "filter_report",
    "flag_poison_cluster",
    "leiden_poison_filter",
]
