"""SimCLR augmentations on device: jittable, batched, driven by an explicit PRNG key.

Why on device: the SSL step draws two fresh views of every image at every step, and a host
(numpy/PIL) pipeline on small images would be slower than the network itself. Every random
choice is a function of the key, so a batch's views are a pure function of (key, step).

Images are float32 NHWC in [0, 1]. Per image, in this order (solo-learn's CIFAR pipeline):

1. random resized crop (torchvision semantics: area fraction ~ U(scale), log aspect ratio
   ~ U(log ratio), ten attempts then a centre-crop fallback; integer box), resized to
   `output_size` (default: the input size) with PyTorch's bilinear interpolation
   (align_corners=False);
2. colour jitter with probability `jitter_prob`: brightness, contrast, saturation and hue in
   a random order (torchvision's ColorJitter); hue is an exact HSV hue rotation;
3. grayscale with probability `grayscale_prob` (ITU-R 601 luma, as torchvision);
4. Gaussian blur with probability `blur_prob`, sigma ~ U(blur_sigma) (solo-learn's
   GaussianBlur, PIL's ImageFilter.GaussianBlur(radius=sigma); here an exact Gaussian kernel,
   edges mirrored; off by default, solo-learn's ImageNet recipes use it);
5. solarisation with probability `solarize_prob` (PIL's ImageOps.solarize: values >= 128/255
   inverted; off by default, All4One's second view uses it);
6. horizontal flip with probability `flip_prob`.

Views stay in [0, 1]; the data set's normalisation (vibe_jax.data.transforms.normalize with
the statistics of transforms.get_pipeline) is applied by the caller, so pretraining and VIBE
share one source of input statistics.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from vibe_jax.data.transforms import random_resized_crop_box

__all__ = [
    "AugmentConfig",
    "adjust_hue",
    "augment_batch",
    "augment_image",
    "blur_radius",
    "gaussian_blur",
    "grayscale",
    "hsv_to_rgb",
    "random_resized_crop",
    "rgb_to_hsv",
    "solarize",
    "to_unit_float",
]

# torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma).
_LUMA = (0.2989, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Augmentation strengths; frozen (hashable) so it can be a static jit argument.

  Defaults are SimCLR's colour-jitter strength 1 (0.8, 0.8, 0.8, 0.2), as in solo-learn's
  SimCLR configs, without Gaussian blur or solarisation (not used on CIFAR); `blur_prob`
  and `blur_sigma` are solo-learn's ImageNet blur (sigma ~ U(0.1, 2)).
  `output_size` (height, width) of the views; None keeps the input size. Pretraining sets
  it to what the data set's eval transform feeds the backbone later.
  """

  crop_scale: tuple[float, float] = (0.08, 1.0)
  crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
  jitter_prob: float = 0.8
  brightness: float = 0.8
  contrast: float = 0.8
  saturation: float = 0.8
  hue: float = 0.2
  grayscale_prob: float = 0.2
  solarize_prob: float = 0.0
  flip_prob: float = 0.5
  output_size: tuple[int, int] | None = None
  blur_prob: float = 0.0
  blur_sigma: tuple[float, float] = (0.1, 2.0)

  def __post_init__(self) -> None:
    # Plain floats and tuples (config values may be ints or lists), so the config hashes
    # and jax.random gets float probabilities.
    for name in ("crop_scale", "crop_ratio", "blur_sigma"):
      object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
    for field in dataclasses.fields(self):
      if field.name not in ("crop_scale", "crop_ratio", "blur_sigma", "output_size"):
        object.__setattr__(self, field.name, float(getattr(self, field.name)))
    if self.output_size is not None:
      object.__setattr__(self, "output_size", tuple(int(v) for v in self.output_size))
      if len(self.output_size) != 2 or min(self.output_size) < 1:
        raise ValueError(f"output_size {self.output_size} must be (height, width) >= 1")
    if len(self.crop_scale) != 2 or len(self.crop_ratio) != 2:
      raise ValueError(f"crop scale/ratio must be (min, max) pairs, got {self}")
    low, high = self.crop_scale
    if not 0.0 < low <= high <= 1.0:
      raise ValueError(
          f"crop scale {self.crop_scale} must satisfy 0 < min <= max <= 1; "
          "set ssl.crop_scale_min in (0, 1], e.g. 0.08"
      )
    if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
      raise ValueError(f"crop ratio {self.crop_ratio} must satisfy 0 < min <= max")
    for name in ("jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob", "flip_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1]")
    for name in ("brightness", "contrast", "saturation"):
      if getattr(self, name) < 0.0:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
    if len(self.blur_sigma) != 2 or not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
      raise ValueError(f"blur sigma {self.blur_sigma} must satisfy 0 < min <= max")
    if not 0.0 <= self.hue <= 0.5:
      raise ValueError(f"hue={self.hue} must lie in [0, 0.5] (a fraction of a turn)")


def to_unit_float(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1]; float input is returned as float32 unchanged."""
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def _resize_weights(start: jax.Array, length: jax.Array, size: int, source_size: int) -> jax.Array:
  """(size, source_size) bilinear weights mapping rows [start, start + length) of a
  `source_size`-row image onto `size` rows.

  PyTorch's bilinear rule (align_corners=False): output o samples source position
  (o + 0.5) * length / size - 0.5, clamped to the crop, so no pixel outside the box leaks in.
  """
  source = (jnp.arange(size, dtype=jnp.float32) + 0.5) * (length / size) - 0.5
  source = jnp.maximum(source, 0.0)
  low = jnp.floor(source)
  fraction = (source - low)[:, None]
  low = low.astype(jnp.int32)
  high = jnp.minimum(low + 1, length - 1)
  return (
      jax.nn.one_hot(start + low, source_size) * (1.0 - fraction)
      + jax.nn.one_hot(start + high, source_size) * fraction
  )


def random_resized_crop(
    key: jax.Array,
    image: jax.Array,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    size: tuple[int, int] | None = None,
) -> jax.Array:
  """One (H, W, C) image: a random box (transforms.random_resized_crop_box) resized
  (bilinear) to `size` (default (H, W)).

  The crop and resize are one separable interpolation (two small matrices), so the box
  may have a traced size: no dynamic shapes under jit. Not transforms.random_resized_crop's
  resize: this one is torchvision's crop-then-resize exactly (tested against torch) on
  CIFAR's upscaled boxes, where antialiasing changes nothing and that one would blend in
  pixels past the box border.
  """
  height, width = image.shape[0], image.shape[1]
  top, left, crop_h, crop_w = random_resized_crop_box(key, height, width, scale, ratio)
  out_h, out_w = (height, width) if size is None else size
  rows = _resize_weights(top, crop_h, out_h, height)
  cols = _resize_weights(left, crop_w, out_w, width)
  return jnp.einsum("oy,yxc,px->opc", rows, image, cols, precision=jax.lax.Precision.HIGHEST)


def grayscale(image: jax.Array) -> jax.Array:
  """Luma replicated over the 3 channels."""
  luma = image @ jnp.asarray(_LUMA, image.dtype)
  return jnp.repeat(luma[..., None], 3, axis=-1)


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
  """RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of a turn), last axis channels."""
  red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  value = jnp.max(rgb, axis=-1)
  chroma = value - jnp.min(rgb, axis=-1)
  grey = chroma == 0
  safe_chroma = jnp.where(grey, 1.0, chroma)
  saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1.0), 0.0)
  hue_red = (green - blue) / safe_chroma
  hue_green = 2.0 + (blue - red) / safe_chroma
  hue_blue = 4.0 + (red - green) / safe_chroma
  hue = jnp.where(value == red, hue_red, jnp.where(value == green, hue_green, hue_blue))
  hue = jnp.where(grey, 0.0, jnp.mod(hue / 6.0, 1.0))
  return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
  """Inverse of rgb_to_hsv."""
  hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  sector_float = jnp.floor(hue * 6.0)
  fraction = hue * 6.0 - sector_float
  sector = jnp.mod(sector_float.astype(jnp.int32), 6)
  p = value * (1.0 - saturation)
  q = value * (1.0 - saturation * fraction)
  t = value * (1.0 - saturation * (1.0 - fraction))
  # Per sector, which of (v, q, p, t) each of R, G, B takes.
  options = jnp.stack([value, q, p, t], axis=-1)
  table = jnp.asarray([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]], jnp.int32)
  return jnp.take_along_axis(options, table[sector], axis=-1)


def adjust_hue(image: jax.Array, shift: jax.Array) -> jax.Array:
  """Rotates the hue by `shift` (a fraction of a turn in [-0.5, 0.5]), as torchvision."""
  hsv = rgb_to_hsv(image)
  hsv = hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + shift, 1.0))
  return hsv_to_rgb(hsv)


def _blend(image: jax.Array, other: jax.Array, factor: jax.Array) -> jax.Array:
  return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)


def _color_jitter(key: jax.Array, image: jax.Array, config: AugmentConfig) -> jax.Array:
  """torchvision's ColorJitter: four adjustments with random factors, in random order."""
  order_key, b_key, c_key, s_key, h_key = jax.random.split(key, 5)

  def factor(k: jax.Array, strength: float) -> jax.Array:
    return jax.random.uniform(k, minval=max(0.0, 1.0 - strength), maxval=1.0 + strength)

  brightness = factor(b_key, config.brightness)
  contrast = factor(c_key, config.contrast)
  saturation = factor(s_key, config.saturation)
  hue = jax.random.uniform(h_key, minval=-config.hue, maxval=config.hue)
  branches = (
      lambda x: _blend(x, jnp.zeros_like(x), brightness),
      lambda x: _blend(x, jnp.mean(grayscale(x)[..., 0]), contrast),
      lambda x: _blend(x, grayscale(x), saturation),
      lambda x: adjust_hue(x, hue),
  )
  order = jax.random.permutation(order_key, len(branches))
  # One loop body rather than four unrolled switches: under vmap a switch computes every
  # branch, so the unrolled form compiled 16 adjustments (4 hue rotations) instead of 4.
  return jax.lax.fori_loop(
      0, len(branches), lambda position, x: jax.lax.switch(order[position], branches, x), image
  )


def solarize(image: jax.Array) -> jax.Array:
  """PIL's ImageOps.solarize (threshold 128) on [0, 1] values: x >= 128/255 -> 1 - x."""
  return jnp.where(image >= 128.0 / 255.0, 1.0 - image, image)


def gaussian_blur(image: jax.Array, sigma: jax.Array, radius: int) -> jax.Array:
  """(H, W, C) image blurred by a Gaussian of standard deviation `sigma` (may be traced),
  its kernel cut at the static `radius`, the image mirrored at its edges (d c b a | a b c d:
  of the ways to extend it, the closest to PIL's blur).

  Separable: 2 * (2 radius + 1) shifted, weighted copies, no convolution program to compile.
  """
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  weights = jnp.exp(-0.5 * jnp.square(offsets / sigma))
  weights = weights / jnp.sum(weights)

  def along(x: jax.Array, axis: int) -> jax.Array:
    pad = [(radius, radius) if a == axis else (0, 0) for a in range(x.ndim)]
    padded = jnp.pad(x, pad, mode="symmetric")
    size = x.shape[axis]
    return sum(
        weights[i] * jax.lax.slice_in_dim(padded, i, i + size, axis=axis)
        for i in range(2 * radius + 1)
    )

  return along(along(image, 0), 1)


def blur_radius(config: AugmentConfig) -> int:
  """The kernel's half-width: three standard deviations of the widest sigma drawn."""
  return int(math.ceil(3.0 * config.blur_sigma[1]))


def augment_image(key: jax.Array, image: jax.Array, config: AugmentConfig) -> jax.Array:
  """One (H, W, 3) float image in [0, 1] -> one random view, still in [0, 1]."""
  crop_key, jitter_key, apply_jitter_key, gray_key, flip_key = jax.random.split(key, 5)
  image = random_resized_crop(
      crop_key, image, config.crop_scale, config.crop_ratio, config.output_size
  )
  image = jnp.clip(image, 0.0, 1.0)
  if config.jitter_prob > 0:
    jittered = _color_jitter(jitter_key, image, config)
    image = jnp.where(jax.random.bernoulli(apply_jitter_key, config.jitter_prob), jittered, image)
  if config.grayscale_prob > 0:
    image = jnp.where(
        jax.random.bernoulli(gray_key, config.grayscale_prob), grayscale(image), image
    )
  if config.blur_prob > 0:  # its own key, so the other draws are as without it
    sigma_key, apply_key = jax.random.split(jax.random.fold_in(key, 6))
    sigma = jax.random.uniform(sigma_key, minval=config.blur_sigma[0], maxval=config.blur_sigma[1])
    blurred = gaussian_blur(image, sigma, blur_radius(config))
    image = jnp.where(jax.random.bernoulli(apply_key, config.blur_prob), blurred, image)
  if config.solarize_prob > 0:  # its own key, so the other draws are as without it
    apply = jax.random.bernoulli(jax.random.fold_in(key, 5), config.solarize_prob)
    image = jnp.where(apply, solarize(image), image)
  if config.flip_prob > 0:
    image = jnp.where(jax.random.bernoulli(flip_key, config.flip_prob), image[:, ::-1], image)
  return image


def augment_batch(key: jax.Array, images: jax.Array, config: AugmentConfig) -> jax.Array:
  """(B, H, W, 3) images (uint8, or float in [0, 1]) -> float32 views in [0, 1], of
  config.output_size if set.

  Each image gets its own key (split from `key`), so views are independent and the batch
  is a pure function of `key`.
  """
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"augment_batch expects NHWC images with 3 channels, got {images.shape}")
  images = to_unit_float(images)
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(augment_image, in_axes=(0, 0, None))(keys, images, config)
