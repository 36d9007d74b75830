"""ImageNet-30 (image folders written here) and ImageNet-1k (tfds mock data, no download)."""

import numpy as np
import pytest

from vibe_jax.data.datasets import load_dataset


def write_image_folder(root, classes, per_class, sizes):
  from PIL import Image

  rng = np.random.default_rng(0)
  for name in classes:
    (root / name).mkdir(parents=True)
    for i in range(per_class):
      h, w = sizes[i % len(sizes)]
      Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
          root / name / f"img{i}.jpg"
      )


def test_imagenet30_image_folder(tmp_path):
  write_image_folder(tmp_path / "train", ["b_cls", "a_cls", "c_cls"], 3, [(40, 50), (60, 30)])
  write_image_folder(tmp_path / "test", ["b_cls", "a_cls", "c_cls"], 2, [(33, 33)])
  data = load_dataset("imagenet30", data_dir=str(tmp_path), image_size=32)
  assert data.train_images.shape == (9, 32, 32, 3) and data.test_images.shape == (6, 32, 32, 3)
  assert data.train_images.dtype == np.uint8 and data.num_classes == 3
  np.testing.assert_array_equal(data.train_labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])  # sorted names
  with pytest.raises(ValueError, match="dataset.options"):
    load_dataset("imagenet30", data_dir=str(tmp_path), image_sise=32)


def test_imagenet30_layout_errors(tmp_path):
  with pytest.raises(ValueError, match="dataset.data_dir"):
    load_dataset("imagenet30")
  write_image_folder(tmp_path / "train", ["a", "b"], 1, [(8, 8)])
  with pytest.raises(FileNotFoundError, match="test/"):
    load_dataset("imagenet30", data_dir=str(tmp_path))
  write_image_folder(tmp_path / "test", ["a", "c"], 1, [(8, 8)])
  with pytest.raises(ValueError, match="same class folders"):
    load_dataset("imagenet30", data_dir=str(tmp_path))


def test_imagenet1k_through_tfds_mock_data_and_no_download(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=3):
    data = load_dataset("imagenet1k", data_dir=str(tmp_path), image_size=24)
  assert data.train_images.shape == (3, 24, 24, 3) and data.test_images.shape == (3, 24, 24, 3)
  assert data.num_classes == 1000 and data.train_labels.max() < 1000
  with pytest.raises(ValueError, match="manual_dir"):
    load_dataset("imagenet1k")
  with pytest.raises(FileNotFoundError, match="image-net.org"):
    load_dataset("imagenet1k", data_dir=str(tmp_path / "absent"))
