"""`--mode pretrain`: SimCLR or All4One (config.ssl.method) on the poisoned, unlabelled
training set -> a backbone checkpoint.

The training set is the one VIBE later trains on (experiment.build_experiment: same data set,
attack, poison indices), as in the reference's SS variants, whose backbones never see a
clean copy. Labels are not used for training; after it, a kNN accuracy on the clean test set
is logged as a diagnostic of the features (against the same kNN on raw pixels).
"""

from __future__ import annotations

import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from vibe_jax import checkpoint, files, parallel
from vibe_jax import experiment as experiment_lib
from vibe_jax import features as features_lib
from vibe_jax.data import transforms
from vibe_jax.models.backbone import backbone_config, build_backbone, load_backbone
from vibe_jax.ssl import methods, training
from vibe_jax.ssl.augment import AugmentConfig
from vibe_jax.ssl.knn_eval import knn_accuracy

__all__ = ["augment_config", "pretrain", "validate_ssl_config", "view_size"]


def validate_ssl_config(config: ml_collections.ConfigDict) -> None:
  """Fails early, naming the field, before data is loaded or anything is compiled."""
  ssl = config.ssl
  backbone_config(config.backbone.arch, config.backbone.stem, config.backbone.width)
  method = methods.METHODS.get(ssl.method, field="ssl.method")
  training.OPTIMIZERS.get(ssl.optimizer, field="ssl.optimizer")
  positive = {
      "ssl.steps": ssl.steps,
      "ssl.batch_size": ssl.batch_size,
      "ssl.lr": ssl.lr,
      "ssl.temperature": ssl.temperature,
      "ssl.log_every": ssl.log_every,
      "ssl.projector_hidden_dim": ssl.projector_hidden_dim,
      "ssl.projector_output_dim": ssl.projector_output_dim,
      "ssl.knn_k": ssl.knn_k,
  }
  for field, value in positive.items():
    if not value > 0:
      raise ValueError(f"{field}={value} must be positive.")
  if ssl.warmup_steps < 0:
    raise ValueError(f"ssl.warmup_steps={ssl.warmup_steps} must be >= 0.")
  if ssl.weight_decay < 0:
    raise ValueError(f"ssl.weight_decay={ssl.weight_decay} must be >= 0.")
  for field in ("blur_prob", "blur_prob_second"):
    if not 0.0 <= ssl[field] <= 1.0:
      raise ValueError(f"ssl.{field}={ssl[field]} must lie in [0, 1] (a view's blur probability).")
  augment_config(config)  # validates crop_scale_min and flip_prob
  method.validate(ssl)


def augment_config(
    config: ml_collections.ConfigDict, output_size: tuple[int, int] | None = None
) -> AugmentConfig | tuple[AugmentConfig, AugmentConfig]:
  """The augmentation settings from config.ssl, with the method's colour jitter (SimCLR's
  strength 1; All4One's asymmetric.yaml, solarising its second views) and the blur
  probabilities of the first and second views (ssl.blur_prob, ssl.blur_prob_second): one
  config for both views, or a pair when the two views are augmented differently."""
  method = methods.METHODS.get(config.ssl.method, field="ssl.method")
  blur_probs = (config.ssl.blur_prob, config.ssl.blur_prob_second)
  views = tuple(
      AugmentConfig(
          crop_scale=(config.ssl.crop_scale_min, 1.0),
          flip_prob=config.ssl.flip_prob,
          output_size=output_size,
          blur_prob=blur_prob,
          **overrides,
      )
      for overrides, blur_prob in zip(method.augment, blur_probs)
  )
  return views[0] if views[0] == views[1] else views


def view_size(pipeline: transforms.Pipeline, image_shape: tuple[int, ...]) -> tuple[int, int]:
  """The (height, width) the data set's eval transform gives the backbone: the views' size,
  so the backbone is pretrained at the resolution VIBE later feeds it."""
  probe = jax.ShapeDtypeStruct((1, *image_shape), jnp.uint8)
  return tuple(jax.eval_shape(pipeline.eval, probe).shape[1:3])


def _pixels(images: np.ndarray) -> np.ndarray:
  return images.reshape(len(images), -1).astype(np.float32) / 255.0


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> pathlib.Path:
  """Pretrains config.backbone with config.ssl.method; returns the checkpoint's path.

  Writes <workdir>/backbone (a vibe_jax backbone checkpoint, eval-mode BatchNorm
  statistics included, replaced if present), <workdir>/pretrain_log.jsonl (loss per
  chunk) and <workdir>/pretrain.json (timings and the kNN diagnostic). Data parallel over
  parallel.num_devices devices (0: all of them), those of every process in a multi-host job
  (parallel.coordinator_address): each host loads the whole training set, and process 0
  alone writes the files and computes the diagnostic.
  """
  experiment_lib.validate_data_config(config)  # any variant's config: ss_* need no checkpoint yet
  validate_ssl_config(config)
  if config.ssl.warmup_steps >= config.ssl.steps:
    logging.warning(
        "ssl.warmup_steps=%d >= ssl.steps=%d: the run ends inside the " "learning-rate warmup.",
        config.ssl.warmup_steps,
        config.ssl.steps,
    )
  mesh = experiment_lib.setup_devices(config)
  parallel.check_batch_divides(config.ssl.batch_size, mesh, "ssl.batch_size")
  primary = jax.process_index() == 0
  if primary:
    os.makedirs(workdir, exist_ok=True)
    files.write_text_atomically(
        os.path.join(workdir, "pretrain_config.json"), config.to_json_best_effort(indent=2)
    )
  started = time.time()
  experiment = experiment_lib.build_experiment(config, workdir=workdir)
  train_images = experiment.poisoned_train.images  # labels deliberately unused
  # The data set's own statistics, the ones VIBE normalises with when it fine-tunes this
  # backbone or extracts features with it: one input distribution before and after.
  pipeline = transforms.get_pipeline(config.dataset.name)

  backbone = build_backbone(
      config.backbone.arch, config.backbone.stem, config.backbone.width, seed=config.seed
  )
  method = methods.METHODS.get(config.ssl.method, field="ssl.method")
  model = method.build(backbone, config.ssl, config.seed + 1)
  with open(
      os.path.join(workdir, "pretrain_log.jsonl") if primary else os.devnull, "w"
  ) as log_file:

    def log(record: dict) -> None:
      log_file.write(json.dumps(files.json_safe(record), allow_nan=False) + "\n")
      log_file.flush()

    model, history = method.fit(
        model,
        train_images,
        config.ssl,
        augment_config=augment_config(config, view_size(pipeline, train_images.shape[1:])),
        mean=pipeline.mean,
        std=pipeline.std,
        seed=config.seed,
        log=log,
        desc=f"{config.ssl.method}-{config.backbone.arch}-w{config.backbone.width}",
        mesh=mesh,
    )
  train_seconds = time.time() - started
  model.backbone.eval()
  path = pathlib.Path(workdir, "backbone").absolute()
  if primary:
    _save_and_summarise(config, path, model, experiment, history, train_seconds, mesh.size)
  if jax.process_count() > 1:  # the others wait, so that no host leaves the job early
    multihost_utils.sync_global_devices("vibe_jax pretrain finished")
  return path


def _save_and_summarise(
    config: ml_collections.ConfigDict,
    path: pathlib.Path,
    model: nnx.Module,
    experiment: experiment_lib.Experiment,
    history: list[dict],
    train_seconds: float,
    num_devices: int,
) -> None:
  """Process 0's part of `pretrain`: the checkpoint, the kNN diagnostic, pretrain.json."""
  method = methods.METHODS.get(config.ssl.method)
  pipeline = transforms.get_pipeline(config.dataset.name)
  checkpoint.save_backbone(
      path,
      backbone_config(config.backbone.arch, config.backbone.stem, config.backbone.width),
      jax.tree.map(np.asarray, nnx.state(model.backbone)),  # replicated: every host has it
      overwrite=True,
  )

  # Diagnostic: kNN of the clean test set against the clean training set, read back from
  # the checkpoint just written (so it also checks the round trip).
  features_fn = load_backbone(path)
  dataset = experiment.dataset
  train_features = features_lib.backbone_features(
      features_fn, dataset.train_images, pipeline.eval, config.features.batch_size
  )
  test_features = features_lib.backbone_features(
      features_fn, dataset.test_images, pipeline.eval, config.features.batch_size
  )
  k = min(config.ssl.knn_k, len(train_features))
  pixel_mean = _pixels(dataset.train_images).mean(axis=0)
  summary = {
      "checkpoint": str(path),
      "method": config.ssl.method,
      "steps": config.ssl.steps,
      "final_loss": history[-1]["loss"],
      "train_seconds": round(train_seconds, 1),
      "knn_k": k,
      "knn_accuracy_backbone": knn_accuracy(
          train_features, dataset.train_labels, test_features, dataset.test_labels, k
      ),
      "knn_accuracy_pixels": knn_accuracy(
          _pixels(dataset.train_images),
          dataset.train_labels,
          _pixels(dataset.test_images),
          dataset.test_labels,
          k,
      ),
      # Pixels minus the training mean image: the frozen 'pixels' features VIBE uses.
      "knn_accuracy_centred_pixels": knn_accuracy(
          _pixels(dataset.train_images) - pixel_mean,
          dataset.train_labels,
          _pixels(dataset.test_images) - pixel_mean,
          dataset.test_labels,
          k,
      ),
      "device": jax.devices()[0].device_kind,
      "devices": num_devices,  # of the mesh, over every process
      "processes": jax.process_count(),
  }
  files.write_json_atomically(str(path.parent / "pretrain.json"), summary)
  print(
      f"backbone checkpoint: {path}\n"
      f"{method.title} {summary['steps']} steps in {summary['train_seconds']} s, final loss "
      f"{summary['final_loss']:.4f}\n"
      f"kNN (k={k}, cosine) clean test accuracy: backbone "
      f"{100 * summary['knn_accuracy_backbone']:.2f} %, raw pixels "
      f"{100 * summary['knn_accuracy_pixels']:.2f} %, centred pixels "
      f"{100 * summary['knn_accuracy_centred_pixels']:.2f} %"
  )
