"""FM variants from a features file equal the same runs from in-memory features."""

import numpy as np
import pytest

from configs import digits_badnets
from vibe_jax import features, run


def tiny(variant, **fields):
  config = digits_badnets.get_config(variant)
  config.train.steps, config.estep.period, config.baseline.steps = 300, 100, 150
  for key, value in fields.items():
    config.features[key] = value
  return config


@pytest.mark.parametrize("variant", ["fm_a", "fm_f"])
def test_features_file_run_equals_in_memory_run(tmp_path, variant):
  in_memory = run.train_and_evaluate(tiny(variant), str(tmp_path / "memory"))
  path = run.extract_features(tiny(variant), str(tmp_path / "extract"))
  from_file = run.train_and_evaluate(tiny(variant, file=path), str(tmp_path / "file"))
  for model in ("baseline", "vibe"):
    assert from_file[model] == in_memory[model]


def test_fm_a_keeps_mu_y_frozen(tmp_path):
  from vibe_jax.variants import get_variant

  assert not get_variant("fm_a").train_mu_y and get_variant("fm_f").train_mu_y


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
