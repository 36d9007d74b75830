"""The SSL training loop's parts (vibe_jax/ssl/training.py): schedule, optimisers, views."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.tiny import tiny_ssl
from vibe_jax.data import transforms
from vibe_jax.ssl import augment, training


def test_schedule_warms_up_then_decays_to_zero():
  ssl = tiny_ssl(100, lr=0.5, warmup_steps=10)
  schedule = training.learning_rate_schedule(ssl)
  np.testing.assert_allclose(
      [schedule(0), schedule(5), schedule(10), schedule(55), schedule(100)],
      [0.0, 0.25, 0.5, 0.25, 0.0],
      atol=1e-6,
  )
  short = training.learning_rate_schedule(tiny_ssl(5, lr=0.5, warmup_steps=10))
  np.testing.assert_allclose(short(4), 0.2, atol=1e-6)  # ends inside the warmup


@pytest.mark.parametrize("name", ["lars", "sgd", "adam"])
def test_optimizers_decay_kernels_but_not_biases(name):
  ssl = tiny_ssl(10, optimizer=name, lr=0.1, weight_decay=0.5)
  params = {"kernel": jnp.ones((3, 4)), "bias": jnp.ones((4,))}
  optimizer = training.make_optimizer(ssl)
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = optimizer.update(zero_grads, optimizer.init(params), params)
  assert float(jnp.max(updates["kernel"])) < 0.0  # weight decay shrinks the kernel
  np.testing.assert_array_equal(updates["bias"], 0.0)


@pytest.mark.parametrize("dataset", ["digits", "cifar10"])
def test_views_are_normalised_like_the_vibe_pipeline(dataset):
  """With the augmentation switched off, a view is exactly what VIBE's eval transform gives
  the backbone: one source of input statistics for pretraining and fine-tuning."""
  identity = augment.AugmentConfig(
      crop_scale=(1.0, 1.0),
      crop_ratio=(1.0, 1.0),
      jitter_prob=0.0,
      grayscale_prob=0.0,
      flip_prob=0.0,
  )
  pipeline = transforms.get_pipeline(dataset)
  images = jnp.asarray(np.random.default_rng(7).integers(0, 256, (4, 32, 32, 3), np.uint8))
  views = training.make_views(jax.random.key(0), images, identity, pipeline.mean, pipeline.std)
  expected = pipeline.eval(images)
  np.testing.assert_allclose(views, jnp.concatenate([expected, expected]), atol=1e-5)
