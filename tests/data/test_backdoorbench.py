"""A BackdoorBench record (written here with torch.save in BackdoorBench v2's layout) read
without torch as attack 'backdoorbench' on the digits data set; malicious and mismatched
records fail with clear errors."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from helpers import ROOT, backdoorbench_record  # noqa: E402
from helpers.configs import experiment_config  # noqa: E402
from vibe_jax import experiment, safe_pickle  # noqa: E402
from vibe_jax.data.datasets import load_dataset  # noqa: E402

TARGET = 0


def triggered(images):
  images = images.copy()
  images[:, -4:, -4:] = 255  # a white corner patch
  return images


@pytest.fixture(scope="module")
def digits():
  return load_dataset("digits")


@pytest.fixture
def record(tmp_path, digits):
  rng = np.random.default_rng(0)
  train_mask = np.zeros(len(digits.train_labels), bool)
  train_mask[rng.choice(np.flatnonzero(digits.train_labels != TARGET), 7, replace=False)] = True
  test_mask = digits.test_labels != TARGET
  path = str(tmp_path / "record" / "badnet_digits")
  backdoorbench_record.write_record(
      path,
      (triggered(digits.train_images), digits.train_labels, train_mask),
      (triggered(digits.test_images), digits.test_labels, test_mask),
      target=TARGET,
      num_classes=10,
      clean_data="digits",
  )
  return path, train_mask, test_mask


def config_for(path):
  config = experiment_config("digits_badnets")
  config.attack.name = "backdoorbench"
  config.attack.params = {"record": path}
  return config


def test_record_becomes_the_poisoned_sets(record, digits):
  path, train_mask, test_mask = record
  built = experiment.build_experiment(config_for(path))
  train, test = built.poisoned_train, built.poisoned_test
  np.testing.assert_array_equal(train.poison_mask, train_mask)
  expected = np.where(
      train_mask[:, None, None, None], triggered(digits.train_images), digits.train_images
  )
  np.testing.assert_array_equal(train.images, expected)
  np.testing.assert_array_equal(train.labels, np.where(train_mask, TARGET, digits.train_labels))
  np.testing.assert_array_equal(train.true_labels, digits.train_labels)
  np.testing.assert_array_equal(test.images, triggered(digits.test_images[test_mask]))
  np.testing.assert_array_equal(test.true_labels, digits.test_labels[test_mask])
  assert (test.attacker_labels == TARGET).all()
  lazy = experiment.build_experiment(config_for(path), lazy_train=True).poisoned_train
  rows = np.flatnonzero(train_mask)[:3].tolist() + [0, 1]
  np.testing.assert_array_equal(lazy.images.read(np.array(rows)), expected[rows])


def test_reader_does_not_import_torch(record):
  """A training process never imports torch: the .pt is parsed by safe_pickle."""
  import subprocess

  code = (
      "import sys; from vibe_jax.data import backdoorbench; "
      f"r = backdoorbench.load_record({record[0]!r}); "
      "assert 'torch' not in sys.modules; print(len(r.train.indices))"
  )
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
  assert done.returncode == 0 and done.stdout.strip() == "7", done.stderr[-2000:]


def test_malicious_record_is_refused_unrun(tmp_path):
  import torch

  marker = tmp_path / "ran"

  class Payload:

    def __reduce__(self):
      return (os.mkdir, (str(marker),))

  (tmp_path / "rec").mkdir()
  torch.save({"bd_train": Payload()}, tmp_path / "rec" / "attack_result.pt")
  config = config_for(str(tmp_path / "rec"))
  with pytest.raises(safe_pickle.UnsafePickleError, match=r"attack\.params\.record.*mkdir"):
    experiment.build_experiment(config)
  assert not marker.exists()
  (tmp_path / "rec" / "attack_result.pt").write_bytes(b"\x80\x02legacy torch file")
  with pytest.raises(ValueError, match="not a torch.save zip archive"):
    experiment.build_experiment(config)


def test_mismatched_or_incomplete_records_are_clear_errors(record, digits):
  path, train_mask, _ = record
  config = config_for(path)
  config.dataset.split_seed = 1  # another split: the stored original labels disagree
  with pytest.raises(ValueError, match="original label .* another data set or sample order"):
    experiment.build_experiment(config)
  first = np.flatnonzero(train_mask)[0]
  os.remove(os.path.join(path, "bd_train_dataset", str(digits.train_labels[first]), f"{first}.png"))
  with pytest.raises(FileNotFoundError, match=f"poisoned sample {first} is missing"):
    experiment.build_experiment(config_for(path))
  with pytest.raises(FileNotFoundError, match="no attack_result.pt"):
    experiment.build_experiment(config_for(os.path.dirname(path)))
