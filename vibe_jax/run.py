"""Experiment entry points (main.py calls these): train a defended model, evaluate it."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from vibe_jax import features as features_lib
from vibe_jax import metrics, parallel
from vibe_jax.data import attacks, datasets, transforms
from vibe_jax.data import rows as rows_lib
from vibe_jax.em import loop
from vibe_jax.filtering import filter_report, leiden_poison_filter
from vibe_jax.models import load_backbone_model
from vibe_jax.models.vibe import VibeHead, VibeModel, class_centroids
from vibe_jax.report import predictions as predictions_lib
from vibe_jax.report import report as report_lib
from vibe_jax.report import snapshots, writers
from vibe_jax.variants import Variant, get_variant


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Everything the training code needs, built from the config before any training."""

  dataset: datasets.Dataset
  attack: attacks.Attack
  poisoned_train: attacks.PoisonedTrainSet
  poisoned_test: attacks.PoisonedTestSet


@dataclasses.dataclass(frozen=True)
class Prepared:
  """Sharded training data, evaluation sets, and how to build a fresh model."""

  variant: Variant
  num_classes: int
  data: loop.TrainData
  test_inputs: jax.Array
  test_labels: np.ndarray
  poisoned_inputs: jax.Array
  poisoned_true_labels: np.ndarray
  attacker_labels: np.ndarray
  attack_index: np.ndarray | None  # several attacks at once: which one triggered each image
  attack_names: tuple[str, ...]
  new_model: Callable[[float], VibeModel]
  augment: Callable | None  # M-step: (key, raw batch) -> augmented model inputs
  preprocess: Callable | None  # feature passes: raw batch -> model inputs
  filter: dict | None

  def predict(self, model: VibeModel) -> dict[str, np.ndarray]:
    """Predictions on the clean and on the poisoned test set."""
    return {
        "clean": loop.predict(model, self.test_inputs, preprocess=self.preprocess),
        "poisoned": loop.predict(model, self.poisoned_inputs, preprocess=self.preprocess),
    }

  def evaluate(
      self, model: VibeModel, predictions: dict[str, np.ndarray] | None = None
  ) -> dict[str, float]:
    predictions = self.predict(model) if predictions is None else predictions
    results = metrics.defense_metrics(
        predictions["clean"],
        self.test_labels,
        predictions["poisoned"],
        self.poisoned_true_labels,
        self.attacker_labels,
    )
    if self.attack_index is not None:  # several attacks: ASR / RA per attack
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
      "train.steps": config.train.steps,
      "train.batch_size": config.train.batch_size,
      "train.log_every": config.train.log_every,
      "train.eval_every": config.train.eval_every,
      "estep.period": config.estep.period,
      "estep.lam": config.estep.lam,
      "baseline.steps": config.baseline.steps,
      "checkpoint.every": config.checkpoint.every,
  }
  for field, value in positive.items():
    if not value > 0:
      raise ValueError(f"{field}={value} must be positive.")


def setup_devices(config: ml_collections.ConfigDict) -> Mesh:
  """Joins the multi-host job when configured, then builds the device mesh."""
  parallel.initialize_distributed(config.parallel)
  return parallel.make_mesh(config.parallel.num_devices or None)


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
  poison_train = attack.poison_train_rows if lazy_train else attack.poison_train
  return Experiment(
      dataset,
      attack,
      poison_train(dataset.train_images, dataset.train_labels),
      attack.poison_test(dataset.test_images, dataset.test_labels),
  )


def loads_per_host(config: ml_collections.ConfigDict) -> bool:
  """Whether each process reads only its own training rows (a multi-process run with
  parallel.per_host_loading)."""
  return bool(config.parallel.per_host_loading) and jax.process_count() > 1


def _images_here(images: np.ndarray | rows_lib.Rows, mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
  """(rows, their images): the training rows this process's devices hold, of the rows padded
  to divide over the devices (padding repeats the last row); only those are read."""
  rows = parallel.process_rows(parallel.padded_length(len(images), mesh), mesh)
  return rows, rows_lib.as_rows(images).read(np.minimum(rows, len(images) - 1))


def _gather_features(features: np.ndarray, rows: np.ndarray, num_rows: int, mesh: Mesh):
  """Every process's features of its `rows` (from _images_here), on every host."""
  return parallel.gather_rows(features, rows, parallel.padded_length(num_rows, mesh))[:num_rows]


def frozen_features(
    config: ml_collections.ConfigDict, experiment: Experiment, workdir: str, mesh: Mesh
) -> dict[str, np.ndarray]:
  """Features and labels in the features-file layout (features.FEATURE_FILE_ARRAYS),
  cached in the workdir by process 0. Each process extracts the training rows its devices
  hold; the features (small next to the images) are then gathered on every host."""

  def compute():
    train, test = experiment.poisoned_train, experiment.poisoned_test
    num_rows = len(train.labels)
    rows, images = _images_here(train.images, mesh)
    extract = features_lib.make_extractor(config, images[rows < num_rows])
    return {
        "train_features": _gather_features(extract(images), rows, num_rows, mesh),
        "train_labels": train.labels,
        "train_true_labels": train.true_labels,
        "train_poison_mask": train.poison_mask,
        "test_features": extract(experiment.dataset.test_images),
        "test_labels": experiment.dataset.test_labels,
        "poisoned_test_features": extract(test.images),
        "poisoned_test_labels": test.true_labels,
        "poisoned_test_targets": test.attacker_labels,
        **_attack_index(test),
    }

  if jax.process_count() > 1:  # every process takes part in the gathers: no cache
    return compute()
  fingerprint = {key: config[key].to_dict() for key in ("dataset", "attack", "features")}
  fingerprint["layout"] = sorted(features_lib.FEATURE_FILE_ARRAYS)
  if config.features.extractor == "backbone":
    fingerprint["backbone"] = config.backbone.checkpoint
  return features_lib.cached_features(os.path.join(workdir, "features.npz"), fingerprint, compute)


def _attack_index(test: attacks.PoisonedTestSet) -> dict[str, np.ndarray]:
  """The per-image attack index of a multi-attack test set, under features-file names."""
  if test.attack_index is None:
    return {}
  return {
      "poisoned_test_attack_index": test.attack_index,
      "attack_names": np.asarray(test.attack_names),
  }


def _backbone_features(
    backbone: nnx.Module, images: np.ndarray, preprocess: Callable, batch_size: int
) -> np.ndarray:
  """Eval-mode backbone features of raw images, batched."""
  graphdef, state = nnx.split(nnx.view(backbone, use_running_average=True))
  forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(preprocess(x)))
  return np.concatenate(
      [
          np.asarray(forward(state, jnp.asarray(images[i : i + batch_size])))
          for i in range(0, len(images), batch_size)
      ]
  )


def prepare(config: ml_collections.ConfigDict, workdir: str, mesh: Mesh) -> Prepared:
  """Data set -> attack -> (cached features | images) -> optional Leiden filter -> shards.

  With features.file set, the frozen features and all labels come from that file instead.
  """
  variant = get_variant(config.variant)
  load, augment_fn, preprocess = None, None, None
  per_host = loads_per_host(config)
  if variant.finetune_backbone:
    experiment = build_experiment(config, lazy_train=per_host)
    train, test = experiment.poisoned_train, experiment.poisoned_test
    pipeline = transforms.get_pipeline(config.dataset.name)
    augment_fn, preprocess = pipeline.train, pipeline.eval
    load = lambda: load_backbone_model(os.path.expanduser(config.backbone.checkpoint))
    rows, images = _images_here(train.images, mesh)
    features = _backbone_features(load(), images, preprocess, config.features.batch_size)
    train_features = _gather_features(features, rows, len(train.labels), mesh)
    arrays = {
        "train_labels": train.labels,
        "train_true_labels": train.true_labels,
        "train_poison_mask": train.poison_mask,
        "test_features": experiment.dataset.test_images,
        "test_labels": experiment.dataset.test_labels,
        "poisoned_test_features": test.images,
        "poisoned_test_labels": test.true_labels,
        "poisoned_test_targets": test.attacker_labels,
        **_attack_index(test),
    }
    train_inputs = train.images
  else:
    arrays = (
        features_lib.load_feature_file(config.features.file)
        if config.features.file
        else frozen_features(config, build_experiment(config, lazy_train=per_host), workdir, mesh)
    )
    train_features = train_inputs = arrays["train_features"]
  given = arrays["train_labels"].astype(np.int32)
  true_labels = arrays.get("train_true_labels", given)  # unknown truth: diagnostics vs given
  poison_mask = arrays.get("train_poison_mask", np.zeros(len(given), bool)).astype(bool)
  num_classes = (
      int(max(given.max(), arrays["test_labels"].max(), arrays["poisoned_test_targets"].max())) + 1
  )

  keep = np.ones(len(given), bool)
  report = None
  if config.filter.leiden == "on" or (config.filter.leiden == "auto" and variant.leiden_filter):
    result = leiden_poison_filter(
        train_features,
        num_classes,
        num_neighbors=config.filter.num_neighbors,
        delta=config.filter.delta,
        seed=config.filter.seed,
    )
    keep = result.keep_mask
    report = filter_report(result, poison_mask)
    print("Leiden filter: " + ", ".join(f"{k} {v}" for k, v in report.items()))
  data = loop.shard_training_data(
      rows_lib.take(train_inputs, np.flatnonzero(keep)),
      given[keep],
      true_labels[keep],
      poison_mask[keep],
      mesh,
      preprocess,
  )
  centroids = class_centroids(
      jnp.asarray(train_features[keep]), jnp.asarray(given[keep]), num_classes
  )

  def new_model(kappa: float) -> VibeModel:
    head = VibeHead(
        num_classes,
        centroids.shape[-1],
        kappa=kappa,
        nu=config.vibe.nu,
        prior_temperature=config.vibe.prior_temperature,
        likelihood=variant.likelihood,
        rngs=nnx.Rngs(config.seed),
        mu_z=centroids,
        mu_y=centroids,
    )
    if load is None:
      return VibeModel(head)
    backbone = load()
    backbone.train()
    return VibeModel(head, backbone)

  return Prepared(
      variant,
      num_classes,
      data,
      parallel.replicate(arrays["test_features"], mesh),
      arrays["test_labels"],
      parallel.replicate(arrays["poisoned_test_features"], mesh),
      arrays["poisoned_test_labels"],
      arrays["poisoned_test_targets"],
      arrays.get("poisoned_test_attack_index"),
      tuple(str(n) for n in arrays.get("attack_names", ())),
      new_model,
      augment_fn,
      preprocess,
      report,
  )


def _phases(config: ml_collections.ConfigDict) -> list[tuple[str, str, int, float, object]]:
  """(name, objective, steps, kappa, optimizer config) of each model the run trains."""
  phases = (
      [("baseline", "baseline", config.baseline.steps, config.baseline.kappa, config.baseline)]
      if config.baseline.enabled
      else []
  )
  return phases + [("vibe", "vibe", config.train.steps, config.vibe.kappa, config.train)]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Poisons the data, trains the undefended baseline and VIBE, writes results.json.

  Resumes each phase from its checkpoints in workdir/checkpoints/<phase>.
  """
  validate_config(config)
  mesh = setup_devices(config)
  started = time.time()
  primary = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if primary:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  prepared = prepare(config, workdir, mesh)
  log = writers.MetricWriter(workdir)
  results = {
      "config": {
          "dataset": config.dataset.name,
          "attack": config.attack.name,
          "variant": config.variant,
      }
  }
  if prepared.filter is not None:
    results["leiden_filter"] = prepared.filter
  predictions = {}
  for name, objective, steps, kappa, optimizer_config in _phases(config):
    model = loop.fit(
        prepared.new_model(kappa),
        prepared.data,
        config,
        objective=objective,
        steps=steps,
        optimizer_config=optimizer_config,
        mesh=mesh,
        checkpoint_dir=os.path.join(workdir, "checkpoints", name),
        train_mu_y=prepared.variant.train_mu_y or objective == "baseline",
        augment=prepared.augment,
        evaluate=prepared.evaluate if objective == "vibe" else None,
        log=log.writer(name),
        desc=name if name == "baseline" else f"vibe-{config.variant}",
        on_estep=snapshots.EstepSnapshots(
            os.path.join(workdir, "snapshots"),
            prepared.data,
            steps,
            config.estep.period,
            seed=config.seed,
            batch_size=config.features.batch_size,
        )
        if objective == "vibe"
        else None,
    )
    predictions[name] = prepared.predict(model)
    results[name] = prepared.evaluate(model, predictions[name])
    log.write(name, {"step": steps, "kind": "eval", **results[name]})
  log.close()
  results["seconds"] = round(time.time() - started, 1)
  if primary:
    predictions_lib.save_predictions(
        os.path.join(workdir, "predictions.npz"),
        predictions,
        clean_labels=prepared.test_labels,
        poisoned_true_labels=prepared.poisoned_true_labels,
        poisoned_attacker_labels=prepared.attacker_labels,
        num_classes=prepared.num_classes,
    )
    write_json_atomically(os.path.join(workdir, "results.json"), results)
    print(format_results_table(results))
    _write_report(workdir)
  return results


def _write_report(workdir: str) -> None:
  """report.md and the plots; a failure here is reported, not raised, since the results
  are already saved and `--mode report` can regenerate them."""
  try:
    path = report_lib.write_report(workdir)
    print(f"Report: {path}")
  except Exception as error:  # pylint: disable=broad-except
    print(
        f"Writing the report failed ({type(error).__name__}: {error}); results.json is "
        f"saved. Retry with: python main.py --mode report --workdir {workdir}"
    )


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """--mode eval: the saved models of `workdir` on the clean and the poisoned test sets."""
  validate_config(config)
  mesh = setup_devices(config)
  prepared = prepare(config, workdir, mesh)
  results = {
      "config": {
          "dataset": config.dataset.name,
          "attack": config.attack.name,
          "variant": config.variant,
      }
  }
  for name, objective, _, kappa, optimizer_config in _phases(config):
    directory = os.path.join(workdir, "checkpoints", name)
    model, step = loop.restore_model(
        prepared.new_model(kappa),
        prepared.data,
        directory,
        optimizer_config,
        prepared.variant.train_mu_y or objective == "baseline",
    )
    results[name] = {**prepared.evaluate(model), "step": step}
  if jax.process_index() == 0:
    write_json_atomically(os.path.join(workdir, "eval.json"), results)
    print(format_results_table(results))
  return results


def extract_features(config: ml_collections.ConfigDict, workdir: str) -> str:
  """--mode extract: writes the features file (features.FEATURE_FILE_ARRAYS) of the
  configured data set, attack and extractor to workdir/features_file.npz."""
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  arrays = frozen_features(config, build_experiment(config), workdir, setup_devices(config))
  path = os.path.join(workdir, "features_file.npz")
  if jax.process_index() == 0:
    features_lib.save_feature_file(path, arrays)
    print(f"Wrote {path}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
  return path


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
      rows.append(
          (
              name if name == "baseline" else f"VIBE ({results['config']['variant']})",
              *(f"{100 * results[name][m]:.2f}" for m in ("acc", "asr", "ra")),
          )
      )
  widths = [max(len(row[i]) for row in rows) for i in range(4)]
  lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
  return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])
