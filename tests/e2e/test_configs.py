"""Every config in configs/ runs a few steps end to end: tfds mock data for CIFAR and
ImageNet-1k, a tiny image folder for ImageNet-30, small IDX files for Fashion-MNIST. The
digits configs run at their own schedules in e2e/test_digits.py."""

import os

import numpy as np
import pytest
from PIL import Image

from helpers.attacks import FAST_LC
from helpers.configs import CONFIGS, tiny_config
from helpers.idx_files import write_idx_set
from vibe_jax import run


def image_folder(root, classes=3, per_class=4, size=40):
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for c in range(classes):
      os.makedirs(root / split / f"class{c}", exist_ok=True)
      for i in range(per_class):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            root / split / f"class{c}" / f"{i}.png"
        )


def backdoorbench_record_of(config, path):
  """A BackdoorBench record of the (mock) data set: a corner patch on 6 training images and
  every non-target test image, target 0."""
  from helpers.backdoorbench_record import write_record
  from vibe_jax.data.datasets import load_dataset

  data = load_dataset(config.dataset.name, config.dataset.data_dir)
  patched = lambda images: np.concatenate([images[:, :-3], np.full_like(images[:, -3:], 255)], 1)
  train_mask = np.zeros(len(data.train_labels), bool)
  train_mask[:6] = True
  write_record(
      str(path),
      (patched(data.train_images), data.train_labels, train_mask),
      (patched(data.test_images), data.test_labels, data.test_labels != 0),
      target=0,
      num_classes=data.num_classes,
  )
  return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [c for c in CONFIGS if not c.startswith("digits_")])
def test_config_runs_a_few_steps(name, tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  # A few steps of batch 8: the mock sets hold 60 images.
  config = tiny_config(
      name,
      "f",
      {
          "train.steps": 4,
          "train.batch_size": 8,
          "train.log_every": 2,
          "train.eval_every": 2,
          "baseline.steps": 2,
          "baseline.batch_size": 8,
          "estep.period": 2,
      },
  )
  if config.dataset.name != "digits":
    config.dataset.data_dir = str(tmp_path / "data")
  if config.dataset.name.startswith("imagenet"):
    config.dataset.options.image_size = 32  # keep the pixel features small
    if config.attack.name == "wanet":
      config.attack.params.grid_size = 4  # the reference's k = 224 needs 224 x 224 images
  if config.features.extractor == "backbone":  # ImageNet-1k's ResNet-50: pixels will do here
    config.features.extractor = "pixels"
  if config.attack.name in ("uba_patch", "uba_blend"):
    config.attack.params.num_poisoned = 0  # rate x N on the tiny mock set
  # A few steps of label_consistent's surrogate and PGD too (runlocal cuts the resnet one's).
  if config.attack.name == "label_consistent" and config.attack.params.surrogate == "mlp":
    config.attack.params.update(FAST_LC)
  if config.dataset.name in ("imagenet30", "image_folder"):
    image_folder(tmp_path / "data")
    if config.dataset.name == "image_folder":  # a data owner's folders (configs/own_data.py)
      config.dataset.data_dir = str(tmp_path / "data" / "train")
      config.dataset.options.validation_dir = str(tmp_path / "data" / "test")
    results = run.train_and_evaluate(config, str(tmp_path / "work"))
  elif config.dataset.name == "fashion_mnist":
    (tmp_path / "data").mkdir()
    write_idx_set(tmp_path / "data", 60, 20)
    # The deep victim is on in these configs; it trains in e2e/test_victim.py.
    assert config.victim.enabled
    config.victim.enabled = False
    results = run.train_and_evaluate(config, str(tmp_path / "work"))
  else:
    with tfds.testing.mock_data(num_examples=60, policy=tfds.testing.MockPolicy.USE_CODE):
      if config.attack.name == "backdoorbench":
        config.attack.params.record = backdoorbench_record_of(config, tmp_path / "record")
      results = run.train_and_evaluate(config, str(tmp_path / "work"))
  assert 0.0 <= results["vibe"]["acc"] <= 1.0
