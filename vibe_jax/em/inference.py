"""Whole-set passes of a VIBE model in eval mode (BatchNorm running statistics): defended
predictions, the features the head sees, and ln P for the E-step."""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vibe_jax import parallel
from vibe_jax.batched import batched_apply
from vibe_jax.models.vibe import VibeModel

__all__ = ["head_features", "ln_joint", "predict"]


def _model_inputs(inputs, preprocess):
  return inputs if preprocess is None else preprocess(inputs)


@functools.partial(jax.jit, static_argnames=("graphdef", "preprocess"))
def _ln_joint_batch(
    graphdef, params, rest, inputs, given_labels, uniform_likelihood, preprocess=None
):
  model = nnx.merge(graphdef, params, rest)
  features = model.features(_model_inputs(inputs, preprocess), train=False)
  return model.head.ln_joint(features, given_labels, uniform_likelihood)


@functools.partial(jax.jit, static_argnames=("graphdef", "preprocess"))
def _features_batch(graphdef, params, rest, inputs, preprocess=None):
  model = nnx.merge(graphdef, params, rest)
  return model.features(_model_inputs(inputs, preprocess), train=False)


@functools.partial(jax.jit, static_argnames=("graphdef", "preprocess"))
def _predict_batch(graphdef, params, rest, inputs, preprocess=None):
  model = nnx.merge(graphdef, params, rest)
  features = model.features(_model_inputs(inputs, preprocess), train=False)
  return jnp.argmax(model.head.ln_p_label_given_x(features), -1)


def predict(
    model: VibeModel, inputs: jax.Array, batch_size: int = 1024, preprocess: Callable | None = None
) -> np.ndarray:
  """Defended predictions argmax_l ln p(l | x); `preprocess` maps raw inputs to what the
  model takes (the data set's eval transform)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  fn = lambda x: _predict_batch(graphdef, params, rest, x, preprocess)
  return parallel.to_host(batched_apply(fn, batch_size, inputs))


def head_features(
    model: VibeModel, inputs: jax.Array, batch_size: int = 1024, preprocess: Callable | None = None
) -> jax.Array:
  """(N, D) features the head sees (the inputs themselves when the features are frozen)."""
  if model.backbone is None:
    return inputs
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  fn = lambda x: _features_batch(graphdef, params, rest, x, preprocess)
  return batched_apply(fn, batch_size, inputs)


def ln_joint(
    model: VibeModel,
    inputs: jax.Array,
    given_labels: jax.Array,
    uniform_likelihood: bool,
    batch_size: int = 1024,
    preprocess: Callable | None = None,
) -> jax.Array:
  """(N, C) ln P over a whole (un-augmented) data set."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  fn = lambda x, y: _ln_joint_batch(graphdef, params, rest, x, y, uniform_likelihood, preprocess)
  return batched_apply(fn, batch_size, inputs, given_labels)
