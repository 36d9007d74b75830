"""Input pipelines (vibe_jax/data/transforms.py) against numpy references."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from vibe_jax.data import transforms


def images(n=16, height=32, width=32, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_flip_is_an_exact_mirror_or_nothing():
  batch = images(64)
  out = np.asarray(jax.jit(transforms.random_flip)(jax.random.key(0), batch))
  assert out.dtype == np.uint8 and out.shape == batch.shape
  mirrored = np.array([np.array_equal(o, b[:, ::-1]) for o, b in zip(out, batch)])
  same = np.array([np.array_equal(o, b) for o, b in zip(out, batch)])
  assert np.all(mirrored ^ same) and 10 < mirrored.sum() < 54


def test_random_crop_is_a_window_of_the_zero_padded_image():
  batch = images(8)
  crop = jax.jit(transforms.random_crop, static_argnames=("size", "padding"))
  out = np.asarray(crop(jax.random.key(1), batch, size=32, padding=4))
  assert out.shape == batch.shape and out.dtype == np.uint8
  offsets = set()
  for o, b in zip(out, batch):
    padded = np.pad(b, ((4, 4), (4, 4), (0, 0)))
    hits = [
        (r, c)
        for r in range(9)
        for c in range(9)
        if np.array_equal(padded[r : r + 32, c : c + 32], o)
    ]
    assert hits, "output is not a window of the padded image"
    offsets.add(hits[0])
  assert len(offsets) > 1  # independent per image


def test_random_resized_crop_shape_range_and_identity_box():
  # Jitted: one program per shape instead of every op of the vmapped crop dispatched alone.
  crop = jax.jit(
      transforms.random_resized_crop, static_argnums=2, static_argnames=("scale", "ratio")
  )
  batch = images(4, 48, 64)
  out = np.asarray(crop(jax.random.key(2), batch, 24))
  assert out.shape == (4, 24, 24, 3) and out.dtype == np.float32
  assert out.min() >= -1e-3 and out.max() <= 255 + 1e-3
  square = images(3, 24, 24)
  whole = crop(jax.random.key(3), square, 24, scale=(1.0, 1.0), ratio=(1.0, 1.0))
  np.testing.assert_allclose(whole, square, atol=1e-3)  # the box is the whole image


def test_resize_center_crop_matches_numpy_slicing():
  batch = images(2, 256, 300)  # short side already 256: only the crop remains
  out = np.asarray(transforms.resize_center_crop(batch, 256, 224))
  assert out.shape == (2, 224, 224, 3)
  np.testing.assert_allclose(out, batch[:, 16:240, 38:262], atol=1e-3)
  small = np.asarray(transforms.resize_center_crop(images(2, 32, 48), 256, 224))
  assert small.shape == (2, 224, 224, 3)


def test_normalize_against_numpy():
  batch = images(3)
  mean, std = transforms.CIFAR10_MEAN, transforms.CIFAR10_STD
  expected = (batch / 255.0 - np.array(mean)) / np.array(std)
  np.testing.assert_allclose(transforms.normalize(batch, mean, std), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name,size,out", [("cifar10", 32, 32), ("cifar100", 32, 32), ("imagenet30", 224, 224)]
)
def test_pipelines_jit_and_are_deterministic_in_the_key(name, size, out):
  pipeline = transforms.get_pipeline(name)
  batch = images(2, size, size)
  train = jax.jit(pipeline.train)
  first, again = train(jax.random.key(0), batch), train(jax.random.key(0), batch)
  other = train(jax.random.key(1), batch)
  assert first.shape == (2, out, out, 3) and first.dtype == np.float32
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
  assert jax.jit(pipeline.eval)(batch).shape == (2, out, out, 3)
  assert pipeline.description


def test_unknown_pipeline_lists_the_known_ones():
  known = "cifar10, cifar100, digits, fashion_mnist, image_folder, imagenet1k, imagenet30, mnist"
  with pytest.raises(ValueError, match=f"known: {known}"):
    transforms.get_pipeline("svhn")
