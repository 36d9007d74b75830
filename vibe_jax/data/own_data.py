"""A data owner's labelled images, as a Dataset: an image folder or an npz of arrays.

Neither comes with an attack or a poisoned test set: the training set is whatever the owner
has (it may hold poison nobody has marked), the test split is an optional clean validation
set (empty without one), and the class names come from the folder names or the npz. Use
with attack.name = 'none' and `--mode defend` (configs/own_data.py).

  image_folder   dataset.data_dir = ROOT with ROOT/<class>/<image> (any format PIL reads);
                 dataset.options.validation_dir = VAL with VAL/<class>/<image> (optional);
                 dataset.options.image_size = S resizes every image to S x S (0: all images
                 must already have one size)
  npz_images     dataset.data_dir = FILE.npz with `images` (N, H, W[, 3]) uint8 and `labels`
                 (N,) integers; optional `class_names` (C,) strings, `validation_images`
                 and `validation_labels`

Bad input fails while loading, naming the file and the fix: an empty class folder, an image
PIL cannot read, images of several sizes without image_size.
"""

from __future__ import annotations

import concurrent.futures
import os

import numpy as np
from PIL import Image

from vibe_jax import files
from vibe_jax.data import checks
from vibe_jax.data.datasets import DATASETS, Dataset, _image_folder_split, _read_resized

__all__ = ["as_rgb", "load_image_folder", "load_npz_images"]


def _image_suffixes() -> tuple[str, ...]:
  """Every file name ending PIL can open (".png", ".jpg", ".tif", ".ppm", ...)."""
  Image.init()
  return tuple(sorted(Image.registered_extensions()))


def _read_image(path: str, size: int) -> np.ndarray:
  """RGB uint8 (H, W, 3), resized to size x size when size > 0; an unreadable file is a
  ValueError naming it."""
  try:
    if size:
      return _read_resized(path, size)
    with Image.open(path) as image:
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError, Image.DecompressionBombError) as error:
    raise ValueError(
        f"cannot read the image {path} ({type(error).__name__}: {error}); replace or remove "
        "it (dataset.data_dir)."
    ) from error


def _read_folder(
    root: str, field: str, classes: list[str] | None, image_size: int, num_threads: int
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
  """(class names, file paths, images, labels) of root/<class>/<image>, every class
  holding at least one image and every image one size."""
  if not os.path.isdir(root):
    raise FileNotFoundError(
        f"{field}={root!r} is not a folder; it must hold one folder per class, "
        f"{field}/<class>/<image>."
    )
  found, paths, labels = _image_folder_split(root, classes, _image_suffixes())
  counts = np.bincount(labels, minlength=len(found))
  for name, count in zip(found, counts):
    if count == 0:
      raise ValueError(
          f"{field}: the class folder {os.path.join(root, name)} holds no image; add images "
          "or remove the folder (every class needs at least one)."
      )
  with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
    images = list(pool.map(lambda path: _read_image(path, image_size), paths))
  first = images[0].shape
  for path, image in zip(paths, images):
    if image.shape != first:
      raise ValueError(
          f"{field}: images differ in size: {paths[0]} is {first[1]}x{first[0]}, {path} is "
          f"{image.shape[1]}x{image.shape[0]}; set dataset.options.image_size=S to resize "
          "every image to S x S."
      )
  return found, paths, np.stack(images), labels


@DATASETS.register("image_folder")
def load_image_folder(
    data_dir: str | None = None,
    seed: int = 0,
    lazy_train: bool = False,
    validation_dir: str = "",
    image_size: int = 0,
    num_threads: int = 4,
) -> Dataset:
  """A data owner's image folder (module docstring); classes in sorted folder order.

  The whole set is read into memory (lazy_train is not supported: every image is read to
  check its size).
  """
  del seed, lazy_train
  if not data_dir:
    raise ValueError(
        "data set 'image_folder' needs config field dataset.data_dir: a folder with one "
        "folder of images per class, ROOT/<class>/<image>."
    )
  if image_size < 0:
    raise ValueError(
        f"dataset.options.image_size={image_size} must be >= 0 (0: keep the images' size)."
    )
  root = os.path.expanduser(data_dir)
  classes, paths, train_images, train_labels = _read_folder(
      root, "dataset.data_dir", None, image_size, num_threads
  )
  if validation_dir:
    _, _, test_images, test_labels = _read_folder(
        os.path.expanduser(validation_dir),
        "dataset.options.validation_dir",
        classes,
        image_size,
        num_threads,
    )
    if test_images.shape[1:] != train_images.shape[1:]:
      raise ValueError(
          f"dataset.options.validation_dir: its images are {test_images.shape[1:3]}, the "
          f"training images {train_images.shape[1:3]}; set dataset.options.image_size."
      )
  else:
    test_images, test_labels = train_images[:0], train_labels[:0]
  return Dataset(
      "image_folder",
      train_images,
      train_labels,
      test_images,
      test_labels,
      len(classes),
      class_names=tuple(classes),
      train_files=tuple(os.path.relpath(p, root).replace(os.sep, "/") for p in paths),
  )


def as_rgb(images: np.ndarray, where: str, name: str) -> np.ndarray:
  """uint8 (N, H, W, 3) from (N, H, W) or (N, H, W, 1 or 3) uint8."""
  if images.dtype != np.uint8:
    raise ValueError(f"{where}: {name} has dtype {images.dtype}; images must be uint8 in [0, 255].")
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"{where}: {name} has shape {images.shape}; expected (N, H, W[, 1 or 3]).")
  return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


@DATASETS.register("npz_images")
def load_npz_images(
    data_dir: str | None = None, seed: int = 0, lazy_train: bool = False
) -> Dataset:
  """A data owner's arrays in one npz file (module docstring). Without `class_names` the
  classes are 0 .. max(labels) and each must have a row."""
  del seed, lazy_train
  if not data_dir:
    raise ValueError(
        "data set 'npz_images' needs config field dataset.data_dir: an .npz file with "
        "`images` (N, H, W[, 3]) uint8 and `labels` (N,)."
    )
  path = os.path.expanduser(data_dir)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"dataset.data_dir={data_dir!r} is not a file (an .npz).")
  where = f"dataset.data_dir={data_dir!r}"
  arrays = files.read_npz(path, where)
  missing = sorted({"images", "labels"} - set(arrays))
  if missing:
    raise ValueError(f"{where} lacks {missing}; it needs `images` and `labels`.")
  images = as_rgb(arrays["images"], where, "images")
  checks.check_rows(images, where, "images")
  if "class_names" in arrays:
    names = tuple(str(n) for n in arrays["class_names"].reshape(-1))
  else:
    labels = checks.check_labels(arrays["labels"], np.iinfo(np.int32).max, where, "labels")
    names = tuple(str(c) for c in range(int(labels.max()) + 1))
  labels = checks.check_labels(arrays["labels"], len(names), where, "labels")
  if len(labels) != len(images):
    raise ValueError(f"{where}: {len(images)} images but {len(labels)} labels.")
  empty = np.flatnonzero(np.bincount(labels, minlength=len(names)) == 0)
  if len(empty):
    raise ValueError(
        f"{where}: class {names[empty[0]]!r} has no image ({len(empty)} empty class(es)); "
        "every class needs at least one."
    )
  if ("validation_images" in arrays) != ("validation_labels" in arrays):
    raise ValueError(f"{where}: give both validation_images and validation_labels, or neither.")
  if "validation_images" in arrays:
    test_images = as_rgb(arrays["validation_images"], where, "validation_images")
    test_labels = checks.check_labels(
        arrays["validation_labels"], len(names), where, "validation_labels"
    )
    if test_images.shape[1:] != images.shape[1:] or len(test_images) != len(test_labels):
      raise ValueError(
          f"{where}: validation_images {test_images.shape} do not match images "
          f"{images.shape} and validation_labels {test_labels.shape}."
      )
  else:
    test_images, test_labels = images[:0], labels[:0]
  return Dataset(
      "npz_images",
      images,
      labels,
      test_images,
      test_labels,
      len(names),
      class_names=names,
      train_files=tuple(str(i) for i in range(len(images))),
  )
