"""On-device training augmentation for the fine-tuned path: random crop + horizontal flip."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_crop_flip(key: jax.Array, images: jax.Array, padding: int = 4) -> jax.Array:
  """Per-sample random crop of the zero-padded image back to its size, and a coin-flip
  mirror (torchvision's RandomCrop(size, padding) + RandomHorizontalFlip). Jittable."""
  height, width = images.shape[1:3]
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

  def one(key, image):
    crop_key, flip_key = jax.random.split(key)
    top, left = jax.random.randint(crop_key, (2,), 0, 2 * padding + 1)
    crop = jax.lax.dynamic_slice(image, (top, left, 0), (height, width, image.shape[-1]))
    return jnp.where(jax.random.bernoulli(flip_key), crop[:, ::-1], crop)

  return jax.vmap(one)(jax.random.split(key, images.shape[0]), padded)
