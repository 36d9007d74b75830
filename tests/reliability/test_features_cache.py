"""The features cache is keyed by what the features are computed from, by content (a
backbone re-pretrained at the same path is not the cached one), and a corrupt cache is
recomputed with a warning; the workdir identity holds the backbone by content too."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from vibe_jax import features, parallel
from vibe_jax import workdir as workdir_lib
from vibe_jax.checkpoint import save_backbone
from vibe_jax.experiment import build_experiment
from vibe_jax.models import backbone_config

from . import digits


def save_tiny_backbone(path, seed):
  """A backbone checkpoint directory whose content depends on `seed` (the keys hash files;
  nothing here loads the model, so a toy state stands in for a ResNet's)."""
  state = {"conv1": {"kernel": np.random.default_rng(seed).normal(size=(3, 3)).astype(np.float32)}}
  save_backbone(path, backbone_config("resnet18", "imagenet", 4), state, overwrite=True)


def backbone_config_at(path):
  return digits.config(
      "fm_a,runlocal", **{"features.extractor": "backbone", "backbone.checkpoint": str(path)}
  )


def test_cache_key_follows_the_backbone_content_not_its_path(tmp_path):
  save_tiny_backbone(tmp_path / "bb", seed=0)
  first = features.cache_key(backbone_config_at(tmp_path / "bb"))
  shutil.copytree(tmp_path / "bb", tmp_path / "moved")
  assert features.cache_key(backbone_config_at(tmp_path / "moved")) == first
  save_tiny_backbone(tmp_path / "bb", seed=1)  # re-pretrained at the same path
  assert features.cache_key(backbone_config_at(tmp_path / "bb")) != first


def test_cache_key_ignores_the_extraction_batch_size():
  small = digits.config(**{"features.batch_size": 64})
  assert features.cache_key(small) == features.cache_key(digits.config())


def test_corrupt_cache_is_recomputed_with_a_warning(tmp_path, caplog):
  config = digits.config()
  mesh = parallel.make_mesh(1)
  fresh = features.experiment_feature_arrays(config, build_experiment(config), str(tmp_path), mesh)
  cache = tmp_path / "features.npz"
  data = cache.read_bytes()
  cache.write_bytes(data[: len(data) // 3])  # truncated, as by a full disk

  with caplog.at_level(logging.WARNING):
    again = features.experiment_feature_arrays(
        config, build_experiment(config), str(tmp_path), mesh
    )

  assert "features cache" in caplog.text and "recomputing" in caplog.text
  assert sorted(again) == sorted(fresh)
  for name in fresh:
    np.testing.assert_array_equal(again[name], fresh[name])
  assert features.files.read_npz(cache, "cache")  # rewritten whole


def test_cache_that_is_not_an_npz_is_recomputed(tmp_path, caplog):
  cache = tmp_path / "features.npz"
  cache.write_bytes(b"\0" * 100)
  with caplog.at_level(logging.WARNING):
    arrays = features.cached_arrays(str(cache), {"k": 1}, lambda: {"x": np.arange(3)})
  assert "recomputing" in caplog.text
  np.testing.assert_array_equal(arrays["x"], np.arange(3))
  calls = []
  again = features.cached_arrays(str(cache), {"k": 1}, lambda: calls.append(1) or {})
  assert not calls  # the rewritten cache is read back
  np.testing.assert_array_equal(again["x"], np.arange(3))


def test_workdir_identity_holds_the_backbone_by_content(tmp_path):
  save_tiny_backbone(tmp_path / "bb", seed=0)
  workdir = tmp_path / "run"
  workdir.mkdir()
  config = backbone_config_at(tmp_path / "bb")
  workdir_lib.record_experiment(config, str(workdir), workdir_lib.identity_of(config))
  (workdir / "results.json").write_text("{}")

  shutil.copytree(tmp_path / "bb", tmp_path / "moved")
  workdir_lib.check_workdir(backbone_config_at(tmp_path / "moved"), str(workdir), required=True)
  save_tiny_backbone(tmp_path / "bb", seed=1)
  with pytest.raises(workdir_lib.WorkdirMismatchError, match=r"backbone\.checkpoint 'sha256:"):
    workdir_lib.check_workdir(config, str(workdir), required=True)
