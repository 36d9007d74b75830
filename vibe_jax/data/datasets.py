"""Image classification data sets as uint8 NHWC arrays: digits (embedded), CIFAR via tfds."""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
from PIL import Image

from vibe_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A labelled train/test split; images uint8 (N, H, W, 3), labels int32 (N,)."""
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train_images.shape[1:])


DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")


def load_dataset(name: str, data_dir: str | None = None, seed: int = 0) -> Dataset:
  """Loads a registered data set by name (config field dataset.name)."""
  return DATASETS.get(name, field="dataset.name")(data_dir=data_dir, seed=seed)


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == c))
    n_test = int(round(test_fraction * len(members)))
    test.append(members[:n_test])
    train.append(members[n_test:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@DATASETS.register("digits")
def load_digits(data_dir: str | None = None, seed: int = 0, size: int = 32,
                test_fraction: float = 0.3) -> Dataset:
  """scikit-learn's bundled 8x8 digits, resized to size x size RGB uint8.

  Ships inside scikit-learn, so the demo needs no download. The split is stratified and
  fixed by `seed` (70/30 by default).
  """
  del data_dir  # Embedded: nothing to read from disk.
  from sklearn.datasets import load_digits as sklearn_digits
  bunch = sklearn_digits()
  small = (bunch.images / 16.0 * 255.0).clip(0, 255).astype(np.uint8)  # (1797, 8, 8)
  resized = np.stack([
      np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR)) for img in small])
  images = np.repeat(resized[..., None], 3, axis=-1)
  labels = bunch.target.astype(np.int32)
  train, test = _stratified_split(labels, test_fraction, seed)
  return Dataset("digits", images[train], labels[train], images[test], labels[test], 10)


_TFDS_PREPARE_HINT = (
    "Prepare it once on a machine with internet access, e.g. `python -c \"import "
    "tensorflow_datasets as tfds; tfds.data_source('{name}', data_dir='{data_dir}', "
    "download=True)\"` (or `tfds build {name} --data_dir={data_dir} "
    "--file_format=array_record`), then point config field dataset.data_dir at that directory.")


def _load_tfds(name: str, data_dir: str | None, num_classes: int) -> Dataset:
  """Reads a tfds data set already prepared in array_record format; never downloads."""
  import tensorflow_datasets as tfds
  if not data_dir:
    raise ValueError(f"Data set {name!r} needs config field dataset.data_dir. "
                     + _TFDS_PREPARE_HINT.format(name=name, data_dir="DIR"))
  data_dir = os.path.expanduser(data_dir)
  try:
    splits = {split: tfds.data_source(name, split=split, data_dir=data_dir, download=False)
              for split in ("train", "test")}
  except Exception as error:  # tfds raises several types for a missing/partial data set.
    raise FileNotFoundError(
        f"Could not open {name!r} in dataset.data_dir={data_dir!r} ({error}). "
        + _TFDS_PREPARE_HINT.format(name=name, data_dir=data_dir)) from error
  arrays = {}
  for split, source in splits.items():
    records = _read_all(source)
    arrays[split] = (np.stack([r["image"] for r in records]).astype(np.uint8),
                     np.asarray([r["label"] for r in records], np.int32))
  return Dataset(name, *arrays["train"], *arrays["test"], num_classes)


def _read_all(source) -> list:
  """All records of a tfds data source: one batched read (fast on array_record), or one
  read per record where the source cannot batch (tfds's mock data)."""
  try:
    return source.__getitems__(list(range(len(source))))
  except TypeError:
    return [source[i] for i in range(len(source))]


@DATASETS.register("cifar10")
def load_cifar10(data_dir: str | None = None, seed: int = 0) -> Dataset:
  del seed
  return _load_tfds("cifar10", data_dir, 10)


@DATASETS.register("cifar100")
def load_cifar100(data_dir: str | None = None, seed: int = 0) -> Dataset:
  del seed
  return _load_tfds("cifar100", data_dir, 100)
