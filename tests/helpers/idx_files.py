"""IDX files (the MNIST / Fashion-MNIST format) written with struct, independently of
vibe_jax's reader: a big-endian header 0x0000 08 DD, the dims, then the bytes."""

import gzip
import struct

import numpy as np

STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def write_idx(path, array, compress: bool) -> None:
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  opener = gzip.open if compress else open
  with opener(str(path) + (".gz" if compress else ""), "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def write_idx_set(root, num_train: int, num_test: int, seed: int = 0) -> dict:
  """Random 28x28 images with labels 0-9 as the four files under `root` (train images and
  test images gzipped, the label files plain: both forms are read); the arrays written."""
  rng = np.random.default_rng(seed)
  arrays = {
      "train_images": rng.integers(0, 256, (num_train, 28, 28)),
      "train_labels": np.arange(num_train) % 10,  # every class present
      "test_images": rng.integers(0, 256, (num_test, 28, 28)),
      "test_labels": rng.integers(0, 10, num_test),
  }
  for i, (key, stem) in enumerate(STEMS.items()):
    write_idx(root / stem, arrays[key], compress=i % 2 == 0)
  return arrays
