"""Fashion-MNIST / MNIST from IDX files the test writes in the original format (big-endian
header written with struct, independently of the reader)."""

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from vibe_jax.data.datasets import load_dataset
from vibe_jax.data.idx import IDX_FILES


def _write_idx(path, array, compress):
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape
  )
  opener = gzip.open if compress else open
  with opener(str(path) + (".gz" if compress else ""), "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path):
  rng = np.random.default_rng(0)
  arrays = {
      "train_images": rng.integers(0, 256, (7, 28, 28)),
      "train_labels": rng.integers(0, 10, 7),
      "test_images": rng.integers(0, 256, (3, 28, 28)),
      "test_labels": rng.integers(0, 10, 3),
  }
  for i, (key, stem) in enumerate(IDX_FILES.items()):
    _write_idx(tmp_path / stem, arrays[key], compress=i % 2 == 0)  # both forms are read
  return tmp_path, arrays


@pytest.mark.parametrize("lazy", [False, True])
def test_padded_rgb_images_and_labels(idx_dir, lazy):
  root, arrays = idx_dir
  data = load_dataset("fashion_mnist", data_dir=str(root), lazy_train=lazy)
  assert data.train_images.shape == (7, 32, 32, 3) and data.num_classes == 10
  train = data.train_images[np.arange(7)] if lazy else data.train_images
  np.testing.assert_array_equal(train[:, 2:30, 2:30, 1], arrays["train_images"])
  assert train[:, :2].max() == 0 and train[:, 30:].max() == 0 and train[:, :, :2].max() == 0
  np.testing.assert_array_equal(train[..., 0], train[..., 2])
  np.testing.assert_array_equal(data.train_labels, arrays["train_labels"])
  np.testing.assert_array_equal(data.test_images[:, 2:30, 2:30, 0], arrays["test_images"])
  np.testing.assert_array_equal(data.test_labels, arrays["test_labels"])


def test_resize_matches_pil_bilinear(idx_dir):
  root, arrays = idx_dir
  data = load_dataset("mnist", data_dir=str(root), image_size=16, fit="resize")
  expected = Image.fromarray(arrays["test_images"][1].astype(np.uint8)).resize(
      (16, 16), Image.BILINEAR
  )
  np.testing.assert_array_equal(data.test_images[1, ..., 0], np.asarray(expected))


def test_missing_files_name_the_package_and_directory(tmp_path):
  with pytest.raises(
      FileNotFoundError,
      match=f"{tmp_path}.*train-images-idx3-ubyte.*apt-get install dataset-fashion-mnist",
  ):
    load_dataset("fashion_mnist", data_dir=str(tmp_path))


def test_corrupt_files_are_refused(idx_dir):
  root, _ = idx_dir
  stem = IDX_FILES["test_labels"]  # written uncompressed (odd index)
  data = (root / stem).read_bytes()
  (root / stem).write_bytes(data[:-1])
  with pytest.raises(ValueError, match="truncated"):
    load_dataset("fashion_mnist", data_dir=str(root))
  (root / stem).write_bytes(b"\x00\x00\x0d\x01" + data[4:])  # float type code
  with pytest.raises(ValueError, match="magic"):
    load_dataset("fashion_mnist", data_dir=str(root))
