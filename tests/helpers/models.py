"""Backbones with random weights for the tests, without XLA.

The library builds a ResNet with flax's initialisers, which compile one XLA program per
parameter shape: about 17 s of CPU for the first ResNet-18 a process builds. A test that
needs some weights of the right shapes, not the library's initialisation, uses these.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from vibe_jax.models import ResNet, abstract_backbone, backbone_config


def random_backbone(arch: str = "resnet18", stem: str = "cifar", width: int = 4, seed: int = 0):
  """A ResNet whose weights numpy draws as the library's initialisers do: convs He-normal
  (fan out), BatchNorm scale 1, bias 0, running mean 0, running variance 1."""
  model: ResNet = abstract_backbone(backbone_config(arch, stem, width))
  rng = np.random.default_rng(seed)
  for _, module in nnx.iter_modules(model):
    if isinstance(module, nnx.Conv):
      *window, _, features = module.kernel.get_value().shape
      std = np.sqrt(2.0 / (int(np.prod(window)) * features))
      kernel = std * rng.standard_normal(module.kernel.get_value().shape)
      module.kernel.set_value(jnp.asarray(kernel, jnp.float32))
    elif isinstance(module, nnx.BatchNorm):
      for name, fill in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0)):
        variable = getattr(module, name)
        variable.set_value(jnp.full(variable.get_value().shape, fill, jnp.float32))
  return model
