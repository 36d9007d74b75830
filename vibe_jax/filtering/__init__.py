"""Pre-training data filtering: the Leiden poison-cluster filter (its kNN search is
vibe_jax.knn)."""

from vibe_jax.filtering.leiden import (
    LeidenFilterResult,
    centroid_outlier_scores,
    filter_report,
    flag_poison_cluster,
    leiden_poison_filter,
)

__all__ = [
    "LeidenFilterResult",
    "centroid_outlier_scores",
    "filter_report",
    "flag_poison_cluster",
    "leiden_poison_filter",
]
