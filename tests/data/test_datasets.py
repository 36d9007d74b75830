"""The data set loaders: the embedded digits set, the tfds CIFAR and ImageNet-1k loaders (mock
data, no download) and ImageNet-30 (image folders written here)."""

import numpy as np
import pytest

from vibe_jax.data.datasets import load_dataset


def test_digits_shape_split_and_determinism():
  data = load_dataset("digits")
  assert data.train_images.shape[1:] == (32, 32, 3) and data.train_images.dtype == np.uint8
  assert len(data.train_images) + len(data.test_images) == 1797
  assert abs(len(data.test_images) / 1797 - 0.3) < 0.01
  train_share = np.bincount(data.train_labels) / np.bincount(
      np.concatenate([data.train_labels, data.test_labels])
  )
  assert np.allclose(train_share, 0.7, atol=0.02)  # stratified
  np.testing.assert_array_equal(load_dataset("digits").train_images, data.train_images)
  assert not np.array_equal(load_dataset("digits", seed=1).train_labels, data.train_labels)


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_through_tfds_mock_data(name, classes, tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
    data = load_dataset(name, data_dir=str(tmp_path))
  assert data.train_images.shape == (24, 32, 32, 3) and data.train_images.dtype == np.uint8
  assert data.num_classes == classes
  assert data.train_labels.max() < classes


def test_lazy_training_rows_equal_the_eager_load(tmp_path):
  """lazy_train (per-host loading) reads the same images, only when asked for."""
  eager, lazy = load_dataset("digits"), load_dataset("digits", lazy_train=True)
  rows = np.array([5, 0, 1257, 17])
  np.testing.assert_array_equal(lazy.train_images.read(rows), eager.train_images[rows])
  assert lazy.train_images.shape == eager.train_images.shape
  np.testing.assert_array_equal(lazy.train_labels, eager.train_labels)
  np.testing.assert_array_equal(lazy.test_images, eager.test_images)
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
    eager = load_dataset("cifar10", data_dir=str(tmp_path))
    lazy = load_dataset("cifar10", data_dir=str(tmp_path), lazy_train=True)
    np.testing.assert_array_equal(lazy.train_images.read(np.arange(24)), eager.train_images)
    np.testing.assert_array_equal(lazy.train_images.read(rows[:2]), eager.train_images[rows[:2]])
  np.testing.assert_array_equal(lazy.train_labels, eager.train_labels)


def test_missing_data_dir_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="absent.*cifar-10-python.tar.gz.*tfds build"):
    load_dataset("cifar10", data_dir=str(tmp_path / "absent"))


def test_unknown_dataset_lists_known_ones():
  with pytest.raises(ValueError, match="known: .*cifar10.*digits"):
    load_dataset("svhn")


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
  with pytest.raises(FileNotFoundError, match="image-net.org"):
    load_dataset("imagenet1k", data_dir=str(tmp_path / "absent"))
