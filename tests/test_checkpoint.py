"""Backbone checkpoints: round trip, atomic write, clear errors; no torch needed."""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from vibe_jax import checkpoint
from helpers.models import random_backbone
from vibe_jax.models import backbone_config, flat_state, load_backbone

CONFIG = {"arch": "resnet18", "stem": "cifar", "width": 4}


def test_round_trip_keeps_every_array_and_the_config(tmp_path: pathlib.Path) -> None:
  model = random_backbone(**CONFIG, seed=7)
  path = checkpoint.save_backbone(tmp_path / "bb", CONFIG, nnx.state(model))

  model_config, state = checkpoint.load_backbone_checkpoint(path)

  assert model_config == CONFIG
  saved, restored = flat_state(model), flat_state(state)
  assert sorted(saved) == sorted(restored)
  for name in saved:
    np.testing.assert_array_equal(np.asarray(restored[name]), np.asarray(saved[name]))
  assert json.loads((path / "backbone.json").read_text())["format"] == checkpoint.BACKBONE_FORMAT
  assert [p.name for p in tmp_path.iterdir()] == ["bb"]  # no staging directory left behind


def test_load_backbone_gives_eval_mode_features(tmp_path: pathlib.Path) -> None:
  model = random_backbone(**CONFIG, seed=1)
  for _, bn in nnx.iter_modules(model):  # non-trivial running stats
    if isinstance(bn, nnx.BatchNorm):
      bn.mean[...] = bn.mean[...] + 0.3
      bn.var[...] = bn.var[...] * 2.0
  checkpoint.save_backbone(tmp_path / "bb", CONFIG, nnx.state(model))
  images = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))

  features = load_backbone(tmp_path / "bb")(images)

  model.eval()
  np.testing.assert_allclose(features, model(images), atol=1e-6)
  assert features.shape == (2, 32)


def test_existing_directory_is_kept_unless_overwrite(tmp_path: pathlib.Path) -> None:
  (tmp_path / "bb").mkdir()
  state = nnx.state(random_backbone(**CONFIG))
  with pytest.raises(FileExistsError, match="overwrite"):
    checkpoint.save_backbone(tmp_path / "bb", CONFIG, state)
  checkpoint.save_backbone(tmp_path / "bb", CONFIG, state, overwrite=True)
  assert checkpoint.load_backbone_checkpoint(tmp_path / "bb")[0] == CONFIG


def test_not_a_checkpoint_names_the_fix(tmp_path: pathlib.Path) -> None:
  with pytest.raises(FileNotFoundError, match="convert_torch_ckpt.py"):
    checkpoint.load_backbone_checkpoint(tmp_path)


def test_bad_model_config_fails_before_writing(tmp_path: pathlib.Path) -> None:
  with pytest.raises(ValueError, match=r"unknown backbone arch 'vit'.*resnet18"):
    backbone_config("vit")
  with pytest.raises(TypeError):
    checkpoint.save_backbone(tmp_path / "bb", {"arch": object()}, {})
  assert not (tmp_path / "bb").exists()
