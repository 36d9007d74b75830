"""The SSL methods `--mode pretrain` can run, selected by config.ssl.method."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import ml_collections
from flax import nnx

from vibe_jax.models.resnet import ResNet
from vibe_jax.registry import Registry
from vibe_jax.ssl import all4one, simclr

__all__ = ["METHODS", "Method"]


class Method(NamedTuple):
  """What pretrain.pretrain needs of a method."""

  title: str  # for messages
  # (backbone, config.ssl, seed) -> a model whose `.backbone` is the backbone to keep.
  build: Callable[[ResNet, ml_collections.ConfigDict, int], nnx.Module]
  fit: Callable[..., tuple[nnx.Module, list[dict]]]  # simclr.fit's signature
  validate: Callable[[ml_collections.ConfigDict], None]  # the method's own ssl fields
  # AugmentConfig fields the method sets for (first, second) views: colour jitter etc.
  augment: tuple[dict, dict]


METHODS: Registry[Method] = Registry("ssl method")


def _build_simclr(backbone: ResNet, ssl: ml_collections.ConfigDict, seed: int) -> nnx.Module:
  return simclr.SimCLRModel(
      backbone, ssl.projector_hidden_dim, ssl.projector_output_dim, rngs=nnx.Rngs(seed)
  )


METHODS.register("simclr")(
    Method("SimCLR", _build_simclr, simclr.fit, validate=lambda ssl: None, augment=({}, {}))
)
METHODS.register("all4one")(
    Method("All4One", all4one.build_model, all4one.fit, all4one.validate, all4one.AUGMENT)
)
