"""Small SSL settings shared by the tests and their subprocess helpers."""

import ml_collections

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
