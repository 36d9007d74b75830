"""CIFAR-10/100 from the files users hold, read without TensorFlow.

The format is detected from what the directory holds (the folder itself, or the folder
inside it that the original tarball unpacks to):

* python batches (`cifar-10-python.tar.gz` -> `cifar-10-batches-py/`, `cifar-100-python.tar.gz`
  -> `cifar-100-python/`; what torchvision downloads): pickled dicts of numpy arrays, read
  with a restricted unpickler that admits only numpy's and builtin types (vibe_jax/safe_pickle.py);
* binary (`cifar-10-binary.tar.gz` -> `cifar-10-batches-bin/`, `cifar-100-binary.tar.gz` ->
  `cifar-100-binary/`): fixed-size records, a label byte (CIFAR-100: coarse, then fine)
  before 3,072 image bytes.

Both store an image as 1,024 red, then 1,024 green, then 1,024 blue bytes, row-major.
`find` returns None when neither is there (the caller then tries a tfds-prepared directory).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from vibe_jax import safe_pickle

__all__ = ["CifarFiles", "find", "read"]

_PIXELS = 32 * 32 * 3


@dataclasses.dataclass(frozen=True)
class _Layout:
  kind: str  # "python" or "binary"
  folder: str  # what the original tarball unpacks to
  tarball: str
  train: tuple[str, ...]
  test: tuple[str, ...]


_LAYOUTS = {
    "cifar10": (
        _Layout(
            "python",
            "cifar-10-batches-py",
            "cifar-10-python.tar.gz",
            tuple(f"data_batch_{i}" for i in range(1, 6)),
            ("test_batch",),
        ),
        _Layout(
            "binary",
            "cifar-10-batches-bin",
            "cifar-10-binary.tar.gz",
            tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
            ("test_batch.bin",),
        ),
    ),
    "cifar100": (
        _Layout("python", "cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",)),
        _Layout(
            "binary", "cifar-100-binary", "cifar-100-binary.tar.gz", ("train.bin",), ("test.bin",)
        ),
    ),
}


@dataclasses.dataclass(frozen=True)
class CifarFiles:
  """Where a CIFAR data set's original files are, and in which format."""

  name: str
  kind: str
  train: tuple[str, ...]
  test: tuple[str, ...]


def find(name: str, data_dir: str) -> CifarFiles | None:
  """The original files of `name` ('cifar10' or 'cifar100') in data_dir or in the folder
  their tarball unpacks to inside it; None when there are none. An unpacked folder that
  lacks files, or a tarball not unpacked, is an error saying what to do."""
  for layout in _LAYOUTS[name]:
    for folder in (os.path.join(data_dir, layout.folder), data_dir):
      present = [
          f for f in (*layout.train, *layout.test) if os.path.isfile(os.path.join(folder, f))
      ]
      if not present:
        continue
      missing = [f for f in (*layout.train, *layout.test) if f not in present]
      if missing:
        raise FileNotFoundError(
            f"{folder} holds CIFAR's {layout.kind} files {present} but lacks {missing}; "
            f"unpack {layout.tarball} again (tar xzf {layout.tarball} -C {data_dir})."
        )
      join = lambda files: tuple(os.path.join(folder, f) for f in files)
      return CifarFiles(name, layout.kind, join(layout.train), join(layout.test))
  for layout in _LAYOUTS[name]:
    if os.path.isfile(os.path.join(data_dir, layout.tarball)):
      raise FileNotFoundError(
          f"dataset.data_dir={data_dir!r} holds {layout.tarball} but not the folder it unpacks "
          f"to; run `tar xzf {os.path.join(data_dir, layout.tarball)} -C {data_dir}`."
      )
  return None


def read(files: CifarFiles) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(train images, train labels, test images, test labels): uint8 (N, 32, 32, 3), int32."""
  reader = _read_python if files.kind == "python" else _read_binary
  fine = files.name == "cifar100"
  train = [reader(path, fine) for path in files.train]
  test = [reader(path, fine) for path in files.test]
  stack = lambda parts, i: np.concatenate([part[i] for part in parts])
  return stack(train, 0), stack(train, 1), stack(test, 0), stack(test, 1)


def _to_nhwc(rows: np.ndarray, path: str) -> np.ndarray:
  rows = np.asarray(rows)
  if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != _PIXELS:
    raise ValueError(
        f"{path}: CIFAR images must be uint8 rows of {_PIXELS} bytes, got {rows.dtype} "
        f"{rows.shape}."
    )
  return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _read_python(path: str, fine: bool) -> tuple[np.ndarray, np.ndarray]:
  with open(path, "rb") as f:
    batch = safe_pickle.loads(f.read(), path)
  if not isinstance(batch, dict):
    raise ValueError(f"{path}: a CIFAR python batch is a dict, got {type(batch).__name__}.")
  batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
  label_key = "fine_labels" if fine else "labels"
  if "data" not in batch or label_key not in batch:
    raise ValueError(
        f"{path}: a CIFAR batch needs 'data' and {label_key!r}; it has {sorted(batch)}."
    )
  images = _to_nhwc(batch["data"], path)
  labels = np.asarray(batch[label_key], np.int64)
  if len(labels) != len(images):
    raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels.")
  return images, labels.astype(np.int32)


def _read_binary(path: str, fine: bool) -> tuple[np.ndarray, np.ndarray]:
  label_bytes = 2 if fine else 1  # CIFAR-100: coarse label, then fine label
  record = label_bytes + _PIXELS
  raw = np.fromfile(path, np.uint8)
  if len(raw) % record:
    raise ValueError(
        f"{path}: {len(raw)} bytes is not a whole number of {record}-byte CIFAR records."
    )
  raw = raw.reshape(-1, record)
  return _to_nhwc(raw[:, label_bytes:], path), raw[:, label_bytes - 1].astype(np.int32)
