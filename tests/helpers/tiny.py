"""Small SSL settings and backbone shared by the tests and their subprocess helpers."""

import jax.numpy as jnp
import ml_collections
from flax import nnx

from configs import common


def tiny_ssl(steps: int, **overrides) -> ml_collections.ConfigDict:
  """config.ssl for a few fast steps: batch 16, Adam at 3e-3, no warmup or decay, a small
  projector."""
  ssl = common.base_config().ssl
  ssl.update(
      {
          "steps": steps,
          "batch_size": 16,
          "optimizer": "adam",
          "lr": 3e-3,
          "weight_decay": 0.0,
          "warmup_steps": 0,
          "projector_hidden_dim": 32,
          "projector_output_dim": 16,
          "log_every": 5,
          **overrides,
      }
  )
  return ssl


class TinyBackbone(nnx.Module):
  """A stand-in for the ResNet where only the training loop is under test: conv, BatchNorm
  (whose batch statistics must span every device of a mesh), pooling. (A bias before
  BatchNorm would get only rounding noise as gradient, which Adam scales up.)"""

  feature_dim = 8

  def __init__(self, rngs: nnx.Rngs):
    self.conv = nnx.Conv(3, self.feature_dim, (3, 3), use_bias=False, rngs=rngs)  # as in ResNet
    self.bn = nnx.BatchNorm(self.feature_dim, rngs=rngs)

  def __call__(self, images):
    return jnp.mean(nnx.relu(self.bn(self.conv(images))), axis=(1, 2))
