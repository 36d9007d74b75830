"""SSL augmentations (vibe_jax/ssl/augment.py) against numpy, PIL, colorsys and torch."""

import colorsys
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe_jax.data import transforms
from vibe_jax.ssl import augment, pretrain

FLIP_ONLY = augment.AugmentConfig(
    crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_prob=0.0, grayscale_prob=0.0, flip_prob=1.0
)


augment_batch = jax.jit(augment.augment_batch, static_argnums=2)


@pytest.fixture(scope="module")
def images():
  return jnp.asarray(np.random.default_rng(0).random((6, 16, 16, 3)), jnp.float32)


def test_augment_shapes_dtype_range(images):
  views = augment_batch(jax.random.key(0), images, augment.AugmentConfig())
  assert views.shape == images.shape and views.dtype == jnp.float32
  assert float(views.min()) >= 0.0 and float(views.max()) <= 1.0
  as_uint8 = augment_batch(
      jax.random.key(0), (images * 255).astype(jnp.uint8), augment.AugmentConfig()
  )
  assert as_uint8.dtype == jnp.float32 and float(as_uint8.max()) <= 1.0


def test_augment_deterministic_per_key_and_different_across_keys(images):
  config = augment.AugmentConfig()
  first = augment_batch(jax.random.key(3), images, config)
  np.testing.assert_array_equal(first, augment_batch(jax.random.key(3), images, config))
  assert not np.allclose(first, augment_batch(jax.random.key(4), images, config))
  # Per-sample randomness: identical inputs get different views.
  same = augment_batch(jax.random.key(3), jnp.repeat(images[:1], 4, 0), config)
  assert not np.allclose(same[0], same[1])


def test_forced_flip_is_exact_mirror(images):
  views = augment_batch(jax.random.key(0), images, FLIP_ONLY)
  np.testing.assert_array_equal(views, images[:, :, ::-1])


def test_forced_grayscale_has_equal_channels(images):
  config = augment.AugmentConfig(jitter_prob=0.0, grayscale_prob=1.0, flip_prob=0.0)
  views = np.asarray(augment_batch(jax.random.key(0), images, config))
  np.testing.assert_array_equal(views[..., 0], views[..., 1])
  np.testing.assert_array_equal(views[..., 0], views[..., 2])


def test_full_crop_is_identity(images):
  same = augment.random_resized_crop(jax.random.key(0), images[0], (1.0, 1.0), (1.0, 1.0))
  np.testing.assert_array_equal(same, images[0])


@pytest.mark.parametrize(
    "seed,size", [(0, None), (1, None), (2, None), (0, (24, 20)), (1, (9, 11))]
)
def test_crop_matches_torch_crop_then_bilinear_resize(images, seed, size):
  torch = pytest.importorskip("torch")
  key = jax.random.key(seed)
  image = images[seed]
  crop_key = jax.random.split(key, 5)[0]  # augment_image's first key
  top, left, h, w = (
      int(v)
      for v in transforms.random_resized_crop_box(crop_key, 16, 16, (0.08, 1.0), (3 / 4, 4 / 3))
  )
  assert 0 <= top and top + h <= 16 and 0 <= left and left + w <= 16
  box = torch.from_numpy(np.array(image[top : top + h, left : left + w])).permute(2, 0, 1)
  expected = torch.nn.functional.interpolate(
      box[None], size=size or (16, 16), mode="bilinear", align_corners=False
  )[0]
  got = augment.random_resized_crop(crop_key, image, size=size)
  np.testing.assert_allclose(got, expected.permute(1, 2, 0).numpy(), atol=1e-6)


def test_views_have_the_size_the_eval_transform_feeds_the_backbone(images):
  """Pretraining sees the resolution VIBE's feature passes use (ImageNet: 224 crops)."""
  assert pretrain.view_size(transforms.get_pipeline("digits"), (32, 32, 3)) == (32, 32)
  assert pretrain.view_size(transforms.get_pipeline("imagenet30"), (64, 48, 3)) == (224, 224)
  config = augment.AugmentConfig(output_size=(20, 24))
  assert augment_batch(jax.random.key(0), images, config).shape == (6, 20, 24, 3)


def test_hsv_round_trip_matches_colorsys():
  rgb = np.random.default_rng(1).random((200, 3)).astype(np.float32)
  rgb[:3] = 0.5  # grey: hue and saturation 0
  expected = np.array([colorsys.rgb_to_hsv(*pixel) for pixel in rgb])
  np.testing.assert_allclose(augment.rgb_to_hsv(jnp.asarray(rgb)), expected, atol=1e-6)
  np.testing.assert_allclose(augment.hsv_to_rgb(jnp.asarray(expected, jnp.float32)), rgb, atol=1e-6)
  shifted = np.array([colorsys.hsv_to_rgb((h + 0.25) % 1.0, s, v) for h, s, v in expected])
  np.testing.assert_allclose(augment.adjust_hue(jnp.asarray(rgb), 0.25), shifted, atol=1e-5)


def test_bad_crop_scale_names_the_field():
  with pytest.raises(ValueError, match="ssl.crop_scale_min"):
    augment.AugmentConfig(crop_scale=(0.0, 1.0))


def test_solarize_matches_pil_and_leaves_other_draws_alone(images):
  from PIL import Image, ImageOps

  pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
  expected = np.asarray(ImageOps.solarize(Image.fromarray(pixels))) / 255.0
  np.testing.assert_allclose(augment.solarize(jnp.asarray(pixels / 255.0)), expected, atol=1e-6)
  plain = augment_batch(jax.random.key(0), images, augment.AugmentConfig())
  solar = augment_batch(jax.random.key(0), images, augment.AugmentConfig(solarize_prob=1.0))
  np.testing.assert_allclose(jnp.where(plain >= 128 / 255, 1 - plain, plain), solar, atol=1e-6)


def test_gaussian_blur_under_vmap_matches_scipy_and_pil():
  """Per-image traced sigma under jit + vmap against scipy's exact Gaussian (mirrored edges,
  the same cut-off), and against PIL's ImageFilter.GaussianBlur, the blur of solo-learn's
  ImageNet recipe (box-filter passes approximating a Gaussian, uint8 output: close, not
  equal)."""
  from PIL import Image, ImageFilter
  import scipy.ndimage

  rng = np.random.default_rng(1)
  pixels = rng.integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
  sigmas = np.array([0.1, 0.9, 2.0], np.float32)
  radius = augment.blur_radius(augment.AugmentConfig())
  blur = jax.jit(jax.vmap(augment.gaussian_blur, in_axes=(0, 0, None)), static_argnums=2)
  ours = np.asarray(blur(jnp.asarray(pixels / 255.0, jnp.float32), sigmas, radius))
  for image, sigma, got in zip(pixels, sigmas, ours):
    exact = scipy.ndimage.gaussian_filter(
        image / 255.0, (sigma, sigma, 0), mode="reflect", truncate=radius / sigma
    )
    np.testing.assert_allclose(got, exact, atol=1e-5)
    pil = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=float(sigma))))
    difference = np.abs(got * 255 - pil)
    # Measured on this uniform noise (the worst case: every pixel an edge): mean 0.5 / 1.8 /
    # 0.9 levels, at most 6 / 7 / 10 (at sigma 0.1 PIL's box passes still mix in neighbours).
    assert difference.mean() < 2.0 and difference.max() < 12.0, sigma


def test_views_are_blurred_with_blur_prob_one(images):
  """Crop and flip fixed (FLIP_ONLY): a view is the mirrored image blurred, as scipy does."""
  import dataclasses

  import scipy.ndimage

  config = dataclasses.replace(FLIP_ONLY, blur_prob=1.0, blur_sigma=(1.5, 1.5))
  views = augment_batch(jax.random.key(0), images, config)
  radius = augment.blur_radius(config)
  for image, view in zip(np.asarray(images), np.asarray(views)):
    expected = scipy.ndimage.gaussian_filter(
        image[:, ::-1], (1.5, 1.5, 0), mode="reflect", truncate=radius / 1.5
    )
    np.testing.assert_allclose(view, expected, atol=1e-5)
  with pytest.raises(ValueError, match="ssl.blur_prob_second=1.5 must lie in"):
    config = importlib.import_module("configs.imagenet30_blend").get_config("a")
    config.ssl.blur_prob_second = 1.5
    pretrain.validate_ssl_config(config)
