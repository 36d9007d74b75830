"""MNIST-format data sets (Fashion-MNIST, MNIST) from the original IDX files.

Fashion-MNIST is a real 60,000-image data set of CIFAR's size that installs offline
(Debian's `dataset-fashion-mnist` package), so it is where vibe_jax shows the paper's
protocol at scale on a machine without downloads. The 28x28 grey images become 32x32 RGB
uint8 (zero-padded by default, or resized), the shape the CIFAR models and attacks expect.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
from PIL import Image

from vibe_jax.data.datasets import DATASETS, Dataset
from vibe_jax.data.rows import Rows

# The four files of the original distribution (LeCun's MNIST and Zalando's Fashion-MNIST).
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_UINT8_TYPE = 0x08  # IDX type code of unsigned bytes, the only one these data sets use.


def read_idx(path: str) -> np.ndarray:
  """The array in an IDX file (gzipped or not): magic 0x0000TTDD, DD big-endian int32 dims."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _UINT8_TYPE:
    raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number {data[:4]!r}).")
  ndim = data[3]
  shape = tuple(int(d) for d in np.frombuffer(data, ">i4", ndim, offset=4))
  body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if body.size != int(np.prod(shape)):
    raise ValueError(
        f"{path} is truncated or padded: header says shape {shape} "
        f"({int(np.prod(shape))} bytes), the file holds {body.size}."
    )
  return body.reshape(shape)


def _find(data_dir: str, stem: str, package_hint: str) -> str:
  for name in (stem + ".gz", stem):
    if os.path.isfile(os.path.join(data_dir, name)):
      return os.path.join(data_dir, name)
  raise FileNotFoundError(
      f"dataset.data_dir={data_dir!r} has no {stem}.gz (or {stem}). {package_hint}"
  )


def _to_rgb(images: np.ndarray, image_size: int, fit: str) -> np.ndarray:
  """(n, 28, 28) grey -> (n, image_size, image_size, 3): zero-padded centred, or resized."""
  height, width = images.shape[1:]
  if fit == "pad":
    top, left = (image_size - height) // 2, (image_size - width) // 2
    out = np.zeros((len(images), image_size, image_size), np.uint8)
    out[:, top : top + height, left : left + width] = images
  else:
    out = np.stack([
        np.asarray(Image.fromarray(im).resize((image_size, image_size), Image.BILINEAR))
        for im in images
    ]) if len(images) else np.zeros((0, image_size, image_size), np.uint8)  # fmt: skip
  return np.repeat(out[..., None], 3, axis=-1)


def load_idx_dataset(
    name: str,
    data_dir: str,
    num_classes: int,
    package_hint: str,
    image_size: int = 32,
    fit: str = "pad",
    lazy_train: bool = False,
) -> Dataset:
  """An IDX data set from data_dir (the four files of IDX_FILES, .gz or not)."""
  if fit not in ("pad", "resize"):
    raise ValueError(f"dataset.options.fit must be 'pad' or 'resize', not {fit!r}.")
  data_dir = os.path.expanduser(data_dir)
  arrays = {key: read_idx(_find(data_dir, stem, package_hint)) for key, stem in IDX_FILES.items()}
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise ValueError(
          f"{data_dir}: {split} images {images.shape} and labels {labels.shape} do not "
          "match (expected (n, h, w) and (n,))."
      )
  if fit == "pad" and image_size < max(arrays["train_images"].shape[1:]):
    raise ValueError(
        f"dataset.options.image_size={image_size} is smaller than the "
        f"{arrays['train_images'].shape[1:]} images; use fit='resize' to shrink them."
    )
  train = arrays["train_images"]
  train_images = (
      Rows(lambda i: _to_rgb(train[i], image_size, fit), len(train), (image_size,) * 2 + (3,),
           np.uint8)
      if lazy_train else _to_rgb(train, image_size, fit)
  )  # fmt: skip
  return Dataset(
      name,
      train_images,
      arrays["train_labels"].astype(np.int32),
      _to_rgb(arrays["test_images"], image_size, fit),
      arrays["test_labels"].astype(np.int32),
      num_classes,
  )


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(
    data_dir: str | None = None,
    seed: int = 0,
    image_size: int = 32,
    fit: str = "pad",
    lazy_train: bool = False,
) -> Dataset:
  """Fashion-MNIST (60,000 / 10,000 images, 10 classes) from its IDX files.

  `fit`: 'pad' (2 zero pixels each side, the usual 32x32 for CIFAR models) or 'resize'
  (bilinear). Default data_dir: where Debian's dataset-fashion-mnist package puts them.
  """
  del seed  # The official train/test split.
  hint = (
      "Install the files offline with `apt-get install dataset-fashion-mnist` (they go to "
      f"{FASHION_MNIST_DIR}), or download them from github.com/zalandoresearch/fashion-mnist "
      "and point config field dataset.data_dir at their folder."
  )
  return load_idx_dataset(
      "fashion_mnist", data_dir or FASHION_MNIST_DIR, 10, hint, image_size, fit, lazy_train
  )


@DATASETS.register("mnist")
def load_mnist(
    data_dir: str | None = None,
    seed: int = 0,
    image_size: int = 32,
    fit: str = "pad",
    lazy_train: bool = False,
) -> Dataset:
  """MNIST (60,000 / 10,000 images) from its original IDX files in dataset.data_dir."""
  del seed
  hint = "Put LeCun's four MNIST IDX files there and point config field dataset.data_dir at them."
  if not data_dir:
    raise ValueError(f"Data set 'mnist' needs config field dataset.data_dir. {hint}")
  return load_idx_dataset("mnist", data_dir, 10, hint, image_size, fit, lazy_train)
