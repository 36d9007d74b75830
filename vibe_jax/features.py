"""Feature extraction, in one place: the frozen-feature extractors (computed once per
workdir, cached), backbone features of images in batches, the training rows each process
extracts, and the features file (`--mode extract`, `features.file`).

Every extractor's output is L2-normalised, the same way on every run, whether the
features were just computed or read back from the cache (the reference normalises only
on reload, so its first and later runs differ).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from vibe_jax import files, parallel
from vibe_jax.batched import batched_apply
from vibe_jax.normalize import l2_normalize
from vibe_jax.data import checks
from vibe_jax.data import rows as rows_lib
from vibe_jax.registry import Registry

if TYPE_CHECKING:
  from vibe_jax.experiment import Experiment

FeatureFn = Callable[[np.ndarray], np.ndarray]
# An extractor is built from the config and the training images this process holds (all of
# them in a single-process run; statistics over them go through parallel.mean_over_processes).
EXTRACTORS: Registry[Callable[[ml_collections.ConfigDict, np.ndarray], FeatureFn]] = Registry(
    "feature extractor"
)


@EXTRACTORS.register("pixels")
def pixel_extractor(config: ml_collections.ConfigDict, train_images: np.ndarray) -> FeatureFn:
  """Flattened pixels in [0, 1], centred on the training mean image."""
  del config
  pixels = train_images.reshape(len(train_images), -1).astype(np.float32)
  mean = parallel.mean_over_processes(pixels) / 255.0
  return lambda images: images.reshape(len(images), -1).astype(np.float32) / 255.0 - mean


@EXTRACTORS.register("backbone")
def backbone_extractor(config: ml_collections.ConfigDict, train_images: np.ndarray) -> FeatureFn:
  """Pooled features of the vibe_jax backbone checkpoint at config field backbone.checkpoint
  (eval mode), on images through the data set's eval transform (vibe_jax.data.transforms)."""
  del train_images
  from vibe_jax.data.transforms import get_pipeline
  from vibe_jax.models import load_backbone

  if not config.backbone.checkpoint:
    raise ValueError("features.extractor='backbone' needs backbone.checkpoint.")
  forward = load_backbone(os.path.expanduser(config.backbone.checkpoint))
  preprocess = get_pipeline(config.dataset.name).eval
  return lambda images: backbone_features(forward, images, preprocess, config.features.batch_size)


def backbone_features(
    forward: Callable[[jax.Array], jax.Array],
    images: np.ndarray,
    preprocess: Callable[[jax.Array], jax.Array],
    batch_size: int,
) -> np.ndarray:
  """Features of uint8 NHWC images: `forward` (an eval-mode backbone, models.load_backbone)
  on `preprocess`ed batches (the data set's eval transform), the last batch padded."""
  preprocess = jax.jit(preprocess)
  return batched_apply(lambda batch: forward(preprocess(batch)), batch_size, images)


def make_extractor(config: ml_collections.ConfigDict, train_images: np.ndarray) -> FeatureFn:
  """The configured extractor (config field features.extractor), output L2-normalised."""
  raw = EXTRACTORS.get(config.features.extractor, field="features.extractor")(config, train_images)

  def extract(images: np.ndarray) -> np.ndarray:
    if len(images) == 0:  # an empty split (own data without a validation set): (0, D)
      return extract(np.zeros((1, *images.shape[1:]), images.dtype))[:0]
    return l2_normalize(np.asarray(raw(images), np.float32))

  return extract


def cached_arrays(cache_path: str, fingerprint: dict, compute: Callable[[], dict]) -> dict:
  """Loads arrays from `cache_path` if it was written for the same `fingerprint`, else
  computes them and writes the cache atomically (temporary file, then rename). A cache that
  cannot be read (truncated, overwritten) is recomputed, with a warning."""
  key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
  if os.path.exists(cache_path):
    try:
      cached = files.read_npz(cache_path, f"the features cache {cache_path}")
    except ValueError as error:
      logging.warning("%s; recomputing the features.", error)
      cached = {}
    if str(cached.get("fingerprint", "")) == key:
      return {name: value for name, value in cached.items() if name != "fingerprint"}
  arrays = compute()
  files.save_npz_atomically(cache_path, fingerprint=key, **arrays)
  return arrays


def training_rows_here(
    images: np.ndarray | rows_lib.Rows, mesh: Mesh
) -> tuple[np.ndarray, np.ndarray]:
  """(rows, their images): the training rows this process's devices hold, of the rows padded
  to divide over the devices (padding repeats the last row); only those are read."""
  rows = parallel.process_rows(parallel.padded_length(len(images), mesh), mesh)
  return rows, rows_lib.as_rows(images).read(np.minimum(rows, len(images) - 1))


def training_features(
    extract: FeatureFn, images: np.ndarray | rows_lib.Rows, mesh: Mesh
) -> np.ndarray:
  """`extract` of every training image, on every host: each process extracts the rows its
  devices hold (training_rows_here); the features, small next to the images, are gathered."""
  rows, local_images = training_rows_here(images, mesh)
  padded = parallel.padded_length(len(images), mesh)
  return parallel.gather_rows(extract(local_images), rows, padded)[: len(images)]


def experiment_feature_arrays(
    config: ml_collections.ConfigDict, experiment: "Experiment", workdir: str, mesh: Mesh
) -> dict[str, np.ndarray]:
  """The experiment's frozen features and labels in the features-file layout
  (FEATURE_FILE_ARRAYS), cached in workdir/features.npz by a single-process run."""

  def compute():
    train, test = experiment.poisoned_train, experiment.poisoned_test
    num_rows = len(train.labels)
    rows, local_images = training_rows_here(train.images, mesh)
    extract = make_extractor(config, local_images[rows < num_rows])
    return {
        "train_features": training_features(extract, train.images, mesh),
        "train_labels": train.labels,
        "train_true_labels": train.true_labels,
        "train_poison_mask": train.poison_mask,
        "test_features": extract(experiment.dataset.test_images),
        "test_labels": experiment.dataset.test_labels,
        "poisoned_test_features": extract(test.images),
        "poisoned_test_labels": test.true_labels,
        "poisoned_test_targets": test.attacker_labels,
        "num_classes": np.asarray(experiment.dataset.num_classes, np.int64),
        **attack_index_arrays(test),
    }

  if jax.process_count() > 1:  # every process takes part in the gathers: no cache
    return compute()
  return cached_arrays(os.path.join(workdir, "features.npz"), cache_key(config), compute)


def cache_key(config: ml_collections.ConfigDict) -> dict:
  """What the cached features are a function of: the data set, attack and features sections
  (minus the extraction batch size), the array layout, and the content, not the path, of
  every file the features are computed from (the backbone checkpoint, pre-poisoned files,
  a trigger image)."""
  key = {name: config[name].to_dict() for name in ("dataset", "attack", "features")}
  del key["features"]["batch_size"]  # how fast, not what
  key["layout"] = sorted(FEATURE_FILE_ARRAYS) + ["num_classes"]
  if config.features.extractor == "backbone":
    key["backbone"] = files.content_digest(config.backbone.checkpoint)
  for field in ("train_file", "test_file"):
    path = config.attack.params.get(field)
    if config.attack.name == "prepoisoned" and path:
      key["attack"]["params"][field] = files.content_digest(path)
  if config.attack.params.get("trigger_file"):
    key["attack"]["params"]["trigger_file"] = files.content_digest(
        config.attack.params.trigger_file
    )
  return key


def attack_index_arrays(test) -> dict[str, np.ndarray]:
  """The per-image attack index of a multi-attack poisoned test set, under features-file
  names (nothing for a single attack)."""
  if test.attack_index is None:
    return {}
  return {
      "poisoned_test_attack_index": test.attack_index,
      "attack_names": np.asarray(test.attack_names),
  }


# A features file: frozen features with their labels, for the FM variants. Any model's
# features can be used; `python main.py --mode extract` writes one from a vibe_jax backbone.
FEATURE_FILE_ARRAYS = {
    "train_features": 2,
    "train_labels": 1,  # given (possibly poisoned)
    "test_features": 2,
    "test_labels": 1,  # clean test set
    "poisoned_test_features": 2,
    "poisoned_test_labels": 1,  # true labels
    "poisoned_test_targets": 1,  # the attacker's labels
}
OPTIONAL_FEATURE_FILE_ARRAYS = {
    "train_true_labels": 1,
    "train_poison_mask": 1,
    "poisoned_test_attack_index": 1,
    "attack_names": 1,
    # The class count C (a scalar). Without it C is 1 + the largest given training label,
    # and every class below it must have a training row (a stray label 50 among ten
    # classes is then an error, not 41 empty classes).
    "num_classes": 0,
}
_LABEL_ARRAYS = (
    "train_labels",
    "train_true_labels",
    "test_labels",
    "poisoned_test_labels",
    "poisoned_test_targets",
)
_FEATURE_ARRAYS = ("train_features", "test_features", "poisoned_test_features")


def write_feature_file(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes a features file atomically (temporary file, then rename)."""
  check_feature_arrays(arrays, f"features file {path}")
  files.save_npz_atomically(path, **arrays)


def read_feature_file(path: str) -> dict[str, np.ndarray]:
  """Reads and checks a features file; features come back L2-normalised, as always."""
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"features.file={path!r} does not exist; write one with "
        "`python main.py --mode extract` or from your own model."
    )
  where = f"features.file={path!r}"
  arrays = files.read_npz(path, where)
  check_feature_arrays(arrays, where)
  for name in _FEATURE_ARRAYS:
    arrays[name] = l2_normalize(arrays[name].astype(np.float32))
  return arrays


def check_feature_arrays(arrays: dict[str, np.ndarray], source: str) -> None:
  """Checks a features file's arrays (names, shapes, rows, finite features, integer labels
  in [0, C)) and sets arrays['num_classes'] to C when the file does not declare it.
  `source` names the file in messages (e.g. "features.file='x.npz'")."""
  missing = sorted(set(FEATURE_FILE_ARRAYS) - set(arrays))
  if missing:
    raise ValueError(
        f"{source} lacks {missing}; it needs "
        f"{sorted(FEATURE_FILE_ARRAYS)} (optional: "
        f"{sorted(OPTIONAL_FEATURE_FILE_ARRAYS)})."
    )
  for name, ndim in {**FEATURE_FILE_ARRAYS, **OPTIONAL_FEATURE_FILE_ARRAYS}.items():
    if name in arrays and arrays[name].ndim != ndim:
      raise ValueError(
          f"{source}: {name} has shape {arrays[name].shape}, " f"expected {ndim} dimension(s)."
      )
  same_rows = [
      ("train_features", "train_labels", "train_true_labels", "train_poison_mask"),
      ("test_features", "test_labels"),
      (
          "poisoned_test_features",
          "poisoned_test_labels",
          "poisoned_test_targets",
          "poisoned_test_attack_index",
      ),
  ]
  for names in same_rows:
    rows = {name: len(arrays[name]) for name in names if name in arrays}
    if len(set(rows.values())) != 1:
      raise ValueError(f"{source}: row counts differ: {rows}.")
  dims = {arrays[f"{s}_features"].shape[1] for s in ("train", "test", "poisoned_test")}
  if len(dims) != 1:
    raise ValueError(f"{source}: feature dimensions differ across splits {dims}.")
  for name in _FEATURE_ARRAYS:
    checks.check_rows(arrays[name], source, name)
    if not np.issubdtype(arrays[name].dtype, np.number) or arrays[name].dtype == bool:
      raise ValueError(f"{source}: {name} has dtype {arrays[name].dtype}; features are numbers.")
    checks.check_finite(arrays[name], source, name)
  num_classes = _num_classes(arrays, source)
  for name in _LABEL_ARRAYS:
    if name in arrays:
      checks.check_labels(arrays[name], num_classes, source, name)
  arrays["num_classes"] = np.asarray(num_classes, np.int64)


def _num_classes(arrays: dict[str, np.ndarray], where: str) -> int:
  """The declared class count, or 1 + the largest given training label when every class
  below it has a training row."""
  if "num_classes" in arrays:
    declared = arrays["num_classes"]
    if not np.issubdtype(declared.dtype, np.integer) or int(declared) < 1:
      raise ValueError(f"{where}: num_classes = {declared} must be a positive integer.")
    return int(declared)
  labels = checks.check_labels(
      arrays["train_labels"], np.iinfo(np.int32).max, where, "train_labels"
  )
  num_classes = int(labels.max()) + 1
  empty = np.flatnonzero(np.bincount(labels, minlength=num_classes) == 0)
  if len(empty):
    raise ValueError(
        f"{where}: train_labels reach {num_classes - 1} but class {empty[0]} has no training "
        f"row ({len(empty)} empty class(es) below {num_classes}); fix the labels, or declare "
        "the class count as a scalar array num_classes."
    )
  return num_classes
