"""The preparation steps (vibe_jax/prepare.py): the evaluation sets' scoring, the VIBE
models' construction."""

import jax.numpy as jnp

from configs import digits_badnets
from helpers.attacks import attack, data
from vibe_jax.em import inference
from vibe_jax.prepare import EvalSets, ModelFactory
from vibe_jax.variants import get_variant


def test_evaluate_adds_per_attack_entries(monkeypatch):
  images, labels = data(60)
  test = attack("multi", attacks="badnets,blend", targets="0,1").poison_test(images, labels)
  poisoned_predictions = test.attacker_labels.copy()  # badnets succeeds, blend fails
  blend_rows = test.attack_index == 1
  poisoned_predictions[blend_rows] = test.true_labels[blend_rows]
  clean_inputs, poisoned_inputs = jnp.zeros((60, 1)), jnp.ones((len(test.images), 1))
  fake = lambda model, inputs, preprocess=None: (
      poisoned_predictions if inputs[0, 0] == 1 else labels
  )
  monkeypatch.setattr(inference, "predict", fake)
  eval_sets = EvalSets(
      clean_inputs=clean_inputs,
      clean_labels=labels,
      poisoned_inputs=poisoned_inputs,
      poisoned_true_labels=test.true_labels,
      attacker_labels=test.attacker_labels,
      attack_index=test.attack_index,
      attack_names=test.attack_names,
  )
  result = eval_sets.evaluate(None)
  assert result["acc"] == 1.0
  assert result["asr/badnets"] == 1.0 and result["asr/blend"] == 0.0 and result["ra/blend"] == 1.0


def test_model_factory_builds_the_configured_likelihood():
  config = digits_badnets.get_config("f,runlocal")
  config.vibe.feature_likelihood = "normalized"
  factory = ModelFactory(config, get_variant("f"), jnp.eye(3, 4))
  head = factory(kappa=10.0).head
  assert (head.likelihood, head.feature_likelihood) == ("f", "normalized")
