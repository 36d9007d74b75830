"""The experiment configs: the reference's experiments exist, every variant of every config
builds, each digits config builds its attack, pretraining is a mode (e2e/test_configs.py
runs them all)."""

import importlib

import pytest

from configs import digits_badnets
from helpers.attacks import NEW_ATTACKS, SHAPE
from helpers.configs import CONFIGS
from vibe_jax.data.attacks import make_attack


def test_reference_experiments_exist():
  expected = (
      [
          f"cifar10_{a}"
          for a in (
              "badnets",
              "blend",
              "wanet",
              "ftrojan",
              "adap_patch",
              "adap_blend",
              "lc",
              "bn_all2all",
          )
      ]
      + [f"cifar100_{a}" for a in ("badnets", "blend", "wanet", "ftrojan")]
      + [f"imagenet30_{a}" for a in ("badnets", "blend", "wanet", "ftrojan")]
      + [f"imagenet1k_{a}" for a in ("badnets", "blend", "wanet", "uba_patch", "uba_blend")]
  )
  assert set(expected) <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("variant", ["a", "f", "ss_a", "ss_f", "fm_a", "fm_f"])
def test_config_builds_every_variant(name, variant):
  config = importlib.import_module(f"configs.{name}").get_config(variant)
  assert config.variant == variant
  if name.startswith(("cifar100", "imagenet1k")):
    assert config.vibe.kappa == config.vibe.nu == 20.0
  small_data = name.startswith(("digits", "own_data"))  # their own, shorter schedule
  if variant.startswith("fm") and not small_data:
    assert (config.train.steps, config.estep.period, config.train.batch_size) == (15000, 500, 1024)


@pytest.mark.parametrize("name", NEW_ATTACKS)
@pytest.mark.parametrize("variant", ["a", "f"])
def test_digits_configs_build(name, variant):
  config = importlib.import_module(f"configs.digits_{name}").get_config(variant)
  assert config.attack.name == name and config.variant == variant
  make_attack(
      config.attack.name,
      num_classes=10,
      image_shape=SHAPE,
      target=config.attack.target,
      rate=config.attack.rate,
      label_mode=config.attack.label_mode,
      seed=config.attack.seed,
      params=config.attack.params.to_dict(),
  )


def test_pretraining_is_a_mode_of_every_digits_config_not_a_variant():
  from configs import digits_blend

  config = digits_blend.get_config("ss_f")
  assert config.attack.name == "blend"
  assert config.ssl.to_dict() == digits_badnets.get_config().ssl.to_dict()
  with pytest.raises(ValueError, match="--mode pretrain"):
    digits_badnets.get_config("ssl")


def test_imagenet_configs_are_the_references():
  """ImageNet WaNet k = 224; ImageNet-1k a / f on a frozen ResNet-50's features with the
  Leiden filter and the SS schedule; the ImageNet All4One recipe (VIBE_SPEC.md section 3)."""
  for name in ("imagenet30_wanet", "imagenet1k_wanet"):
    assert importlib.import_module(f"configs.{name}").get_config("a").attack.params.grid_size == 224
  for variant in ("a", "f"):
    config = importlib.import_module("configs.imagenet1k_badnets").get_config(variant)
    assert (config.backbone.arch, config.features.extractor, config.filter.leiden) == (
        "resnet50",
        "backbone",
        "on",
    )
    assert (config.train.steps, config.estep.period, config.train.batch_size) == (30000, 1000, 256)
  fm = importlib.import_module("configs.imagenet1k_blend").get_config("fm_a")
  assert (fm.features.extractor, fm.filter.leiden) == ("backbone", "auto")
  ssl = importlib.import_module("configs.imagenet30_blend").get_config("a").ssl
  assert (ssl.method, ssl.batch_size, ssl.blur_prob, ssl.blur_prob_second) == (
      "all4one",
      128,
      1.0,
      0.1,
  )
  assert ssl.steps == 400 * (39_000 // 128) and ssl.warmup_steps == 10 * (39_000 // 128)
  assert importlib.import_module("configs.cifar10_blend").get_config("a").ssl.blur_prob == 0.0
