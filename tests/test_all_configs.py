"""Every config in configs/ builds, and runs a few steps (mock or made-up data where the
real data set is absent: tfds mock data for CIFAR / ImageNet-1k, a tiny image folder for
ImageNet-30)."""

import glob
import importlib
import os

import numpy as np
import pytest
from PIL import Image

from vibe_jax import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if not p.endswith(("common.py", "__init__.py"))
)


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
  if variant.startswith("fm") and not name.startswith("digits"):
    assert (config.train.steps, config.estep.period, config.train.batch_size) == (15000, 500, 1024)


def image_folder(root, classes=3, per_class=4, size=40):
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for c in range(classes):
      os.makedirs(root / split / f"class{c}", exist_ok=True)
      for i in range(per_class):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            root / split / f"class{c}" / f"{i}.png"
        )


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_config_runs_a_few_steps(name, tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  config = importlib.import_module(f"configs.{name}").get_config("f,runlocal")
  config.train.update({"steps": 4, "batch_size": 8, "log_every": 2, "eval_every": 2})
  config.baseline.update({"steps": 2, "batch_size": 8})
  config.estep.period = 2
  if config.dataset.name != "digits":
    config.dataset.data_dir = str(tmp_path / "data")
  if config.dataset.name.startswith("imagenet"):
    config.dataset.options.image_size = 32  # keep the pixel features small
  if config.attack.name == "uba_patch" or config.attack.name == "uba_blend":
    config.attack.params.num_poisoned = 0  # rate x N on the tiny mock set
  if config.dataset.name == "imagenet30":
    image_folder(tmp_path / "data")
    results = run.train_and_evaluate(config, str(tmp_path / "work"))
  else:
    with tfds.testing.mock_data(num_examples=60, policy=tfds.testing.MockPolicy.USE_CODE):
      results = run.train_and_evaluate(config, str(tmp_path / "work"))
  assert 0.0 <= results["vibe"]["acc"] <= 1.0
