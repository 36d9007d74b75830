"""The notebook entry point: defend your own labelled images, get back VIBE's labels, the
suspicion of each sample and a predict function; and the predict function of a finished
`--mode defend` (or `--mode train`) workdir.

    from configs import own_data
    import vibe_jax

    result = vibe_jax.defend(images, labels, own_data.get_config("a,npz"),
                             class_names=["cat", "dog"], workdir="/tmp/my_defense")
    result.ranking[:20]            # the 20 most suspicious training images (row indices)
    result.labels                  # VIBE's label for every training image
    result.predict(new_images)     # the defended model's predictions

The work is `--mode defend`'s (vibe_jax.run.defend) on the arrays, which are saved to
workdir/own_data.npz and read back as data set 'npz_images'; so the workdir holds what the
command line writes (relabel.csv, report.md, checkpoints) and `--mode eval` reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Callable, Sequence

import ml_collections
import numpy as np

from vibe_jax import experiment as experiment_lib
from vibe_jax import features as features_lib
from vibe_jax import files, relabel, run
from vibe_jax import workdir as workdir_lib
from vibe_jax.data import rows as rows_lib
from vibe_jax.data import own_data, transforms
from vibe_jax.em import inference, loop
from vibe_jax.models.vibe import VibeModel
from vibe_jax.normalize import l2_normalize
from vibe_jax.prepare import prepare
from vibe_jax.variants import get_variant

__all__ = ["DefenseResult", "defend", "load_predictor", "make_predictor"]

Predictor = Callable[[np.ndarray], np.ndarray]
DATA_FILE = "own_data.npz"  # the arrays defend() was given, in the workdir


@dataclasses.dataclass(frozen=True)
class DefenseResult:
  """VIBE's answers for the training images (indices into `class_names`), as in relabel.csv
  (`relabelling`: given labels, confidences, filtered rows), defense.json's `summary`, and
  `predict`: uint8 images (N, H, W, 3) at the training size -> the defended model's labels."""

  labels: np.ndarray
  suspicion: np.ndarray
  ranking: np.ndarray  # rows whose given label VIBE rejects, most suspicious first
  class_names: tuple[str, ...]
  relabelling: relabel.Relabelling
  summary: dict
  predict: Predictor
  workdir: str


def _digest(arrays: dict[str, np.ndarray]) -> str:
  digest = hashlib.sha256()
  for name in sorted(arrays):
    digest.update(
        name.encode() + str(arrays[name].dtype).encode() + str(arrays[name].shape).encode()
    )
    digest.update(np.ascontiguousarray(arrays[name]).tobytes())
  return digest.hexdigest()


def _read_text(path: str) -> str:
  with open(path) as f:
    return f.read()


def defend(
    images: np.ndarray,
    labels: np.ndarray,
    config: ml_collections.ConfigDict,
    *,
    class_names: Sequence[str] | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    workdir: str | None = None,
    restart: bool = False,
) -> DefenseResult:
  """Trains the undefended baseline and VIBE on `images` (uint8 (N, H, W[, 3])) with their
  given `labels` (N,) and relabels them (module docstring). `config`: e.g.
  configs/own_data.py's get_config('a,npz') (attack 'none'; its data set fields are set
  here). `validation`: clean (images, labels), scored before and after. `workdir`: where
  the run is kept (a fresh temporary folder by default); rerun with the same arrays and
  config it resumes, with other arrays it is refused; `restart` moves the old contents
  aside and starts over."""
  if config.attack.name != "none":
    raise ValueError(
        f"config.attack.name={config.attack.name!r}: defend() takes your images as they are; "
        "use attack 'none' (configs/own_data.py)."
    )
  arrays = {"images": np.asarray(images), "labels": np.asarray(labels)}
  if class_names is not None:
    arrays["class_names"] = np.asarray([str(name) for name in class_names], dtype=str)
  if validation is not None:
    arrays["validation_images"], arrays["validation_labels"] = map(np.asarray, validation)
  workdir = workdir or tempfile.mkdtemp(prefix="vibe_defend_")
  os.makedirs(workdir, exist_ok=True)
  path, digest = os.path.join(workdir, DATA_FILE), _digest(arrays)
  stamp = path + ".sha256"
  if restart:
    files.move_contents_aside(workdir)
  elif os.path.exists(stamp) and _read_text(stamp) != digest:
    raise FileExistsError(
        f"workdir {workdir} holds a defense of other images; pass another workdir, or "
        "restart=True to move its contents aside and start over."
    )
  if not os.path.exists(stamp):
    files.save_npz_atomically(path, **arrays)
    files.write_text_atomically(stamp, digest)
  config = ml_collections.ConfigDict(config.to_dict())
  config.dataset.name, config.dataset.data_dir = "npz_images", path
  config.dataset.options = ml_collections.ConfigDict()
  outcome = run.defend(config, workdir)
  relabelling = outcome.relabelling
  return DefenseResult(
      labels=relabelling.vibe_labels,
      suspicion=relabelling.suspicion,
      ranking=relabelling.ranking(),
      class_names=relabelling.class_names,
      relabelling=relabelling,
      summary=outcome.summary,
      predict=make_predictor(config, outcome.model, outcome.prepared.training.images),
      workdir=workdir,
  )


def make_predictor(
    config: ml_collections.ConfigDict,
    model: VibeModel,
    train_images: np.ndarray | rows_lib.Rows | None,
) -> Predictor:
  """The defended model as a function of raw inputs: uint8 images (N, H, W, 3) through the
  run's own features (the extractor rebuilt from the training images, e.g. the pixel
  mean) or backbone (grey (N, H, W) images are taken as RGB); with a features file,
  features (N, D) of the same model."""
  rgb = lambda images: own_data.as_rgb(np.asarray(images), "predict", "images")
  if get_variant(config.variant).finetune_backbone:
    preprocess = transforms.get_pipeline(config.dataset.name).eval
    return lambda images: inference.predict(model, rgb(images), preprocess=preprocess)
  if config.features.file:
    return lambda features: inference.predict(model, l2_normalize(np.asarray(features, np.float32)))
  train_rows = rows_lib.as_rows(train_images)
  extract = features_lib.make_extractor(config, train_rows.read(np.arange(len(train_rows))))
  return lambda images: inference.predict(model, extract(rgb(images)))


def load_predictor(workdir: str) -> Predictor:
  """The predict function (make_predictor) of the VIBE model a finished run saved in
  `workdir`, for its config.json; reads the data set again (the features from the
  workdir's cache) to rebuild the model's shapes and its feature extractor."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{workdir} holds no config.json: not the workdir of a finished run.")
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  experiment_lib.validate_config(config)
  mesh = experiment_lib.setup_devices(config)
  identity = workdir_lib.check_workdir(config, workdir, required=True)
  prepared = prepare(config, workdir, mesh)
  phase = next(p for p in loop.phases(config, prepared.variant.train_mu_y) if p.name == "vibe")
  model, _ = loop.restore_model(
      prepared.new_model(phase.kappa),
      prepared.data,
      os.path.join(workdir, "checkpoints", phase.name),
      phase,
      fingerprint=identity.fingerprint,
  )
  return make_predictor(config, model, prepared.training.images)
