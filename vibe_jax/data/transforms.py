"""Per-dataset input pipelines in one place: normalisation constants and the reference's
train / eval transforms, as jittable JAX functions over NHWC batches.

All functions take uint8 or float images on the 0..255 scale (geometric ops keep the
dtype where they can; `normalize` divides by 255 and returns float32), and train-time
ones an explicit PRNG key, one independent draw per image.

  CIFAR-10/100, digits, (Fashion-)MNIST
                train: random crop 32 with zero padding 4, horizontal flip, normalise
                eval:  normalise
  ImageNet-30/1k train: random-resized-crop 224 (scale 0.08-1, ratio 3/4-4/3), flip,
                 normalise
                 eval: resize the short side to 256, centre crop 224, normalise
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from vibe_jax.registry import Registry

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The embedded digits set (white strokes on black), mapped to [-1, 1].
DIGITS_MEAN, DIGITS_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
# Grey 28x28 sets zero-padded to 32x32 (vibe_jax/data/idx.py): the training set's statistics
# after padding (Fashion-MNIST measured; MNIST's 0.1307 / 0.3081 scaled by the 784/1024 area).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2190,) * 3, (0.3318,) * 3
MNIST_MEAN, MNIST_STD = (0.1001,) * 3, (0.2752,) * 3
_CROP_ATTEMPTS = 10


def normalize(images: jax.Array, mean: tuple[float, ...], std: tuple[float, ...]) -> jax.Array:
  """(x / 255 - mean) / std per channel, float32."""
  x = jnp.asarray(images, jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
  """Mirrors each image left-right with probability 1/2."""
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def random_crop(key: jax.Array, images: jax.Array, size: int, padding: int) -> jax.Array:
  """Zero-pads by `padding` on each side and cuts a random size x size window per image
  (torchvision RandomCrop(size, padding))."""
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  height, width = padded.shape[1:3]
  if size > min(height, width):
    raise ValueError(f"crop size {size} exceeds the padded {height}x{width} images.")
  rows_key, cols_key = jax.random.split(key)
  rows = jax.random.randint(rows_key, (images.shape[0],), 0, height - size + 1)
  cols = jax.random.randint(cols_key, (images.shape[0],), 0, width - size + 1)
  cut = lambda image, r, c: jax.lax.dynamic_slice(image, (r, c, 0), (size, size, image.shape[-1]))
  return jax.vmap(cut)(padded, rows, cols)


def random_resized_crop_box(
    key: jax.Array,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """(top, left, crop height, crop width) as int32 for one image: torchvision's
  RandomResizedCrop.get_params (area fraction ~ U(scale), log aspect ~ U(log ratio), ten
  attempts, then the centred box with the aspect clamped to `ratio`)."""
  area_key, ratio_key, top_key, left_key = jax.random.split(key, 4)
  target_area = (height * width) * jax.random.uniform(
      area_key, (_CROP_ATTEMPTS,), minval=scale[0], maxval=scale[1]
  )
  aspect = jnp.exp(
      jax.random.uniform(
          ratio_key, (_CROP_ATTEMPTS,), minval=math.log(ratio[0]), maxval=math.log(ratio[1])
      )
  )
  crop_w = jnp.round(jnp.sqrt(target_area * aspect)).astype(jnp.int32)
  crop_h = jnp.round(jnp.sqrt(target_area / aspect)).astype(jnp.int32)
  valid = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)

  in_ratio = width / height
  if in_ratio < ratio[0]:
    fallback_w, fallback_h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    fallback_w, fallback_h = int(round(height * ratio[1])), height
  else:
    fallback_w, fallback_h = width, height

  first = jnp.argmax(valid)  # index of the first valid attempt (0 if none)
  any_valid = jnp.any(valid)
  crop_h = jnp.where(any_valid, crop_h[first], fallback_h)
  crop_w = jnp.where(any_valid, crop_w[first], fallback_w)
  # Uniform integer offsets in [0, H - h] and [0, W - w].
  top = jnp.floor(jax.random.uniform(top_key) * (height - crop_h + 1)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(left_key) * (width - crop_w + 1)).astype(jnp.int32)
  top = jnp.where(any_valid, top, (height - fallback_h) // 2)
  left = jnp.where(any_valid, left, (width - fallback_w) // 2)
  return top, left, crop_h, crop_w


def random_resized_crop(
    key: jax.Array,
    images: jax.Array,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> jax.Array:
  """A random box per image (random_resized_crop_box), resized bilinearly to size x size;
  float32 on the input's scale.

  Antialiased like torchvision's RandomResizedCrop (PIL, and tensors since 0.17), because
  ImageNet boxes are often shrunk to 224; unlike torchvision, the box's outermost output
  pixels blend in the image just past its border (ssl/augment.py's exact crop-then-resize
  does not, but never antialiases).
  """
  height, width = images.shape[1:3]

  def one(key, image):
    top, left, h, w = random_resized_crop_box(key, height, width, scale, ratio)
    factor = jnp.stack([size / h, size / w])
    return jax.image.scale_and_translate(
        image.astype(jnp.float32),
        (size, size, image.shape[-1]),
        (0, 1),
        factor,
        -jnp.stack([top, left]) * factor,
        method="linear",
        antialias=True,
    )

  return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)


def resize_center_crop(images: jax.Array, resize: int, crop: int) -> jax.Array:
  """Short side to `resize` (bilinear, antialiased), then the centred crop x crop window
  (torchvision Resize(resize) + CenterCrop(crop)); float32."""
  height, width = images.shape[1:3]
  if height <= width:
    new_h, new_w = resize, int(resize * width / height)
  else:
    new_h, new_w = int(resize * height / width), resize
  if crop > min(new_h, new_w):
    raise ValueError(f"centre crop {crop} exceeds the resized {new_h}x{new_w} images.")
  resized = jax.image.resize(
      images.astype(jnp.float32), (images.shape[0], new_h, new_w, images.shape[-1]), "linear"
  )
  top, left = int(round((new_h - crop) / 2)), int(round((new_w - crop) / 2))
  return resized[:, top : top + crop, left : left + crop]


@dataclasses.dataclass(frozen=True)
class Pipeline:
  """A data set's normalisation and its train (key, images) / eval (images) transforms."""

  description: str
  mean: tuple[float, ...]
  std: tuple[float, ...]
  train: Callable[[jax.Array, jax.Array], jax.Array]
  eval: Callable[[jax.Array], jax.Array]


def _cifar(mean, std) -> Pipeline:
  def train(key, images):
    crop_key, flip_key = jax.random.split(key)
    return normalize(random_flip(flip_key, random_crop(crop_key, images, 32, 4)), mean, std)

  return Pipeline(
      "random crop 32 (zero padding 4) + horizontal flip; eval: none",
      mean,
      std,
      train,
      lambda images: normalize(images, mean, std),
  )


def _imagenet() -> Pipeline:
  mean, std = IMAGENET_MEAN, IMAGENET_STD

  def train(key, images):
    crop_key, flip_key = jax.random.split(key)
    return normalize(random_flip(flip_key, random_resized_crop(crop_key, images, 224)), mean, std)

  return Pipeline(
      "random-resized-crop 224 + horizontal flip; eval: resize 256 + centre " "crop 224",
      mean,
      std,
      train,
      lambda images: normalize(resize_center_crop(images, 256, 224), mean, std),
  )


def _own_data() -> Pipeline:
  """A data owner's images (vibe_jax/data/own_data.py), at the size they were loaded:
  CIFAR's recipe at that size (random crop with zero padding of 1/8 of the side, flip) and
  ImageNet's statistics, since nothing is known of the data beforehand."""
  mean, std = IMAGENET_MEAN, IMAGENET_STD

  def train(key, images):
    size = images.shape[1]
    if images.shape[2] != size:
      raise ValueError(
          f"the augmentation of own data crops squares; the images are "
          f"{images.shape[1]}x{images.shape[2]}: set dataset.options.image_size."
      )
    crop_key, flip_key = jax.random.split(key)
    cropped = random_crop(crop_key, images, size, max(1, size // 8))
    return normalize(random_flip(flip_key, cropped), mean, std)

  return Pipeline(
      "random crop at the images' size (zero padding 1/8 of it) + horizontal flip, ImageNet "
      "statistics; eval: none",
      mean,
      std,
      train,
      lambda images: normalize(images, mean, std),
  )


PIPELINES: Registry[Pipeline] = Registry("input pipeline")
PIPELINES.register("image_folder")(_own_data())
PIPELINES.register("npz_images")(_own_data())
PIPELINES.register("digits")(_cifar(DIGITS_MEAN, DIGITS_STD))
PIPELINES.register("cifar10")(_cifar(CIFAR10_MEAN, CIFAR10_STD))
PIPELINES.register("cifar100")(_cifar(CIFAR100_MEAN, CIFAR100_STD))
PIPELINES.register("fashion_mnist")(_cifar(FASHION_MNIST_MEAN, FASHION_MNIST_STD))
PIPELINES.register("mnist")(_cifar(MNIST_MEAN, MNIST_STD))
PIPELINES.register("imagenet30")(_imagenet())
PIPELINES.register("imagenet1k")(_imagenet())


def get_pipeline(dataset_name: str) -> Pipeline:
  """The input pipeline of a data set (config field dataset.name)."""
  return PIPELINES.get(dataset_name, field="dataset.name")
