"""A data owner's image folders and npz files: class names from the folders, a validation
set, and one clear error for each bad folder (empty class, unreadable image, mixed sizes)."""

import os

import numpy as np
import pytest

from vibe_jax.data import own_data
from vibe_jax.data.datasets import load_dataset

from .folders import write_images


def tiny_folder(root, sizes=((6, 6), (6, 6)), classes=("cat", "dog")):
  """Two images per class of the given (height, width)s; pixel = 10 * class + image."""
  for c, name in enumerate(classes):
    images = [np.full((h, w, 3), 10 * c + k, np.uint8) for k, (h, w) in enumerate(sizes)]
    for k, image in enumerate(images):
      write_images(os.path.join(root, name), image[None], [f"{k}.png"])


def test_folder_keeps_class_names_files_and_pixels(tmp_path):
  tiny_folder(tmp_path / "train")
  tiny_folder(tmp_path / "val")
  dataset = load_dataset(
      "image_folder", str(tmp_path / "train"), validation_dir=str(tmp_path / "val")
  )
  assert dataset.class_names == ("cat", "dog")
  assert dataset.train_files == ("cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png")
  np.testing.assert_array_equal(dataset.train_labels, [0, 0, 1, 1])
  np.testing.assert_array_equal(dataset.train_images[:, 0, 0, 0], [0, 1, 10, 11])
  assert dataset.train_images.shape == (4, 6, 6, 3) and dataset.test_images.shape == (4, 6, 6, 3)
  without = load_dataset("image_folder", str(tmp_path / "train"))
  assert without.test_images.shape == (0, 6, 6, 3) and without.test_labels.shape == (0,)


def test_empty_class_folder_is_named(tmp_path):
  tiny_folder(tmp_path)
  os.makedirs(tmp_path / "empty_class")
  with pytest.raises(ValueError, match="empty_class holds no image"):
    load_dataset("image_folder", str(tmp_path))


def test_unreadable_image_is_named(tmp_path):
  tiny_folder(tmp_path)
  (tmp_path / "dog" / "broken.png").write_bytes(b"not an image at all")
  with pytest.raises(ValueError, match=r"cannot read the image .*dog/broken\.png"):
    load_dataset("image_folder", str(tmp_path))


def test_mixed_sizes_need_image_size(tmp_path):
  tiny_folder(tmp_path, sizes=((6, 6), (5, 7)))
  with pytest.raises(ValueError, match=r"cat/1\.png is 7x5; set dataset.options.image_size"):
    load_dataset("image_folder", str(tmp_path))
  resized = load_dataset("image_folder", str(tmp_path), image_size=4)
  assert resized.train_images.shape == (4, 4, 4, 3)


def test_npz_images_with_names_and_validation(tmp_path):
  path = str(tmp_path / "data.npz")
  grey = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
  np.savez(
      path,
      images=grey,
      labels=np.array([1, 0, 1]),
      class_names=np.array(["a", "b"]),
      validation_images=grey[:1],
      validation_labels=np.array([0]),
  )
  dataset = load_dataset("npz_images", path)
  assert dataset.class_names == ("a", "b") and dataset.train_files == ("0", "1", "2")
  np.testing.assert_array_equal(dataset.train_images[..., 2], grey)  # grey -> RGB
  assert dataset.test_images.shape == (1, 4, 4, 3)
  np.savez(path, images=grey, labels=np.array([0, 2, 2]))
  with pytest.raises(ValueError, match="class '1' has no image"):
    load_dataset("npz_images", path)
  np.savez(path, images=grey.astype(np.float32), labels=np.array([0, 1, 1]))
  with pytest.raises(ValueError, match="images must be uint8"):
    load_dataset("npz_images", path)


def test_every_suffix_pil_reads_is_an_image():
  assert {".png", ".jpg", ".tif", ".ppm"} <= set(own_data._image_suffixes())


def test_own_data_config_takes_a_registered_data_set_as_given():
  from configs import own_data
  from vibe_jax.experiment import build_experiment

  config = own_data.get_config("f,digits")
  assert (config.variant, config.dataset.name, config.attack.name) == ("f", "digits", "none")
  experiment = build_experiment(config)
  train, test = experiment.poisoned_train, experiment.poisoned_test
  np.testing.assert_array_equal(train.labels, experiment.dataset.train_labels)
  np.testing.assert_array_equal(train.images, experiment.dataset.train_images)
  assert not train.poison_mask.any() and len(test.images) == 0


def test_own_data_pipeline_keeps_the_size_and_normalises_with_imagenet_statistics():
  import jax

  from vibe_jax.data import transforms

  pipeline = transforms.get_pipeline("image_folder")
  images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(pipeline.eval(images), (images / 255.0 - mean) / std, atol=1e-5)
  augmented = np.asarray(pipeline.train(jax.random.key(0), images))
  assert augmented.shape == (3, 8, 8, 3)
  # Every augmented pixel is a normalised source pixel or the zero padding.
  values = np.concatenate([((images / 255.0 - mean) / std).reshape(-1, 3), -mean[None] / std])
  assert all(
      np.isclose(values, pixel, atol=1e-5).all(1).any() for pixel in augmented.reshape(-1, 3)
  )
  with pytest.raises(ValueError, match="image_size"):
    pipeline.train(jax.random.key(0), images[:, :, :6])
