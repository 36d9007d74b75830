"""The E-step snapshots' fixed subsample (a finished run's snapshots: test_report.py)."""

import numpy as np

from vibe_jax.report import snapshots


def test_snapshot_subsample_is_fixed_and_bounded():
  class Data:  # the fields EstepSnapshots reads
    num_valid = 40
    given_labels = np.arange(40) % 3
    true_labels = np.arange(40) % 3
    poison_mask = np.zeros(40, bool)

  first = snapshots.EstepSnapshots("unused", Data, steps=100, period=30, max_points=7)
  again = snapshots.EstepSnapshots("unused", Data, steps=100, period=30, max_points=7)
  assert first.snapshot_steps == {0, 90}
  assert len(first._indices) == 7 and np.array_equal(first._indices, again._indices)
