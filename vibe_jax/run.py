"""Experiment entry points (main.py calls these): train a defended model and report."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from vibe_jax import features as features_lib
from vibe_jax import metrics
from vibe_jax.data import attacks
from vibe_jax.data import datasets
from vibe_jax.em import loop
from vibe_jax.models.vibe import VibeHead, VibeModel, class_centroids
from vibe_jax.variants import get_variant


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Everything the training code needs, built from the config before any training."""
  dataset: datasets.Dataset
  attack: attacks.Attack
  poisoned_train: attacks.PoisonedTrainSet
  poisoned_test: attacks.PoisonedTestSet


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails early, naming the field, before data is loaded or anything is compiled."""
  get_variant(config.variant)
  datasets.DATASETS.get(config.dataset.name, field="dataset.name")
  attacks.ATTACKS.get(config.attack.name, field="attack.name")
  features_lib.EXTRACTORS.get(config.features.extractor, field="features.extractor")
  if not 0.0 < config.attack.rate < 1.0:
    raise ValueError(f"attack.rate={config.attack.rate} must lie in (0, 1), e.g. 0.1.")
  positive = {"train.steps": config.train.steps, "train.batch_size": config.train.batch_size,
              "train.log_every": config.train.log_every,
              "train.eval_every": config.train.eval_every, "estep.period": config.estep.period,
              "estep.lam": config.estep.lam, "baseline.steps": config.baseline.steps}
  for field, value in positive.items():
    if not value > 0:
      raise ValueError(f"{field}={value} must be positive.")


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
  """Loads the data set and poisons it as configured."""
  options = config.dataset.get("options")
  dataset = datasets.load_dataset(config.dataset.name, config.dataset.data_dir or None,
                                  seed=config.dataset.split_seed,
                                  **(options.to_dict() if options else {}))
  attack = attacks.make_attack(
      config.attack.name, num_classes=dataset.num_classes, image_shape=dataset.image_shape,
      target=config.attack.target, rate=config.attack.rate,
      label_mode=config.attack.label_mode, seed=config.attack.seed,
      params=config.attack.params.to_dict())
  return Experiment(dataset, attack, attack.poison_train(dataset.train_images,
                                                         dataset.train_labels),
                    attack.poison_test(dataset.test_images, dataset.test_labels))


def frozen_features(config: ml_collections.ConfigDict, experiment: Experiment,
                    workdir: str) -> dict[str, np.ndarray]:
  """Train / clean-test / poisoned-test features, cached in the workdir."""
  def compute():
    extract = features_lib.make_extractor(config.features, experiment.poisoned_train.images)
    return {"train": extract(experiment.poisoned_train.images),
            "test": extract(experiment.dataset.test_images),
            "poisoned_test": extract(experiment.poisoned_test.images)}
  fingerprint = {key: config[key].to_dict() for key in ("dataset", "attack", "features")}
  return features_lib.cached_features(os.path.join(workdir, "features.npz"), fingerprint,
                                      compute)


def build_model(config: ml_collections.ConfigDict, train_features: jax.Array,
                given_labels: jax.Array, num_classes: int, kappa: float) -> VibeModel:
  """The VIBE head with mu_z and mu_y at the class centroids under the given labels."""
  centroids = class_centroids(train_features, given_labels, num_classes)
  head = VibeHead(num_classes, train_features.shape[-1], kappa=kappa,
                  nu=config.vibe.nu, prior_temperature=config.vibe.prior_temperature,
                  likelihood=get_variant(config.variant).likelihood,
                  rngs=nnx.Rngs(config.seed), mu_z=centroids, mu_y=centroids)
  return VibeModel(head)


def evaluate(model: VibeModel, test_inputs, test_labels, poisoned_inputs,
             poisoned_experiment_set: attacks.PoisonedTestSet) -> dict[str, float]:
  poisoned_predictions = loop.predict(model, poisoned_inputs)
  results = metrics.defense_metrics(
      loop.predict(model, test_inputs), test_labels,
      poisoned_predictions, poisoned_experiment_set.true_labels,
      poisoned_experiment_set.attacker_labels)
  if poisoned_experiment_set.attack_index is not None:  # several attacks: ASR/RA per attack
    results.update(metrics.per_attack_metrics(
        poisoned_predictions, poisoned_experiment_set.true_labels,
        poisoned_experiment_set.attacker_labels, poisoned_experiment_set.attack_index,
        poisoned_experiment_set.attack_names))
  return results


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Poisons the data, trains the undefended baseline and VIBE, writes results.json."""
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  started = time.time()
  experiment = build_experiment(config)
  train = experiment.poisoned_train
  feats = frozen_features(config, experiment, workdir)
  train_features = jnp.asarray(feats["train"])
  given = jnp.asarray(train.labels)
  data = loop.TrainData(train_features, given, train.true_labels, train.poison_mask)
  num_classes = experiment.dataset.num_classes
  test_inputs, poisoned_inputs = jnp.asarray(feats["test"]), jnp.asarray(feats["poisoned_test"])
  evaluate_fn = lambda model: evaluate(model, test_inputs, experiment.dataset.test_labels,
                                       poisoned_inputs, experiment.poisoned_test)
  log_path = os.path.join(workdir, "log.jsonl")
  log_file = open(log_path, "w")

  def logger(phase):
    def log(record):
      log_file.write(json.dumps({"phase": phase, **record}) + "\n")
      log_file.flush()
    return log

  results = {"config": {"dataset": config.dataset.name, "attack": config.attack.name,
                        "variant": config.variant}}
  if config.baseline.enabled:
    baseline_model = build_model(config, train_features, given, num_classes,
                                 kappa=config.baseline.kappa)
    baseline_model = loop.fit(baseline_model, data, config, objective="baseline",
                              steps=config.baseline.steps, optimizer_config=config.baseline,
                              log=logger("baseline"), desc="baseline")
    results["baseline"] = evaluate_fn(baseline_model)
  variant = get_variant(config.variant)
  model = build_model(config, train_features, given, num_classes, kappa=config.vibe.kappa)
  model = loop.fit(model, data, config, objective="vibe", steps=config.train.steps,
                   optimizer_config=config.train, train_mu_y=variant.train_mu_y,
                   evaluate=evaluate_fn, log=logger("vibe"), desc=f"vibe-{config.variant}")
  results["vibe"] = evaluate_fn(model)
  log_file.close()
  results["seconds"] = round(time.time() - started, 1)
  write_json_atomically(os.path.join(workdir, "results.json"), results)
  print(format_results_table(results))
  return results


def write_json_atomically(path: str, payload: dict) -> None:
  temporary = path + ".tmp"
  with open(temporary, "w") as f:
    json.dump(payload, f, indent=2)
  os.replace(temporary, path)


def format_results_table(results: dict) -> str:
  """Baseline vs VIBE, ACC / ASR / RA in percent."""
  rows = [("model", "ACC", "ASR", "RA")]
  for name in ("baseline", "vibe"):
    if name in results:
      rows.append((name if name == "baseline" else f"VIBE ({results['config']['variant']})",
                   *(f"{100 * results[name][m]:.2f}" for m in ("acc", "asr", "ra"))))
  widths = [max(len(row[i]) for row in rows) for i in range(4)]
  lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
  return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])
