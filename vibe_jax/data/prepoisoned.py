"""Readers for poisoned data sets made elsewhere (the VIBE reference ships LC, FTrojan and
Adaptive attacks this way), so experiments can run on exactly the reference's poison.

Two layouts:

* npz (the reference's BackdoorBench-style files, `<set>_<attack>_<rate>_<target>_{train,
  test}.npz`): `data` uint8 (N, H, W, 3), `labels` int (N,), and for the training set
  `poisoned_set`: the poisoned samples, as a boolean (or 0/1) mask of length N, as the
  reference writes it, or as integer indices. In a *test* npz, `labels` are the labels
  the attacker wants (the reference's poisoned test sets carry the target label); an
  optional `true_labels` gives the images' own classes.
* folder (Qi et al.'s Adaptive toolbox, `poisoned_train_set/...`): images `<i>.png` in
  `imgs/` (the toolbox) or `data/` (the VIBE reference), sorted by the number i; files
  `labels`, `poison_indices` and optionally `cover_indices`, each a .npy file or a
  torch.save file (extension .pt or none; read without torch, vibe_jax/safe_pickle.py). A test
  folder holds the triggered test images `<i>.png` (directly or in imgs/ or data/) and
  optionally `labels` (the attacker's labels) and `true_labels`.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
from PIL import Image

from vibe_jax import errors, files, safe_pickle

_IMAGE_DIRS = ("imgs", "data")
_ARRAY_SUFFIXES = (".npy", "", ".pt")


@dataclasses.dataclass(frozen=True)
class PrePoisonedTrain:
  """A poisoned training set as stored: images, given labels, who was poisoned."""

  images: np.ndarray
  labels: np.ndarray
  poison_indices: np.ndarray
  cover_indices: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class PrePoisonedTest:
  """Triggered test images; either label array may be missing from the file."""

  images: np.ndarray
  attacker_labels: np.ndarray | None
  true_labels: np.ndarray | None


def load_train(path: str) -> PrePoisonedTrain:
  """Reads a poisoned training set from an .npz file or an Adaptive-style folder."""
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    return _read_folder_train(path)
  if path.endswith(".npz") and os.path.isfile(path):
    return _read_npz_train(path)
  raise FileNotFoundError(
      f"attack.params.train_file={path!r} is neither an .npz file nor a "
      "folder with imgs/ (or data/), labels and poison_indices."
  )


def load_test(path: str) -> PrePoisonedTest:
  """Reads a poisoned test set from an .npz file or a folder of PNGs."""
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    return _read_folder_test(path)
  if path.endswith(".npz") and os.path.isfile(path):
    npz = files.read_npz(path, f"attack.params.test_file={path!r}")
    _require(npz, ("data", "labels"), path)
    return PrePoisonedTest(
        _images(npz["data"], path),
        _labels(npz["labels"], path),
        _labels(npz["true_labels"], path) if "true_labels" in npz else None,
    )
  raise FileNotFoundError(
      f"attack.params.test_file={path!r} is neither an .npz file nor a " "folder of <i>.png images."
  )


def poison_indices_from(stored: np.ndarray, num_samples: int, where: str) -> np.ndarray:
  """Sorted indices from either a boolean/0-1 mask of length N or an index array."""
  stored = np.asarray(stored).reshape(-1)
  is_mask = stored.dtype == bool or (
      len(stored) == num_samples > 2 and np.isin(stored, (0, 1)).all()
  )
  indices = np.flatnonzero(stored) if is_mask else stored.astype(np.int64)
  if len(indices) and (indices.min() < 0 or indices.max() >= num_samples):
    raise ValueError(f"{where}: poison indices must lie in [0, {num_samples}).")
  if len(np.unique(indices)) != len(indices):
    raise ValueError(f"{where}: poison indices repeat.")
  return np.sort(indices)


def _require(npz: dict[str, np.ndarray], keys: tuple[str, ...], path: str) -> None:
  missing = [k for k in keys if k not in npz]
  if missing:
    raise errors.MissingArraysError(f"{path} lacks arrays {missing}; it has {sorted(npz)}.")


def _images(data: np.ndarray, where: str) -> np.ndarray:
  """uint8 NHWC RGB; NCHW arrays (a channel axis of 3 first) are transposed."""
  data = np.asarray(data)
  if data.ndim == 4 and data.shape[1] == 3 and data.shape[-1] != 3:
    data = data.transpose(0, 2, 3, 1)
  if data.ndim != 4 or data.shape[-1] != 3:
    raise ValueError(f"{where}: images must be (N, H, W, 3), got {data.shape}.")
  if data.dtype != np.uint8:
    if data.min() < 0 or data.max() > 255:
      raise ValueError(
          f"{where}: images must be uint8 0..255, got {data.dtype} in "
          f"[{data.min()}, {data.max()}]."
      )
    data = np.round(data).astype(np.uint8)
  return data


def _labels(labels: np.ndarray, where: str) -> np.ndarray:
  """Integer labels, flattened; kept in their stored dtype, so that the attack's range check
  (it knows the class count) sees a label like 2**40 as it is, not wrapped to int32."""
  labels = np.asarray(labels).reshape(-1)
  if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{where}: labels must be integers, got {labels.dtype}.")
  return labels


def _read_npz_train(path: str) -> PrePoisonedTrain:
  npz = files.read_npz(path, f"attack.params.train_file={path!r}")
  _require(npz, ("data", "labels", "poisoned_set"), path)
  images = _images(npz["data"], path)
  labels = _labels(npz["labels"], path)
  poisoned = poison_indices_from(npz["poisoned_set"], len(labels), path)
  if len(images) != len(labels):
    raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels.")
  return PrePoisonedTrain(images, labels, poisoned)


def read_array(stem: str, required: bool = True) -> np.ndarray | None:
  """`stem`.npy, or a torch.save file `stem` / `stem`.pt (read without torch by
  vibe_jax/safe_pickle.py: tensors, numpy arrays and lists only), as a numpy array."""
  for suffix in _ARRAY_SUFFIXES:
    path = stem + suffix
    if not os.path.isfile(path):
      continue
    with open(path, "rb") as f:
      is_npy = f.read(6) == b"\x93NUMPY"
    if is_npy:
      return np.load(path, allow_pickle=False)
    return np.asarray(safe_pickle.load_torch_file(path))
  if required:
    raise FileNotFoundError(f"Missing {stem}.npy / {stem} / {stem}.pt.")
  return None


def read_png_folder(folder: str) -> np.ndarray:
  """All `<i>.png` images of `folder`, ordered by i, as uint8 (N, H, W, 3)."""
  names = [n for n in os.listdir(folder) if re.fullmatch(r"\d+\.png", n, re.IGNORECASE)]
  if not names:
    raise FileNotFoundError(f"No <i>.png images in {folder}.")
  names.sort(key=lambda n: int(n.split(".")[0]))
  images = []
  for name in names:
    with Image.open(os.path.join(folder, name)) as image:
      images.append(np.asarray(image.convert("RGB")))
  shapes = {im.shape for im in images}
  if len(shapes) != 1:
    raise ValueError(f"Images in {folder} differ in size: {sorted(shapes)}.")
  return np.stack(images)


def _image_folder(path: str, allow_flat: bool) -> str:
  for name in _IMAGE_DIRS:
    if os.path.isdir(os.path.join(path, name)):
      return os.path.join(path, name)
  if allow_flat:
    return path
  raise FileNotFoundError(f"{path} has no imgs/ or data/ folder of <i>.png images.")


def _read_folder_train(path: str) -> PrePoisonedTrain:
  images = read_png_folder(_image_folder(path, allow_flat=False))
  labels = _labels(read_array(os.path.join(path, "labels")), path)
  if len(images) != len(labels):
    raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels.")
  poisoned = poison_indices_from(
      read_array(os.path.join(path, "poison_indices")),
      len(labels),
      os.path.join(path, "poison_indices"),
  )
  cover = read_array(os.path.join(path, "cover_indices"), required=False)
  if cover is not None:
    cover = poison_indices_from(cover, len(labels), os.path.join(path, "cover_indices"))
  return PrePoisonedTrain(images, labels, poisoned, cover)


def _read_folder_test(path: str) -> PrePoisonedTest:
  images = read_png_folder(_image_folder(path, allow_flat=True))
  attacker = read_array(os.path.join(path, "labels"), required=False)
  true = read_array(os.path.join(path, "true_labels"), required=False)
  return PrePoisonedTest(
      images,
      None if attacker is None else _labels(attacker, path),
      None if true is None else _labels(true, path),
  )
