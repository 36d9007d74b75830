"""One slow digits run per attack beyond BadNets, Blend and WaNet (the attacks' own tests:
test_ftrojan.py, test_adaptive.py, ...)."""

from __future__ import annotations

import functools
import importlib

import jax.numpy as jnp
import numpy as np
import pytest

from vibe_jax import metrics, run


@functools.lru_cache(maxsize=None)
def clean_reference_accuracy() -> float:
  """Test ACC of the undefended baseline trained on the *clean* digits training set, with
  the digits configs' features, head and schedule."""
  from flax import nnx
  from vibe_jax import features as features_lib, parallel
  from vibe_jax.data import datasets
  from vibe_jax.em import inference, loop
  from vibe_jax.em.data import shard_training_data
  from vibe_jax.models.vibe import VibeHead, VibeModel, class_centroids

  config = importlib.import_module("configs.digits_badnets").get_config()
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


# (attack, baseline ASR at least, VIBE ASR at most), variant A. Measured at seed 0:
#   label_consistent (the reference's 25 % of class 0): baseline 14.6 %, VIBE 1.6 %. A linear
#     head on pixels keeps the clean evidence of every digit, so this clean-label attack
#     implants weakly on digits (configs/digits_label_consistent.py says why); bound 10 %.
#   uba_patch: VIBE-A 5.6 % (seed 0; 3.5, 3.9, 2.2, 4.8 % at seeds 1-4; a clean model scores
#     0.6 %): an input-agnostic p(y|l) sees many-to-many flips as symmetric label noise and
#     leaves a small residual; VIBE-F reaches 1.7 %. Bound 8 %.
E2E = [
    ("ftrojan", 0.70, 0.05),
    ("adaptive_blend", 0.70, 0.05),
    ("adaptive_patch", 0.70, 0.05),
    ("label_consistent", 0.10, 0.05),
    ("uba_patch", 0.70, 0.08),
    ("uba_blend", 0.70, 0.05),
    ("multi", 0.70, 0.05),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,baseline_asr,vibe_asr", E2E, ids=[e[0] for e in E2E])
def test_vibe_defends_digits(tmp_path, name, baseline_asr, vibe_asr):
  config = importlib.import_module(f"configs.digits_{name}").get_config("a")
  results = run.train_and_evaluate(config, str(tmp_path))
  assert results["baseline"]["asr"] >= baseline_asr, results
  assert results["vibe"]["asr"] <= vibe_asr, results
  assert results["vibe"]["asr"] < results["baseline"]["asr"], results
  assert results["vibe"]["acc"] >= clean_reference_accuracy() - 0.03, results
  if name == "multi":
    for sub in ("badnets", "blend", "wanet"):
      assert results["baseline"][f"asr/{sub}"] >= 0.7 and results["vibe"][f"asr/{sub}"] <= 0.05
