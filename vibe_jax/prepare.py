"""From a validated config to what the EM loop trains, in four typed steps:

  load_sets       data set -> attack -> (features | images): the training set and the
                  evaluation sets (or both from a features file)
  leiden_filter   the poison-cluster filter on the training features (SS variants)
  TrainData       the kept rows, sharded over the mesh (em.data.shard_training_data)
  ModelFactory    fresh VIBE models: head at the class centroids (+ the backbone)

`prepare` runs them in order.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from vibe_jax import experiment as experiment_lib
from vibe_jax import features as features_lib
from vibe_jax import metrics, parallel
from vibe_jax.data import rows as rows_lib
from vibe_jax.data import transforms
from vibe_jax.em import inference
from vibe_jax.em.data import TrainData, shard_training_data
from vibe_jax.filtering import filter_report, leiden_poison_filter
from vibe_jax.models import build_backbone, load_backbone, load_backbone_model
from vibe_jax.models.vibe import VibeHead, VibeModel, class_centroids
from vibe_jax.report import triggers as triggers_lib
from vibe_jax.variants import Variant, get_variant

__all__ = [
    "EvalSets",
    "ModelFactory",
    "Prepared",
    "TrainingSet",
    "leiden_filter",
    "load_sets",
    "prepare",
    "prepare_victim",
]


@dataclasses.dataclass(frozen=True)
class TrainingSet:
  """The (poisoned) training set before filtering and sharding, host side."""

  inputs: np.ndarray | rows_lib.Rows  # what the M-step sees: frozen features, or images
  features: np.ndarray  # (N, D) what the filter and the centroids see
  given_labels: np.ndarray
  true_labels: np.ndarray  # the given labels where the truth is unknown
  poison_mask: np.ndarray
  num_classes: int  # the data set's, or the features file's (declared or checked)
  augment: Callable | None = None  # images: the training transform
  preprocess: Callable | None = None  # images: the eval transform
  images: np.ndarray | rows_lib.Rows | None = None  # the raw images (None: a features file)
  class_names: tuple[str, ...] = ()  # the data set's, when it names them
  sample_names: tuple[str, ...] = ()  # a name per row (own data: the file), when known


@dataclasses.dataclass(frozen=True)
class EvalSets:
  """The clean and the poisoned test sets, replicated over the mesh, and their scoring."""

  clean_inputs: jax.Array
  clean_labels: np.ndarray
  poisoned_inputs: jax.Array
  poisoned_true_labels: np.ndarray
  attacker_labels: np.ndarray
  attack_index: np.ndarray | None = None  # several attacks at once: which one triggered each
  attack_names: tuple[str, ...] = ()
  preprocess: Callable | None = None

  def predict(self, model: VibeModel) -> dict[str, np.ndarray]:
    """Predictions on the clean and on the poisoned test set (either may be empty)."""
    return {
        split: (
            inference.predict(model, inputs, preprocess=self.preprocess)
            if inputs.shape[0]
            else np.zeros(0, np.int32)
        )
        for split, inputs in (("clean", self.clean_inputs), ("poisoned", self.poisoned_inputs))
    }

  def evaluate(
      self, model: VibeModel, predictions: dict[str, np.ndarray] | None = None
  ) -> dict[str, float]:
    """ACC / ASR / RA (and per attack, with several); a metric of an empty set (own data:
    no triggered test set, maybe no validation set) is left out, not reported as 0."""
    predictions = self.predict(model) if predictions is None else predictions
    results = metrics.defense_metrics(
        predictions["clean"],
        self.clean_labels,
        predictions["poisoned"],
        self.poisoned_true_labels,
        self.attacker_labels,
    )
    if not len(self.clean_labels):
      del results["acc"], results["asr_floor"]
    if not len(self.poisoned_true_labels):
      results.pop("asr_floor", None)
      del results["asr"], results["ra"]
    if self.attack_index is not None:
      results.update(
          metrics.per_attack_metrics(
              predictions["poisoned"],
              self.poisoned_true_labels,
              self.attacker_labels,
              self.attack_index,
              self.attack_names,
          )
      )
    return results


def _eval_sets(arrays: dict[str, np.ndarray], mesh: Mesh, preprocess=None) -> EvalSets:
  """EvalSets from arrays named as in a features file (test inputs may be images)."""
  return EvalSets(
      clean_inputs=parallel.replicate(arrays["test_features"], mesh),
      clean_labels=arrays["test_labels"],
      poisoned_inputs=parallel.replicate(arrays["poisoned_test_features"], mesh),
      poisoned_true_labels=arrays["poisoned_test_labels"],
      attacker_labels=arrays["poisoned_test_targets"],
      attack_index=arrays.get("poisoned_test_attack_index"),
      attack_names=tuple(str(n) for n in arrays.get("attack_names", ())),
      preprocess=preprocess,
  )


def _image_eval_sets(
    experiment: experiment_lib.Experiment, mesh: Mesh, preprocess: Callable
) -> EvalSets:
  """The test sets as images, for a model with a backbone."""
  test = experiment.poisoned_test
  arrays = {
      "test_features": experiment.dataset.test_images,
      "test_labels": experiment.dataset.test_labels,
      "poisoned_test_features": test.images,
      "poisoned_test_labels": test.true_labels,
      "poisoned_test_targets": test.attacker_labels,
      **features_lib.attack_index_arrays(test),
  }
  return _eval_sets(arrays, mesh, preprocess)


def load_sets(
    config: ml_collections.ConfigDict, workdir: str, mesh: Mesh
) -> tuple[TrainingSet, EvalSets]:
  """Step 1: the training and evaluation sets. Fine-tuned variants train on images, with
  the backbone's initial features for the filter and centroids; the others on frozen
  features, from features.file or extracted (and cached in the workdir)."""
  variant = get_variant(config.variant)
  per_host = experiment_lib.loads_per_host(config)
  if variant.finetune_backbone:
    experiment = experiment_lib.build_experiment(config, lazy_train=per_host, workdir=workdir)
    train = experiment.poisoned_train
    experiment_lib.check_batch_sizes(config, mesh, len(train.labels))
    _save_trigger_examples(config, workdir, experiment)
    pipeline = transforms.get_pipeline(config.dataset.name)
    forward = load_backbone(os.path.expanduser(config.backbone.checkpoint))
    extract = lambda images: features_lib.backbone_features(
        forward, images, pipeline.eval, config.features.batch_size
    )
    training = TrainingSet(
        inputs=train.images,
        images=train.images,
        features=features_lib.training_features(extract, train.images, mesh),
        given_labels=train.labels.astype(np.int32),
        true_labels=train.true_labels,
        poison_mask=train.poison_mask.astype(bool),
        num_classes=experiment.dataset.num_classes,
        augment=pipeline.train,
        preprocess=pipeline.eval,
        **_names(experiment.dataset),
    )
    return training, _image_eval_sets(experiment, mesh, pipeline.eval)
  source = {}
  if config.features.file:
    arrays = features_lib.read_feature_file(config.features.file)
    experiment_lib.check_batch_sizes(config, mesh, len(arrays["train_labels"]))
  else:
    experiment = experiment_lib.build_experiment(config, lazy_train=per_host, workdir=workdir)
    experiment_lib.check_batch_sizes(config, mesh, len(experiment.poisoned_train.labels))
    _save_trigger_examples(config, workdir, experiment)
    arrays = features_lib.experiment_feature_arrays(config, experiment, workdir, mesh)
    source = {"images": experiment.poisoned_train.images, **_names(experiment.dataset)}
  given = arrays["train_labels"].astype(np.int32)
  training = TrainingSet(
      inputs=arrays["train_features"],
      features=arrays["train_features"],
      given_labels=given,
      true_labels=arrays.get("train_true_labels", given),
      poison_mask=arrays.get("train_poison_mask", np.zeros(len(given), bool)).astype(bool),
      num_classes=int(arrays["num_classes"]),
      **source,
  )
  return training, _eval_sets(arrays, mesh)


def _save_trigger_examples(
    config: ml_collections.ConfigDict, workdir: str, experiment: experiment_lib.Experiment
) -> None:
  """The report's trigger pictures and PSNR / SSIM (report/triggers.py), from process 0
  while the clean and the poisoned images are both at hand."""
  if config.report.enabled and jax.process_index() == 0:
    triggers_lib.save_examples(os.path.join(workdir, triggers_lib.EXAMPLES_FILE), experiment)


def _names(dataset) -> dict:
  """TrainingSet's class and sample names from a data set that has them."""
  return {"class_names": dataset.class_names, "sample_names": dataset.train_files}


def leiden_filter(
    config: ml_collections.ConfigDict,
    variant: Variant,
    training: TrainingSet,
    num_classes: int,
) -> tuple[np.ndarray, dict | None]:
  """Step 2: (rows kept, filter report); everything is kept when the filter is off
  (filter.leiden 'auto' follows the variant)."""
  if not (
      config.filter.leiden == "on" or (config.filter.leiden == "auto" and variant.leiden_filter)
  ):
    return np.ones(len(training.given_labels), bool), None
  result = leiden_poison_filter(
      training.features,
      num_classes,
      num_neighbors=config.filter.num_neighbors,
      delta=config.filter.delta,
      seed=config.filter.seed,
  )
  report = filter_report(result, training.poison_mask)
  print("Leiden filter: " + ", ".join(f"{k} {v}" for k, v in report.items()))
  return result.keep_mask, report


@dataclasses.dataclass(frozen=True)
class ModelFactory:
  """Step 4: fresh VIBE models, prototypes mu_z = mu_y at the class centroids of the kept
  training features under the given labels; a fresh copy of the backbone when fine-tuned."""

  config: ml_collections.ConfigDict
  variant: Variant
  centroids: jax.Array  # (C, D)

  def __call__(self, kappa: float) -> VibeModel:
    num_classes, dim = self.centroids.shape
    head = VibeHead(
        num_classes,
        dim,
        kappa=kappa,
        nu=self.config.vibe.nu,
        prior_temperature=self.config.vibe.prior_temperature,
        likelihood=self.variant.likelihood,
        rngs=nnx.Rngs(self.config.seed),
        feature_likelihood=self.config.vibe.feature_likelihood,
        mu_z=self.centroids,
        mu_y=self.centroids,
    )
    if not self.variant.finetune_backbone:
      return VibeModel(head)
    backbone = load_backbone_model(os.path.expanduser(self.config.backbone.checkpoint))
    backbone.train()
    return VibeModel(head, backbone)


@dataclasses.dataclass(frozen=True)
class Prepared:
  """What a run trains on and is scored against; `training` is the whole training set and
  `keep` the rows the filter kept (those in `data`), for relabelling every row afterwards
  (None for the deep victim, which nothing relabels)."""

  variant: Variant
  num_classes: int
  data: TrainData
  eval_sets: EvalSets
  new_model: Callable[[float], VibeModel]  # kappa -> a fresh model
  filter_report: dict | None
  training: TrainingSet | None = None
  keep: np.ndarray | None = None


def prepare(config: ml_collections.ConfigDict, workdir: str, mesh: Mesh) -> Prepared:
  """The four steps of the module docstring."""
  variant = get_variant(config.variant)
  training, eval_sets = load_sets(config, workdir, mesh)
  num_classes = training.num_classes
  keep, report = leiden_filter(config, variant, training, num_classes)
  kept = np.flatnonzero(keep)
  data = shard_training_data(
      rows_lib.take(training.inputs, kept),
      training.given_labels[kept],
      training.true_labels[kept],
      training.poison_mask[kept],
      mesh,
      augment=training.augment,
      preprocess=training.preprocess,
  )
  centroids = class_centroids(
      jnp.asarray(training.features[kept]), jnp.asarray(training.given_labels[kept]), num_classes
  )
  return Prepared(
      variant=variant,
      num_classes=num_classes,
      data=data,
      eval_sets=eval_sets,
      new_model=ModelFactory(config, variant, centroids),
      filter_report=report,
      training=training,
      keep=keep,
  )


def prepare_victim(config: ml_collections.ConfigDict, workdir: str, mesh: Mesh) -> Prepared:
  """What the undefended deep victim (config section victim) trains on: the whole poisoned
  training set as augmented images, no filter, and fresh networks (a new backbone of
  victim.arch / stem / width, or backbone.checkpoint's, under a head at random unit
  prototypes) scored on the test images."""
  experiment = experiment_lib.build_experiment(
      config, lazy_train=experiment_lib.loads_per_host(config), workdir=workdir
  )
  train = experiment.poisoned_train
  pipeline = transforms.get_pipeline(config.dataset.name)
  data = shard_training_data(
      train.images,
      train.labels.astype(np.int32),
      train.true_labels,
      train.poison_mask.astype(bool),
      mesh,
      augment=pipeline.train,
      preprocess=pipeline.eval,
  )
  num_classes = experiment.dataset.num_classes

  def new_model(kappa: float) -> VibeModel:
    settings = config.victim
    if settings.init == "backbone":
      backbone = load_backbone_model(os.path.expanduser(config.backbone.checkpoint))
    else:
      backbone = build_backbone(settings.arch, settings.stem, settings.width, seed=config.seed)
    backbone.train()
    head = VibeHead(
        num_classes,
        backbone.feature_dim,
        kappa=kappa,
        nu=config.vibe.nu,
        prior_temperature=config.vibe.prior_temperature,
        likelihood="a",
        rngs=nnx.Rngs(config.seed),
    )
    return VibeModel(head, backbone)

  return Prepared(
      variant=get_variant(config.variant),
      num_classes=num_classes,
      data=data,
      eval_sets=_image_eval_sets(experiment, mesh, pipeline.eval),
      new_model=new_model,
      filter_report=None,
  )
