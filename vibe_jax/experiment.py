"""Experiment assembly: validated config -> devices -> data set -> attack. Shared by the
VIBE run (vibe_jax.run) and pretraining (vibe_jax.ssl.pretrain), so neither imports the other."""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from vibe_jax import features as features_lib
from vibe_jax import parallel
from vibe_jax.data import attacks, checks, datasets, transforms
from vibe_jax.em.mstep import SCHEDULES
from vibe_jax.models.resnet import check_args as check_resnet_args
from vibe_jax.models.vibe import FEATURE_LIKELIHOODS
from vibe_jax.variants import get_variant

__all__ = [
    "Experiment",
    "build_experiment",
    "check_batch_sizes",
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
  trigger_file = config.attack.params.get("trigger_file")
  if trigger_file and not os.path.isfile(os.path.expanduser(trigger_file)):
    raise FileNotFoundError(
        f"attack.params.trigger_file={trigger_file!r} does not exist; give an image file or "
        "leave it empty for the generated trigger (docs/triggers.md)."
    )


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
  if (
      config.variant.startswith("fm")
      and not config.features.file
      and config.features.extractor != "backbone"
  ):
    raise ValueError(
        f"variant {config.variant!r} (VIBE-FM) runs on a frozen foundation model's features, "
        f"but features.extractor={config.features.extractor!r} and features.file is empty: "
        "set features.extractor='backbone' (with backbone.checkpoint) or features.file."
    )
  if not variant.finetune_backbone:
    if config.features.file:
      if not os.path.isfile(os.path.expanduser(config.features.file)):
        raise FileNotFoundError(
            f"features.file={config.features.file!r} does not exist; write one with "
            "`python main.py --mode extract` or from your own model."
        )
    else:
      features_lib.EXTRACTORS.get(config.features.extractor, field="features.extractor")
  if variant.finetune_backbone or (
      not config.features.file and config.features.extractor == "backbone"
  ):
    _check_backbone_checkpoint(config)
  if config.victim.enabled:
    _check_victim(config)
  if config.vibe.feature_likelihood not in FEATURE_LIKELIHOODS:
    raise ValueError(
        f"vibe.feature_likelihood={config.vibe.feature_likelihood!r}; use one of "
        f"{FEATURE_LIKELIHOODS} (the feature in variant F's p(y|l,x) as is, or v/|v|)."
    )
  if config.filter.leiden not in ("auto", "on", "off"):
    raise ValueError(f"filter.leiden={config.filter.leiden!r}; use 'auto', 'on' or 'off'.")
  _check_numbers(config)


def _check_victim(config: ml_collections.ConfigDict) -> None:
  """The deep victim's own choices (config section victim)."""
  victim = config.victim
  if victim.init not in ("scratch", "backbone"):
    raise ValueError(
        f"victim.init={victim.init!r}; use 'scratch' (a fresh victim.arch) or 'backbone' "
        "(fine-tune backbone.checkpoint)."
    )
  if victim.init == "backbone":
    _check_backbone_checkpoint(config, "victim.init='backbone' fine-tunes a backbone")
  else:
    check_resnet_args(victim.arch, victim.stem, victim.width)
  if victim.schedule not in SCHEDULES:
    raise ValueError(f"victim.schedule={victim.schedule!r}; use one of {SCHEDULES}.")
  transforms.get_pipeline(config.dataset.name)  # its training augmentation


# Integer fields that count something (steps, rows, iterations): at least 1.
_POSITIVE_COUNTS = (
    *(
        f"{s}.{f}"
        for s in ("train", "baseline", "victim")
        for f in ("steps", "batch_size", "log_every", "eval_every")
    ),
    "estep.period",
    "estep.max_iterations",
    "features.batch_size",
    "filter.num_neighbors",
    "checkpoint.every",
)
_PHASES = ("train", "baseline", "victim")  # the config sections that configure an optimiser
# Real fields: field -> (lowest, highest, whether the lowest is allowed, whether the highest
# is, an example). The ranges keep the float32 E-step and M-step meaningful: concentrations
# and lambda of 1e30 or 1e12 made the Sinkhorn error infinite, a negative learning rate
# trained away from the data, momentum 1 never forgets.
_BOUNDED = {
    **{f"{s}.lr": (0.0, math.inf, True, False, 0.01) for s in _PHASES},
    **{f"{s}.prior_lr": (0.0, math.inf, True, False, 0.1) for s in _PHASES},
    **{f"{s}.weight_decay": (0.0, math.inf, True, False, 5e-4) for s in _PHASES},
    **{f"{s}.momentum": (0.0, 1.0, True, False, 0.9) for s in _PHASES},
    "vibe.kappa": (0.0, 1e4, False, True, 10.0),
    "vibe.nu": (0.0, 1e4, False, True, 10.0),
    "baseline.kappa": (0.0, 1e4, False, True, 100.0),
    "victim.kappa": (0.0, 1e4, False, True, 30.0),
    "vibe.prior_temperature": (0.0, 1e4, False, True, 0.02),
    "estep.lam": (0.0, 1e4, False, True, 25.0),
    "estep.threshold": (0.0, 1.0, False, False, 1e-4),
    "filter.delta": (0.0, math.inf, False, False, 0.275),
}


def _value(config: ml_collections.ConfigDict, field: str):
  section, name = field.split(".")
  return config[section][name]


def _check_numbers(config: ml_collections.ConfigDict) -> None:
  """Every numeric field with a meaning, finite and in its range, named when it is not."""
  for field in _POSITIVE_COUNTS:
    value = _value(config, field)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
      raise ValueError(f"{field}={value!r} must be positive (a whole number >= 1).")
  for field, (low, high, low_allowed, high_allowed, example) in _BOUNDED.items():
    value = _value(config, field)
    if not _within(value, low, high, low_allowed, high_allowed):
      lower = f"{'>=' if low_allowed else '>'} {low:g}"
      upper = f" and {'<=' if high_allowed else '<'} {high:g}" if math.isfinite(high) else ""
      raise ValueError(
          f"{field}={value!r} must be a finite number {lower}{upper} (e.g. {example:g})."
      )
  steps = config.estep.semi_dual_steps
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
    raise ValueError(
        f"estep.semi_dual_steps={steps!r} must be a whole number >= 0 (0: Sinkhorn only)."
    )
  if config.parallel.num_devices < 0:
    raise ValueError(f"parallel.num_devices={config.parallel.num_devices} must be >= 0 (0: all).")


def _within(value, low: float, high: float, low_allowed: bool, high_allowed: bool) -> bool:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    return False
  above = value >= low if low_allowed else value > low
  below = value <= high if high_allowed else value < high
  return above and below


def _check_backbone_checkpoint(config: ml_collections.ConfigDict, what: str = "") -> None:
  """The backbone a fine-tuned variant, the backbone extractor or the victim reads: set,
  and there. `what` reads it (default: the variant or the extractor)."""
  what = what or (
      f"variant {config.variant!r} fine-tunes a backbone"
      if get_variant(config.variant).finetune_backbone
      else "features.extractor='backbone' extracts with a backbone"
  )
  if not config.backbone.checkpoint:
    raise ValueError(
        f"{what}: set backbone.checkpoint to a vibe_jax backbone checkpoint (from --mode "
        "pretrain or convert_torch_ckpt.py)."
    )
  path = os.path.expanduser(config.backbone.checkpoint)
  if not os.path.isfile(os.path.join(path, "backbone.json")):
    raise FileNotFoundError(
        f"backbone.checkpoint={config.backbone.checkpoint!r} is not a vibe_jax backbone "
        f"checkpoint ({'no backbone.json in it' if os.path.isdir(path) else 'it does not exist'}"
        "); pretrain one (--mode pretrain) or convert one (convert_torch_ckpt.py)."
    )


def check_batch_sizes(
    config: ml_collections.ConfigDict, mesh: Mesh, num_rows: int | None = None
) -> None:
  """Each phase's batch divides over the mesh's devices and, given the training set's row
  count, fits in it: checked before features are extracted, not after."""
  sections = ["train"] + [s for s in ("baseline", "victim") if config[s].enabled]
  for section in sections:
    batch_size = config[section].batch_size
    parallel.check_batch_divides(batch_size, mesh, f"{section}.batch_size")
    if num_rows is not None and batch_size > num_rows:
      raise ValueError(
          f"{section}.batch_size={batch_size} exceeds the {num_rows} training samples; "
          f"lower {section}.batch_size."
      )


def setup_devices(config: ml_collections.ConfigDict) -> Mesh:
  """Joins the multi-host job when configured, then builds the device mesh."""
  parallel.initialize_distributed(config.parallel)
  return parallel.make_mesh(config.parallel.num_devices or None)


def loads_per_host(config: ml_collections.ConfigDict) -> bool:
  """Whether each process reads only its own training rows (a multi-process run with
  parallel.per_host_loading)."""
  return bool(config.parallel.per_host_loading) and jax.process_count() > 1


def build_experiment(
    config: ml_collections.ConfigDict, lazy_train: bool = False, workdir: str | None = None
) -> Experiment:
  """Loads the data set and poisons it as configured; with `lazy_train` the poisoned
  training images are Rows, read and poisoned only when asked for. With a `workdir`, the
  poisoned training set of an attack that is costly to compute (`caches_poison`, e.g.
  label_consistent's surrogate and PGD) is cached there (cached_poisoned_train)."""
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
  _check_dataset_labels(dataset, test_required=attack.plants_backdoor)
  if lazy_train:
    poisoned_train = attack.poison_train_rows(dataset.train_images, dataset.train_labels)
  elif workdir and attack.caches_poison and jax.process_count() == 1:
    poisoned_train = cached_poisoned_train(config, attack, dataset, workdir)
  else:
    poisoned_train = attack.poison_train(dataset.train_images, dataset.train_labels)
  experiment = Experiment(
      dataset=dataset,
      attack=attack,
      poisoned_train=poisoned_train,
      poisoned_test=attack.poison_test(dataset.test_images, dataset.test_labels),
  )
  _check_poisoned_labels(experiment, config.attack.name)
  poisoned = int(np.count_nonzero(experiment.poisoned_train.poison_mask))
  if poisoned == 0 and attack.plants_backdoor:
    logging.warning(
        "attack %r (attack.rate=%s) poisons 0 of the %d training samples: the run measures "
        "no backdoor; raise attack.rate (or the attack's own count under attack.params).",
        config.attack.name,
        config.attack.rate,
        len(experiment.poisoned_train.poison_mask),
    )
  return experiment


POISON_CACHE = "poisoned_train.npz"


def cached_poisoned_train(
    config: ml_collections.ConfigDict,
    attack: attacks.Attack,
    dataset: datasets.Dataset,
    workdir: str,
) -> attacks.PoisonedTrainSet:
  """attack.poison_train of the data set's training set, cached in workdir/POISON_CACHE
  under the data set and attack sections (features.cached_arrays, the features cache's
  fingerprint rule): only the rows the attack changed are stored, the rest are the clean
  images."""
  clean = dataset.train_images

  def compute() -> dict[str, np.ndarray]:
    train = attack.poison_train(clean, dataset.train_labels)
    changed = np.flatnonzero(np.any(train.images != clean, axis=(1, 2, 3)))
    cover = {} if train.cover_mask is None else {"cover_mask": train.cover_mask}
    return {
        "changed_rows": changed,
        "changed_images": train.images[changed],
        "labels": train.labels,
        "true_labels": train.true_labels,
        "poison_mask": train.poison_mask,
        **cover,
    }

  key = {name: config[name].to_dict() for name in ("dataset", "attack")}
  key["layout"] = "changed rows v1"
  os.makedirs(workdir, exist_ok=True)
  arrays = features_lib.cached_arrays(os.path.join(workdir, POISON_CACHE), key, compute)
  images = clean.copy()
  images[arrays["changed_rows"]] = arrays["changed_images"]
  return attacks.PoisonedTrainSet(
      images,
      arrays["labels"],
      arrays["true_labels"],
      arrays["poison_mask"],
      arrays.get("cover_mask"),
  )


def _check_dataset_labels(dataset: datasets.Dataset, test_required: bool = True) -> None:
  """The data set's labels: rows present, integers in [0, num_classes). The test split may
  be empty only when nothing is scored on it but ACC (attack 'none': a data owner's set
  without a validation set)."""
  where = f"data set {dataset.name!r} (dataset.name)"
  for name, labels in (
      ("train_labels", dataset.train_labels),
      ("test_labels", dataset.test_labels),
  ):
    if name == "train_labels" or test_required:
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
    if name.startswith("given") or experiment.attack.plants_backdoor:
      checks.check_rows(labels, where, name)
    checks.check_labels(labels, experiment.dataset.num_classes, where, name)
