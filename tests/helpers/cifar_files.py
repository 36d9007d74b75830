"""CIFAR's original files, written small in their exact formats (the python batches as
Python 2's cPickle wrote them, the binary records byte for byte), from NHWC images."""

from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np


class Python2Pickler(pickle._Pickler):
  """Protocol 2 as Python 2's cPickle wrote CIFAR's batches: every string a byte string
  (SHORT_BINSTRING / BINSTRING, no _codecs call) and numpy's globals under numpy.core."""

  dispatch = dict(pickle._Pickler.dispatch)

  def save_byte_string(self, obj):
    raw = obj.encode("latin1") if isinstance(obj, str) else obj
    if len(raw) < 256:
      self.write(b"U" + bytes([len(raw)]) + raw)
    else:
      self.write(b"T" + struct.pack("<i", len(raw)) + raw)
    self.memoize(obj)

  dispatch[str] = save_byte_string
  dispatch[bytes] = save_byte_string

  def save_global(self, obj, name=None):
    module = obj.__module__.replace("numpy._core", "numpy.core")
    self.write(b"c" + module.encode() + b"\n" + (name or obj.__qualname__).encode() + b"\n")
    self.memoize(obj)


def python2_pickle(obj) -> bytes:
  stream = io.BytesIO()
  Python2Pickler(stream, protocol=2).dump(obj)
  return stream.getvalue()


def cifar_rows(images: np.ndarray) -> np.ndarray:
  """NHWC uint8 -> CIFAR's rows: the 1,024 red bytes (row-major), then green, then blue."""
  return np.stack(
      [np.concatenate([image[..., c].reshape(-1) for c in range(3)]) for image in images]
  ).astype(np.uint8)


def random_split(count: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  return (
      rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
      rng.integers(0, classes, count).astype(np.int64),
  )


def write_python(folder: str, name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
  """`splits`: file name -> (images, labels), in cifar-10-batches-py / cifar-100-python."""
  os.makedirs(folder, exist_ok=True)
  for file, (images, labels) in splits.items():
    batch = {"batch_label": f"{file} of the fake", "data": cifar_rows(images)}
    if name == "cifar100":
      batch.update(
          fine_labels=[int(x) for x in labels], coarse_labels=[int(x) // 5 for x in labels]
      )
    else:
      batch["labels"] = [int(x) for x in labels]
    batch["filenames"] = [f"img_{i}.png" for i in range(len(labels))]
    with open(os.path.join(folder, file), "wb") as f:
      f.write(python2_pickle(batch))


def write_binary(folder: str, name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
  """`splits`: file name -> (images, labels), in cifar-10-batches-bin / cifar-100-binary."""
  os.makedirs(folder, exist_ok=True)
  for file, (images, labels) in splits.items():
    with open(os.path.join(folder, file), "wb") as f:
      for row, label in zip(cifar_rows(images), labels):
        head = bytes([int(label) // 5, int(label)]) if name == "cifar100" else bytes([int(label)])
        f.write(head + row.tobytes())


def cifar10_python_files(count: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  files = {f"data_batch_{i}": random_split(count, 10, i) for i in range(1, 6)}
  files["test_batch"] = random_split(count, 10, 9)
  return files
