"""Experiment assembly: validated config -> devices -> data set -> attack. Shared by the
VIBE run (vibe_jax.run) and pretraining (vibe_jax.ssl.pretrain), so neither imports the other."""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
from jax.sharding import Mesh

from vibe_jax import features as features_lib
from vibe_jax import parallel
from vibe_jax.data import attacks, checks, datasets
from vibe_jax.variants import get_variant

__all__ = [
    "Experiment",
    "build_experiment",
    "loads_per_host",
    "setup_devices",
    "validate_config",
    "validate_data_config",
]


@dataclasses.dataclass(frozen=True)
class Experiment:
  """The data set, the attack, and what the attack made of the training and test sets."""

  dataset: datasets.Dataset
  attack: attacks.Attack
  poisoned_train: attacks.PoisonedTrainSet
  poisoned_test: attacks.PoisonedTestSet


def validate_data_config(config: ml_collections.ConfigDict) -> None:
  """The data set and attack fields alone: what --mode pretrain needs, before any backbone
  checkpoint exists."""
  datasets.DATASETS.get(config.dataset.name, field="dataset.name")
  attacks.ATTACKS.get(config.attack.name, field="attack.name")
  if not 0.0 < config.attack.rate < 1.0:
    raise ValueError(f"attack.rate={config.attack.rate} must lie in (0, 1), e.g. 0.1.")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails early, naming the field, before data is loaded or anything is compiled."""
  variant = get_variant(config.variant)
  validate_data_config(config)
  if (
      config.parallel.coordinator_address
      and config.parallel.per_host_loading
      and not attacks.ATTACKS.get(config.attack.name).poisons_row_by_row()
  ):
    raise ValueError(
        f"attack {config.attack.name!r} poisons from the whole training set, so hosts "
        "cannot each load only their rows: set parallel.per_host_loading=False (every "
        "host then loads the whole training set)."
    )
  if not variant.finetune_backbone:
    if not config.features.file:
      features_lib.EXTRACTORS.get(config.features.extractor, field="features.extractor")
  elif not config.backbone.checkpoint:
    raise ValueError(
        f"variant {config.variant!r} fine-tunes a backbone: set "
        "backbone.checkpoint to a vibe_jax backbone checkpoint (from --mode "
        "pretrain or convert_torch_ckpt.py)."
    )
  if config.filter.leiden not in ("auto", "on", "off"):
    raise ValueError(f"filter.leiden={config.filter.leiden!r}; use 'auto', 'on' or 'off'.")
  positive = {
      f"{section}.{field}": config[section][field]
      for section in ("train", "baseline")
      for field in ("steps", "batch_size", "log_every", "eval_every")
  }
  positive.update(
      {
          "estep.period": config.estep.period,
          "estep.lam": config.estep.lam,
          "checkpoint.every": config.checkpoint.every,
      }
  )
  for field, value in positive.items():
    if not value > 0:
      raise ValueError(f"{field}={value} must be positive.")


def setup_devices(config: ml_collections.ConfigDict) -> Mesh:
  """Joins the multi-host job when configured, then builds the device mesh."""
  parallel.initialize_distributed(config.parallel)
  return parallel.make_mesh(config.parallel.num_devices or None)


def loads_per_host(config: ml_collections.ConfigDict) -> bool:
  """Whether each process reads only its own training rows (a multi-process run with
  parallel.per_host_loading)."""
  return bool(config.parallel.per_host_loading) and jax.process_count() > 1


def build_experiment(config: ml_collections.ConfigDict, lazy_train: bool = False) -> Experiment:
  """Loads the data set and poisons it as configured; with `lazy_train` the poisoned
  training images are Rows, read and poisoned only when asked for."""
  options = config.dataset.get("options")
  dataset = datasets.load_dataset(
      config.dataset.name,
      config.dataset.data_dir or None,
      seed=config.dataset.split_seed,
      lazy_train=lazy_train,
      **(options.to_dict() if options else {}),
  )
  attack = attacks.make_attack(
      config.attack.name,
      num_classes=dataset.num_classes,
      image_shape=dataset.image_shape,
      target=config.attack.target,
      rate=config.attack.rate,
      label_mode=config.attack.label_mode,
      seed=config.attack.seed,
      params=config.attack.params.to_dict(),
  )
  _check_dataset_labels(dataset)
  poison_train = attack.poison_train_rows if lazy_train else attack.poison_train
  experiment = Experiment(
      dataset=dataset,
      attack=attack,
      poisoned_train=poison_train(dataset.train_images, dataset.train_labels),
      poisoned_test=attack.poison_test(dataset.test_images, dataset.test_labels),
  )
  _check_poisoned_labels(experiment, config.attack.name)
  return experiment


def _check_dataset_labels(dataset: datasets.Dataset) -> None:
  """The data set's labels: rows present, integers in [0, num_classes)."""
  where = f"data set {dataset.name!r} (dataset.name)"
  for name, labels in (
      ("train_labels", dataset.train_labels),
      ("test_labels", dataset.test_labels),
  ):
    checks.check_rows(labels, where, name)
    checks.check_labels(labels, dataset.num_classes, where, name)


def _check_poisoned_labels(experiment: Experiment, attack_name: str) -> None:
  """What the attack made of the labels, in [0, num_classes) (a pre-poisoned file's labels
  are checked where it is read, naming the file)."""
  where = f"attack {attack_name!r} (attack.name)"
  train, test = experiment.poisoned_train, experiment.poisoned_test
  for name, labels in (
      ("given training labels", train.labels),
      ("true training labels", train.true_labels),
      ("poisoned test true labels", test.true_labels),
      ("poisoned test attacker labels", test.attacker_labels),
  ):
    checks.check_rows(labels, where, name)
    checks.check_labels(labels, experiment.dataset.num_classes, where, name)
