"""The defense end to end on digits at the configs' own schedules (the issue's thresholds):
the undefended baseline learns each attack, VIBE neutralises it and keeps the accuracy."""

import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from helpers.configs import experiment_config
from helpers.shared import once_per_session
from vibe_jax import metrics, run


def train_variants(module, variants, root):
  """{variant: results} of `module`'s config for each variant (report off). The undefended
  baseline does not depend on the variant (the same features, head, objective and
  schedule): the first run trains it, the others run without it (a workdir's checkpoints
  belong to its experiment, so they cannot be copied across variants) and report the first
  run's baseline; they reuse its cached features."""
  results, first = {}, None
  for variant in variants:
    workdir = root / variant
    overrides = {} if first is None else {"baseline.enabled": False}
    if first is not None:
      workdir.mkdir()
      shutil.copy(first / "features.npz", workdir / "features.npz")
    results[variant] = run.train_and_evaluate(
        experiment_config(module, variant, overrides), str(workdir)
    )
    if first is not None:
      results[variant]["baseline"] = results[variants[0]]["baseline"]
    first = first or workdir
  return results


# (config module, baseline ASR at least, VIBE ASR at most, VIBE ACC at least), variants a, f.
THRESHOLDS = [
    ("digits_badnets", 0.80, 0.02, 0.90),
    ("digits_blend", 0.70, 0.05, 0.90),
    ("digits_wanet", 0.50, 0.05, 0.90),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "module,baseline_asr,vibe_asr,vibe_acc", THRESHOLDS, ids=[t[0] for t in THRESHOLDS]
)
def test_vibe_defends_digits(tmp_path, module, baseline_asr, vibe_asr, vibe_acc):
  both = train_variants(module, ("a", "f"), tmp_path)
  for results in both.values():
    assert results["baseline"]["asr"] >= baseline_asr, results  # the attack works
    assert results["vibe"]["asr"] <= vibe_asr, results  # VIBE neutralises it
    assert results["vibe"]["acc"] >= vibe_acc, results


@pytest.mark.slow
def test_all_to_all_is_defended(tmp_path):
  config = experiment_config("digits_bn_all2all", "a", {"baseline.enabled": False})
  results = run.train_and_evaluate(config, str(tmp_path))
  assert results["vibe"]["asr"] <= 0.02 and results["vibe"]["acc"] >= 0.90, results


def clean_reference_accuracy() -> float:
  """Test ACC of the undefended baseline trained on the *clean* digits training set, with
  the digits configs' features, head and schedule."""
  from flax import nnx
  from vibe_jax import features as features_lib, parallel
  from vibe_jax.data import datasets
  from vibe_jax.em import inference, loop
  from vibe_jax.em.data import shard_training_data
  from vibe_jax.models.vibe import VibeHead, VibeModel, class_centroids

  config = experiment_config("digits_badnets")
  dataset = datasets.load_dataset("digits", seed=config.dataset.split_seed)
  extract = features_lib.make_extractor(config, dataset.train_images)
  train, labels = extract(dataset.train_images), dataset.train_labels
  mesh = parallel.make_mesh(1)
  centroids = class_centroids(jnp.asarray(train), jnp.asarray(labels), dataset.num_classes)
  head = VibeHead(
      dataset.num_classes,
      centroids.shape[-1],
      kappa=config.baseline.kappa,
      nu=config.vibe.nu,
      prior_temperature=config.vibe.prior_temperature,
      likelihood="a",
      rngs=nnx.Rngs(config.seed),
      mu_z=centroids,
      mu_y=centroids,
  )
  data = shard_training_data(train, labels, labels, np.zeros(len(labels), bool), mesh)
  baseline = loop.phases(config, train_mu_y=True)[0]
  model = loop.fit(VibeModel(head), data, baseline, mesh=mesh)
  predictions = inference.predict(model, parallel.replicate(extract(dataset.test_images), mesh))
  return metrics.accuracy(predictions, dataset.test_labels)


E2E = [
    ("ftrojan", 0.70, 0.05),
    ("adaptive_blend", 0.70, 0.05),
    ("adaptive_patch", 0.70, 0.05),
    ("label_consistent", 0.10, 0.05),
    ("uba_patch", 0.70, 0.08),
    ("uba_blend", 0.70, 0.05),
    ("multi", 0.70, 0.05),
]


@pytest.fixture
def clean_accuracy(tmp_path_factory):
  """clean_reference_accuracy(), computed once per session."""
  return once_per_session(tmp_path_factory, "clean_reference_accuracy", clean_reference_accuracy)


@pytest.mark.slow
@pytest.mark.parametrize("name,baseline_asr,vibe_asr", E2E, ids=[e[0] for e in E2E])
def test_vibe_defends_digits_against_more_attacks(
    tmp_path, clean_accuracy, name, baseline_asr, vibe_asr
):
  results = run.train_and_evaluate(experiment_config(f"digits_{name}"), str(tmp_path))
  assert results["baseline"]["asr"] >= baseline_asr, results
  assert results["vibe"]["asr"] <= vibe_asr, results
  assert results["vibe"]["asr"] < results["baseline"]["asr"], results
  assert results["vibe"]["acc"] >= clean_accuracy - 0.03, results
  if name == "multi":
    for sub in ("badnets", "blend", "wanet"):
      assert results["baseline"][f"asr/{sub}"] >= 0.7 and results["vibe"][f"asr/{sub}"] <= 0.05
