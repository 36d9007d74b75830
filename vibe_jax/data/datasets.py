"""Image classification data sets as uint8 NHWC arrays: digits (embedded), CIFAR-10/100 from
their original python or binary files (data/cifar.py) or tfds, ImageNet-1k from its folder
layout or tfds (prepared beforehand; never downloaded), ImageNet-30 from an image folder.
Input pipelines (normalisation, crops) live in vibe_jax/data/transforms.py."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import inspect
import os
from typing import Callable

import numpy as np
from PIL import Image

from vibe_jax.data import cifar
from vibe_jax.data.rows import Rows, as_rows
from vibe_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A labelled train/test split; images uint8 (N, H, W, 3), labels int32 (N,).

  Loaded with lazy_train=True, train_images are Rows read on demand (all labels are in
  memory), so each host of a multi-host job decodes only the rows it trains on.
  `class_names` and `train_files` (a name per training row) are filled by loaders that
  know them (a data owner's folder, vibe_jax/data/own_data.py); empty otherwise.
  """

  name: str
  train_images: np.ndarray | Rows
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  class_names: tuple[str, ...] = ()
  train_files: tuple[str, ...] = ()

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train_images.shape[1:])


DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")


def load_dataset(
    name: str, data_dir: str | None = None, seed: int = 0, lazy_train: bool = False, **options
) -> Dataset:
  """Loads a registered data set by name (config field dataset.name); `options` are the
  loader's own keyword arguments (config field dataset.options, e.g. image_size)."""
  loader = DATASETS.get(name, field="dataset.name")
  known = set(inspect.signature(loader).parameters) - {"data_dir", "seed", "lazy_train"}
  unknown = sorted(set(options) - known)
  if unknown:
    raise ValueError(
        f"dataset.options {unknown} are not options of data set {name!r}; it "
        f"takes {sorted(known) or 'none'}."
    )
  return loader(data_dir=data_dir, seed=seed, lazy_train=lazy_train, **options)


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
def load_digits(
    data_dir: str | None = None,
    seed: int = 0,
    size: int = 32,
    test_fraction: float = 0.3,
    lazy_train: bool = False,
) -> Dataset:
  """scikit-learn's bundled 8x8 digits, resized to size x size RGB uint8.

  Ships inside scikit-learn, so the demo needs no download. The split is stratified and
  fixed by `seed` (70/30 by default).
  """
  del data_dir  # Embedded: nothing to read from disk.
  from sklearn.datasets import load_digits as sklearn_digits

  bunch = sklearn_digits()
  small = (bunch.images / 16.0 * 255.0).clip(0, 255).astype(np.uint8)  # (1797, 8, 8)

  def rgb(indices: np.ndarray) -> np.ndarray:
    resized = [
        np.asarray(Image.fromarray(small[i]).resize((size, size), Image.BILINEAR)) for i in indices
    ]
    return np.repeat(np.stack(resized)[..., None], 3, axis=-1)

  labels = bunch.target.astype(np.int32)
  train, test = _stratified_split(labels, test_fraction, seed)
  train_images = (
      Rows(lambda i: rgb(train[i]), len(train), (size, size, 3), np.uint8)
      if lazy_train
      else rgb(train)
  )
  return Dataset("digits", train_images, labels[train], rgb(test), labels[test], 10)


def tfds_data_dir(data_dir: str | None) -> str:
  """dataset.data_dir, or where tfds looks when it is empty: $TFDS_DATA_DIR, then
  ~/tensorflow_datasets (tfds's own default, as big_vision leaves it)."""
  chosen = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  return os.path.expanduser(chosen)


_TFDS_PREPARE_HINT = (
    'Prepare it once on a machine with internet access, e.g. `python -c "import '
    "tensorflow_datasets as tfds; tfds.data_source('{name}', data_dir='{data_dir}', "
    'download=True)"` (or `tfds build {name} --data_dir={data_dir} '
    "--file_format=array_record`), then point config field dataset.data_dir at that directory."
)


def _load_tfds(
    name: str,
    data_dir: str | None,
    num_classes: int,
    splits: tuple[str, str] = ("train", "test"),
    image_size: int | None = None,
    hint: str = _TFDS_PREPARE_HINT,
    lazy_train: bool = False,
) -> Dataset:
  """Reads a tfds data set already prepared in array_record format; never downloads.

  `splits` name the (train, test) splits; `image_size` resizes every image to that square
  size (for data sets whose images differ in size). With `lazy_train` the training images
  are read when asked for; the labels are read up front, in chunks, dropping the images.
  """
  import tensorflow_datasets as tfds

  data_dir = tfds_data_dir(data_dir)
  try:
    train, test = [
        tfds.data_source(name, split=split, data_dir=data_dir, download=False) for split in splits
    ]
  except Exception as error:  # tfds raises several types for a missing/partial data set.
    raise FileNotFoundError(
        f"Could not open {name!r} in dataset.data_dir={data_dir!r} ({error}). "
        + hint.format(name=name, data_dir=data_dir)
    ) from error

  def images(records: list) -> np.ndarray:
    decoded = [np.asarray(r["image"], np.uint8) for r in records]
    if image_size is not None:
      decoded = [_resize_square(image, image_size) for image in decoded]
    return np.stack(decoded)

  labels = lambda records: np.asarray([r["label"] for r in records], np.int32)
  test_records = _read(test, range(len(test)))
  if lazy_train:
    chunk = 1024
    train_labels = np.concatenate(
        [
            labels(_read(train, range(start, min(start + chunk, len(train)))))
            for start in range(0, len(train), chunk)
        ]
    )
    row_shape = images(test_records[:1]).shape[1:]  # as the training images
    train_images = Rows(lambda i: images(_read(train, i)), len(train), row_shape, np.uint8)
  else:
    train_records = _read(train, range(len(train)))
    train_images, train_labels = images(train_records), labels(train_records)
  return Dataset(
      name, train_images, train_labels, images(test_records), labels(test_records), num_classes
  )


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
  """RGB uint8 (h, w, 3) resized to (size, size, 3), bilinear; grey images replicated."""
  if image.ndim == 2 or image.shape[-1] == 1:
    image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
  if image.shape[:2] == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _read(source, indices) -> list:
  """Records of a tfds data source: one batched read (fast on array_record), or one read
  per record where the source cannot batch (tfds's mock data)."""
  indices = [int(i) for i in indices]
  try:
    return source.__getitems__(indices)
  except TypeError:
    return [source[i] for i in indices]


_CIFAR_HINT = (
    "Put the original files in it: download {tarball} (python version, as torchvision "
    "uses) or the binary version from https://www.cs.toronto.edu/~kriz/cifar.html and run "
    "`tar xzf {tarball} -C {data_dir}`; or prepare it with tfds on a machine with "
    "TensorFlow (`tfds build {name} --data_dir={data_dir} --file_format=array_record`)."
)


def _load_cifar(name: str, data_dir: str | None, num_classes: int, lazy_train: bool) -> Dataset:
  """From the original python or binary files when data_dir holds them (no TensorFlow
  needed), else from a tfds-prepared directory."""
  directory = tfds_data_dir(data_dir)
  found = cifar.find(name, directory) if os.path.isdir(directory) else None
  if found is None:
    tarball = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    hint = _CIFAR_HINT.format(tarball=tarball, name=name, data_dir="{data_dir}")
    return _load_tfds(name, data_dir, num_classes, hint=hint, lazy_train=lazy_train)
  train_images, train_labels, test_images, test_labels = cifar.read(found)
  if lazy_train:
    train_images = as_rows(train_images)  # 150 MB: read whole, handed out by row
  return Dataset(name, train_images, train_labels, test_images, test_labels, num_classes)


@DATASETS.register("cifar10")
def load_cifar10(data_dir: str | None = None, seed: int = 0, lazy_train: bool = False) -> Dataset:
  del seed
  return _load_cifar("cifar10", data_dir, 10, lazy_train)


@DATASETS.register("cifar100")
def load_cifar100(data_dir: str | None = None, seed: int = 0, lazy_train: bool = False) -> Dataset:
  del seed
  return _load_cifar("cifar100", data_dir, 100, lazy_train)


_IMAGENET_HINT = (
    "ImageNet-1k cannot be downloaded automatically: get ILSVRC2012_img_train.tar and "
    "ILSVRC2012_img_val.tar from image-net.org and either unpack them into "
    "{data_dir}/train/<wnid>/*.JPEG and {data_dir}/val/<wnid>/*.JPEG (the layout torchvision's "
    "ImageFolder reads; the validation images sorted into class folders), or, with "
    "TensorFlow, `tfds build imagenet2012 --manual_dir=TARS_DIR --data_dir={data_dir} "
    "--file_format=array_record`; then point config field dataset.data_dir at that folder."
)


@DATASETS.register("imagenet1k")
def load_imagenet1k(
    data_dir: str | None = None,
    seed: int = 0,
    image_size: int = 224,
    num_threads: int = 8,
    lazy_train: bool = False,
) -> Dataset:
  """ImageNet-1k from data_dir/train/<wnid>/ and data_dir/val/<wnid>/ (classes in sorted
  wnid order, as torchvision's ImageFolder), or else tfds 'imagenet2012' (train /
  validation); every image resized to image_size squared.

  Like the reference (torchvision Resize((224, 224)) before poisoning), images are stored
  at one square size, so the attacks see fixed shapes; the eval pipeline (transforms.py)
  then resizes to 256 and centre-crops 224. Memory: 1.28M x 224 x 224 x 3 bytes is about
  193 GB; load lazily (parallel.per_host_loading) or use a smaller dataset.options.image_size.
  """
  del seed
  directory = tfds_data_dir(data_dir)
  if all(os.path.isdir(os.path.join(directory, split)) for split in ("train", "val")):
    val = os.path.join(directory, "val")
    if not any(os.path.isdir(os.path.join(val, entry)) for entry in os.listdir(val)):
      raise FileNotFoundError(
          f"{val} has no class folders: ILSVRC2012_img_val.tar unpacks flat, so sort its "
          "images into val/<wnid>/ by their labels (the devkit's ground truth; a common "
          "script is valprep.sh) so that both splits read as train/<wnid>/*.JPEG."
      )
    return _load_image_folders(
        "imagenet1k", directory, ("train", "val"), image_size, num_threads, lazy_train
    )
  return _load_tfds(
      "imagenet2012",
      data_dir,
      1000,
      splits=("train", "validation"),
      image_size=image_size,
      hint=_IMAGENET_HINT,
      lazy_train=lazy_train,
  )


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _image_folder_split(
    root: str, classes: list[str] | None, suffixes: tuple[str, ...] = _IMAGE_SUFFIXES
) -> tuple[list[str], list[str], np.ndarray]:
  """(class names, file paths, labels) of root/<class>/<image> (ImageFolder order); images
  are the files whose names end in one of `suffixes` (lower case)."""
  found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  if classes is not None and found != classes:
    raise ValueError(
        f"{root} has classes {found[:5]}... that differ from the training "
        f"set's {classes[:5]}...; both splits need the same class folders."
    )
  paths, labels = [], []
  for label, name in enumerate(found):
    folder = os.path.join(root, name)
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(suffixes))
    paths += [os.path.join(folder, f) for f in files]
    labels += [label] * len(files)
  if not paths:
    raise FileNotFoundError(f"No images ({', '.join(suffixes)}) under {root}/<class>/.")
  return found, paths, np.asarray(labels, np.int32)


def _read_resized(path: str, size: int) -> np.ndarray:
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))


@DATASETS.register("imagenet30")
def load_imagenet30(
    data_dir: str | None = None,
    seed: int = 0,
    image_size: int = 224,
    num_threads: int = 8,
    lazy_train: bool = False,
) -> Dataset:
  """ImageNet-30 (the VIBE reference's subset) from data_dir/train/<class>/ and
  data_dir/test/<class>/; classes in sorted order, as torchvision's ImageFolder.

  Every image is resized to image_size x image_size (the reference resizes to 224 x 224
  before poisoning) and stored as uint8; the input pipeline (transforms.py) then does
  random-resized-crop 224 for training and resize 256 + centre crop 224 for evaluation.
  """
  del seed
  if not data_dir:
    raise ValueError(
        "Data set 'imagenet30' needs config field dataset.data_dir: a folder "
        "with train/<class>/*.jpg and test/<class>/*.jpg (the reference's "
        "imagenet_subset tarball, unpacked)."
    )
  directory = os.path.expanduser(data_dir)
  return _load_image_folders(
      "imagenet30", directory, ("train", "test"), image_size, num_threads, lazy_train
  )


def _load_image_folders(
    name: str,
    data_dir: str,
    splits: tuple[str, str],
    image_size: int,
    num_threads: int,
    lazy_train: bool,
) -> Dataset:
  """data_dir/<train split>/<class>/<image> and data_dir/<test split>/<class>/<image>,
  resized to image_size squared; the training images read on demand with `lazy_train`
  (each host decodes only its rows)."""
  roots = {split: os.path.join(data_dir, split) for split in splits}
  for split, root in roots.items():
    if not os.path.isdir(root):
      raise FileNotFoundError(
          f"dataset.data_dir={data_dir!r} has no {split}/ folder; expected "
          f"{split}/<class>/<image> for both {splits[0]} and {splits[1]}."
      )
  classes, train_paths, train_labels = _image_folder_split(roots[splits[0]], None)
  _, test_paths, test_labels = _image_folder_split(roots[splits[1]], classes)

  def read(paths: list[str]) -> np.ndarray:
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
      return np.stack(list(pool.map(lambda p: _read_resized(p, image_size), paths)))

  train_images = (
      Rows(
          lambda i: read([train_paths[k] for k in i]),
          len(train_paths),
          (image_size, image_size, 3),
          np.uint8,
      )
      if lazy_train
      else read(train_paths)
  )
  return Dataset(name, train_images, train_labels, read(test_paths), test_labels, len(classes))
