"""Experiment assembly (vibe_jax/experiment.py): bad input fails early, with a message that
names the config field."""

import numpy as np
import pytest

from helpers.configs import tiny_config
from vibe_jax import experiment, run


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("variant", "zz", r"variant 'zz' \(config field variant\); known: a, f"),
        ("dataset.name", "svhn", r"known: .*digits"),
        ("attack.name", "trojannn", r"known: .*badnets"),
        ("features.extractor", "clip", r"features\.extractor"),
        ("attack.rate", 1.2, r"attack\.rate=1\.2 must lie in \(0, 1\)"),
        ("attack.rate", 0.0, r"attack\.rate"),
        ("attack.target", 10, r"attack\.target=10 must lie in \[0, 10\)"),
        ("train.batch_size", 5000, r"train\.batch_size=5000 exceeds"),
        ("estep.period", 0, r"estep\.period=0 must be positive"),
    ],
)
def test_config_errors(tmp_path, field, value, match):
  config = tiny_config()
  *path, last = field.split(".")
  node = config
  for part in path:
    node = node[part]
  node[last] = value
  with pytest.raises(ValueError, match=match):
    run.train_and_evaluate(config, str(tmp_path))


def test_missing_data_dir(tmp_path):
  config = tiny_config("cifar10_badnets")
  config.dataset.data_dir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="dataset.data_dir"):
    run.train_and_evaluate(config, str(tmp_path))


def test_attack_that_cannot_load_per_host_is_a_clear_error():
  """Before any process joins: label_consistent poisons from the whole training set."""
  from configs import digits_label_consistent

  config = digits_label_consistent.get_config()
  config.parallel.coordinator_address = "127.0.0.1:1234"
  config.parallel.num_processes = 2
  with pytest.raises(ValueError, match=r"set parallel\.per_host_loading=False"):
    experiment.validate_config(config)
  config.parallel.per_host_loading = False
  experiment.validate_config(config)


def test_costly_poison_is_cached_in_the_workdir(tmp_path, monkeypatch):
  """label_consistent's surrogate and PGD run once per workdir: a rerun reads the perturbed
  images back (the same set as computing it), another attack setting recomputes them."""
  from helpers.attacks import FAST_LC
  from vibe_jax.data.attacks.label_consistent import LabelConsistent

  config = tiny_config("digits_label_consistent")
  config.attack.params.update(FAST_LC)
  original, calls = LabelConsistent.adversarial_images, []

  def counted(self, *args):
    calls.append(self.eps)
    return original(self, *args)

  monkeypatch.setattr(LabelConsistent, "adversarial_images", counted)
  computed = experiment.build_experiment(config).poisoned_train  # no workdir: no cache
  first = experiment.build_experiment(config, workdir=str(tmp_path)).poisoned_train
  again = experiment.build_experiment(config, workdir=str(tmp_path)).poisoned_train
  assert len(calls) == 2 and (tmp_path / experiment.POISON_CACHE).exists()
  for train in (first, again):
    for field in ("images", "labels", "true_labels", "poison_mask"):
      np.testing.assert_array_equal(getattr(train, field), getattr(computed, field))
  config.attack.params.eps = 8.0
  experiment.build_experiment(config, workdir=str(tmp_path))
  assert calls == [16.0, 16.0, 8.0]
