"""The defense end to end on digits (issue thresholds); CIFAR-10 on mock data."""

import pytest

from configs import cifar10_badnets, digits_badnets, digits_blend, digits_bn_all2all, digits_wanet
from vibe_jax import run


# (config module, variant, baseline ASR at least, VIBE ASR at most, VIBE ACC at least)
THRESHOLDS = [
    (digits_badnets, "a", 0.80, 0.02, 0.90),
    (digits_badnets, "f", 0.80, 0.02, 0.90),
    (digits_blend, "a", 0.70, 0.05, 0.90),
    (digits_blend, "f", 0.70, 0.05, 0.90),
    (digits_wanet, "a", 0.50, 0.05, 0.90),
    (digits_wanet, "f", 0.50, 0.05, 0.90),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "module,variant,baseline_asr,vibe_asr,vibe_acc",
    THRESHOLDS,
    ids=[f"{m.__name__.split('.')[-1]}-{v}" for m, v, *_ in THRESHOLDS],
)
def test_vibe_defends_digits(tmp_path, module, variant, baseline_asr, vibe_asr, vibe_acc):
  results = run.train_and_evaluate(module.get_config(variant), str(tmp_path))
  assert results["baseline"]["asr"] >= baseline_asr, results  # the attack works
  assert results["vibe"]["asr"] <= vibe_asr, results  # VIBE neutralises it
  assert results["vibe"]["acc"] >= vibe_acc, results


@pytest.mark.slow
def test_all_to_all_is_defended(tmp_path):
  results = run.train_and_evaluate(digits_bn_all2all.get_config(), str(tmp_path))
  assert results["vibe"]["asr"] <= 0.02 and results["vibe"]["acc"] >= 0.90, results


def test_cifar10_config_runs_on_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  config = cifar10_badnets.get_config("a,runlocal")
  config.dataset.data_dir = str(tmp_path / "tfds")
  with tfds.testing.mock_data(num_examples=200, policy=tfds.testing.MockPolicy.USE_CODE):
    results = run.train_and_evaluate(config, str(tmp_path / "work"))
  assert 0.0 <= results["vibe"]["acc"] <= 1.0
