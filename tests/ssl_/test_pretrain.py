"""Pretraining (vibe_jax/ssl/pretrain.py): its config checks, the digits and solo-learn
defaults, All4One on digits. (SimCLR from the command line, as two processes, and the SS-F
run on its backbone: e2e/test_pretrain_pipeline.py.)"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from configs import common, digits_badnets
from helpers.configs import tiny_config
from vibe_jax import experiment
from vibe_jax.models import ResNet, load_backbone_model
from vibe_jax.ssl import pretrain


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("optimizer", "rmsprop", "ssl.optimizer"),
        ("warmup_steps", -1, "ssl.warmup_steps"),
        ("batch_size", 0, "ssl.batch_size"),
        ("crop_scale_min", 1.5, "ssl.crop_scale_min"),
    ],
)
def test_bad_ssl_config_fails_before_training(field, value, match):
  config = tiny_config()
  config.ssl[field] = value
  with pytest.raises(ValueError, match=match):
    pretrain.validate_ssl_config(config)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("method", "byol", "ssl.method"),
        ("queue_size", 100, "ssl.queue_size"),
        ("projector_output_dim", 12, "ssl.projector_output_dim"),
        ("base_tau", 1.5, "ssl.base_tau"),
        ("predictor_hidden_dim", 0, "ssl.predictor_hidden_dim"),
    ],
)
def test_bad_all4one_config_fails_before_training(field, value, match):
  config = tiny_config(overrides={"ssl.method": "all4one"})
  config.ssl[field] = value
  with pytest.raises(ValueError, match=match):
    pretrain.validate_ssl_config(config)


def test_unknown_method_error_names_the_field_and_the_known_methods():
  config = digits_badnets.get_config()
  config.ssl.method = "byol"
  with pytest.raises(ValueError, match=r"ssl.method.*all4one, simclr"):
    pretrain.pretrain(config, "/nonexistent/never-written")


def test_pretraining_an_ss_config_needs_no_checkpoint_yet():
  """`--mode pretrain` with the ss_f config validates only data and ssl fields; training
  it still asks for the checkpoint."""
  config = digits_badnets.get_config("ss_f")
  experiment.validate_data_config(config)
  pretrain.validate_ssl_config(config)
  with pytest.raises(ValueError, match="backbone.checkpoint"):
    experiment.validate_config(config)


def test_digits_defaults_and_simclr_stays_default():
  config = digits_badnets.get_config()
  assert config.ssl.method == "simclr"
  base = common.base_config().ssl
  # solo-learn's CIFAR All4One config (scripts/pretrain/cifar/all4one.yaml).
  expected = {
      "optimizer": "lars",
      "lr": 1.0,
      "weight_decay": 1e-5,
      "lars_trust_coefficient": 0.02,
      "batch_size": 256,
      "temperature": 0.2,
      "projector_hidden_dim": 2048,
      "projector_output_dim": 256,
      "predictor_hidden_dim": 4096,
      "queue_size": 98_304,
      "base_tau": 0.99,
      "final_tau": 1.0,
      "transformer_lr": 0.1,
  }
  assert {key: base[key] for key in expected} == expected
  config.ssl.method = "all4one"
  pretrain.validate_ssl_config(config)  # the digits all4one fields are consistent
  first, second = pretrain.augment_config(config)  # asymmetric.yaml
  assert (first.brightness, first.saturation, first.hue) == (0.4, 0.2, 0.1)
  assert first.solarize_prob == 0.0 and second.solarize_prob == 0.2
  assert second.brightness == 0.4
  config.ssl.method = "simclr"  # one config for both views, SimCLR's strength 1
  assert pretrain.augment_config(config).brightness == 0.8


@pytest.mark.slow
def test_pretrain_all4one_on_digits_writes_a_loadable_backbone(tmp_path):
  """The runlocal schedule (4 steps, a width-4 ResNet-18): the checkpoint is the one SimCLR
  writes (VIBE's ss_* / fm_* variants load it unchanged)."""
  path = pretrain.pretrain(tiny_config(overrides={"ssl.method": "all4one"}), str(tmp_path))
  assert path == tmp_path / "backbone"
  model = load_backbone_model(path)
  assert isinstance(model, ResNet)
  features = model(jnp.zeros((3, 32, 32, 3), jnp.float32))
  assert features.shape == (3, 32) and np.isfinite(features).all()
  summary = json.loads((tmp_path / "pretrain.json").read_text())
  assert summary["method"] == "all4one" and summary["steps"] == 4
  lines = (tmp_path / "pretrain_log.jsonl").read_text().splitlines()
  assert len(lines) == 2
  assert {"centroid", "nnclr", "redundancy", "tau"} <= set(json.loads(lines[0]))
