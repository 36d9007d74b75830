"""Frozen features (vibe_jax/features.py): a features file drives the FM variants exactly as
the in-memory features do; a bad file is a clear error."""

import numpy as np
import pytest

from helpers.configs import tiny_config
from vibe_jax import features, run


def test_features_file_run_equals_in_memory_run(tmp_path):
  """`--mode extract` writes the file once; a (with the baseline) and f from it end where
  the same runs on features extracted in memory end. (The FM variants need a backbone or a
  file, so pixel features run as a / f; fm_a from a file: reliability/test_labels.py.)"""
  path = run.extract_features(tiny_config("digits_badnets", "a"), str(tmp_path / "extract"))
  for variant, baseline in (("a", True), ("f", False)):
    config = lambda **fields: tiny_config(
        "digits_badnets", variant, {"baseline.enabled": baseline, **fields}
    )
    in_memory = run.train_and_evaluate(config(), str(tmp_path / variant / "memory"))
    from_file = run.train_and_evaluate(
        config(**{"features.file": path}), str(tmp_path / variant / "file")
    )
    # The baseline to the bit; VIBE to a few test images: the file's features differ from the
    # in-memory ones in the last bits (the first E-step's marginal error 8.18e-5 vs 8.22e-5),
    # and an E-step that L-BFGS alone converges runs no Sinkhorn iteration to wash that out.
    if baseline:
      assert from_file["baseline"] == in_memory["baseline"]
    for metric in ("acc", "asr", "ra"):
      assert from_file["vibe"][metric] == pytest.approx(in_memory["vibe"][metric], abs=3e-3)


def test_bad_features_file(tmp_path):
  good = {
      name: np.zeros((4, 3) if ndim == 2 else (4,), np.float32)
      for name, ndim in features.FEATURE_FILE_ARRAYS.items()
  }
  path = str(tmp_path / "f.npz")
  np.savez(path, **{k: v for k, v in good.items() if k != "test_labels"})
  with pytest.raises(ValueError, match=r"lacks \['test_labels'\]"):
    features.read_feature_file(path)
  np.savez(path, **{**good, "test_labels": np.zeros(5)})
  with pytest.raises(ValueError, match="row counts differ"):
    features.read_feature_file(path)
  with pytest.raises(FileNotFoundError, match="features.file"):
    features.read_feature_file(str(tmp_path / "absent.npz"))
