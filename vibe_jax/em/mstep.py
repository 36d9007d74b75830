"""M-step: gradient descent on -ln P[i, l_i] over mini-batches (optax SGD), jitted.

The same step, with the cross-entropy on the given labels as its objective, trains the
undefended baseline, so the two differ only in what they are told to fit.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

OBJECTIVES = ("vibe", "baseline")


def param_group(path: tuple, train_mu_y: bool = True) -> str:
  """Which learning-rate group a parameter belongs to: 'prior', 'frozen' or 'default'."""
  names = [getattr(key, "key", getattr(key, "name", None)) for key in path]
  if "prior_logits" in names:
    return "prior"
  if "mu_y" in names and not train_mu_y:
    return "frozen"
  return "default"


def make_optimizer(
    train: ml_collections.ConfigDict, params: nnx.State, train_mu_y: bool = True
) -> optax.GradientTransformation:
  """SGD with momentum and (PyTorch-style, coupled) weight decay; the prior has its own lr."""

  def sgd(learning_rate: float) -> optax.GradientTransformation:
    return optax.chain(
        optax.add_decayed_weights(train.weight_decay),
        optax.sgd(learning_rate, momentum=train.momentum or None),
    )

  labels = jax.tree_util.tree_map_with_path(lambda path, _: param_group(path, train_mu_y), params)
  return optax.multi_transform(
      {"default": sgd(train.lr), "prior": sgd(train.prior_lr), "frozen": optax.set_to_zero()},
      labels,
  )


def learning_rates(train: ml_collections.ConfigDict, train_mu_y: bool = True) -> dict[str, float]:
  """The learning rate of each parameter group, as `make_optimizer` applies them (constant:
  there is no schedule), for the training logs."""
  rates = {"lr": float(train.lr), "prior_lr": float(train.prior_lr)}
  if not train_mu_y:
    rates["mu_y_lr"] = 0.0
  return rates


def epoch_permutation(key: jax.Array, epoch: jax.Array, num_samples: int) -> jax.Array:
  """The order in which epoch `epoch` visits the rows."""
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_samples)


def batch_indices(key: jax.Array, step: jax.Array, num_samples: int, batch_size: int):
  """Indices of mini-batch `step`: shuffled epochs without replacement, last partial batch
  dropped. A pure function of (key, step), so a resumed run draws the same batches."""
  epoch, position = jnp.divmod(step, num_samples // batch_size)
  permutation = epoch_permutation(key, epoch, num_samples)
  return jax.lax.dynamic_slice(permutation, (position * batch_size,), (batch_size,))


def objective_loss(
    model: nnx.Module,
    inputs: jax.Array,
    given_labels: jax.Array,
    pseudo_labels: jax.Array,
    objective: str,
) -> jax.Array:
  """Mean -ln P[i, l_i] (VIBE) or mean -ln p(l = y_i | x_i) (undefended baseline)."""
  features = model.features(inputs, train=True)
  if objective == "vibe":
    scores, targets = model.head.ln_joint(features, given_labels), pseudo_labels
  else:
    scores, targets = model.head.ln_p_label_given_x(features), given_labels
  return -jnp.mean(jnp.take_along_axis(scores, targets[:, None], axis=1))


_STATIC = (
    "graphdef",
    "optimizer",
    "objective",
    "batch_size",
    "num_samples",
    "augment",
    "batch_sharding",
)


def _one_step(
    params,
    rest,
    opt_state,
    step,
    indices=None,
    *,
    graphdef,
    inputs,
    given_labels,
    pseudo_labels,
    key,
    optimizer,
    objective,
    batch_size,
    num_samples,
    augment,
    batch_sharding,
):
  """One M-step on mini-batch `step` (rows `indices`, by default `batch_indices`); batches
  and augmentations are pure in (key, step)."""
  if indices is None:
    indices = batch_indices(key, step, num_samples, batch_size)
  batch = inputs[indices]
  if batch_sharding is not None:
    batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
  if augment is not None:
    augment_key = jax.random.split(key)[0]  # a stream apart from the batch draws
    batch = augment(jax.random.fold_in(augment_key, step), batch)

  def loss_fn(params, rest):
    # copy=True: fresh Variables in this trace, so BatchNorm may update its statistics.
    model = nnx.merge(graphdef, params, rest, copy=True)
    loss = objective_loss(model, batch, given_labels[indices], pseudo_labels[indices], objective)
    return loss, nnx.state(model, nnx.Not(nnx.Param))

  (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), rest, opt_state, loss


@functools.partial(
    jax.jit, static_argnames=_STATIC, donate_argnames=("params", "rest", "opt_state")
)
def _steps_on_device(params, rest, opt_state, first_step, num_steps, **kwargs):
  # The epoch's permutation is carried and redrawn only when the epoch changes: the same
  # batches as `batch_indices`, without sorting all N rows at every step.
  key, num_samples, batch_size = kwargs["key"], kwargs["num_samples"], kwargs["batch_size"]
  steps_per_epoch = num_samples // batch_size

  def body(i, carry):
    params, rest, opt_state, loss_sum, epoch, permutation = carry
    step = first_step + i
    step_epoch, position = jnp.divmod(step, steps_per_epoch)
    permutation = jax.lax.cond(
        step_epoch == epoch,
        lambda: permutation,
        lambda: epoch_permutation(key, step_epoch, num_samples),
    )
    indices = jax.lax.dynamic_slice(permutation, (position * batch_size,), (batch_size,))
    params, rest, opt_state, loss = _one_step(params, rest, opt_state, step, indices, **kwargs)
    return params, rest, opt_state, loss_sum + loss, step_epoch, permutation

  epoch = first_step // steps_per_epoch
  init = (
      params,
      rest,
      opt_state,
      jnp.zeros((), jnp.float32),
      epoch,
      epoch_permutation(key, epoch, num_samples),
  )
  params, rest, opt_state, loss_sum, _, _ = jax.lax.fori_loop(0, num_steps, body, init)
  return params, rest, opt_state, loss_sum / jnp.maximum(num_steps, 1)


_step_jit = jax.jit(
    _one_step, static_argnames=_STATIC, donate_argnames=("params", "rest", "opt_state")
)


def train_steps(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    rest: nnx.State,
    opt_state: optax.OptState,
    *,
    inputs: jax.Array,
    given_labels: jax.Array,
    pseudo_labels: jax.Array,
    key: jax.Array,
    first_step: int,
    num_steps: int,
    optimizer: optax.GradientTransformation,
    objective: str,
    batch_size: int,
    num_samples: int | None = None,
    augment: Callable | None = None,
    batch_sharding: jax.sharding.Sharding | None = None,
    device_loop: bool = True,
):
  """Runs `num_steps` M-steps from `first_step`; returns the new state and the mean loss.

  Batches are drawn from the first `num_samples` rows (the rest is padding that makes N
  divide over the devices) and laid out on `batch_sharding`. With `device_loop` the steps
  run in one compiled fori_loop (no dispatch per step; the trip count is traced, so chunk
  lengths do not recompile); without it, one compiled call per step, which XLA:CPU runs
  about 5x faster for convolutional backbones than the same step inside a while loop.
  """
  kwargs = dict(
      graphdef=graphdef,
      inputs=inputs,
      given_labels=given_labels,
      pseudo_labels=pseudo_labels,
      key=key,
      optimizer=optimizer,
      objective=objective,
      batch_size=batch_size,
      num_samples=inputs.shape[0] if num_samples is None else num_samples,
      augment=augment,
      batch_sharding=batch_sharding,
  )
  if device_loop:
    return _steps_on_device(
        params, rest, opt_state, jnp.asarray(first_step), jnp.asarray(num_steps), **kwargs
    )
  losses = []
  for step in range(first_step, first_step + num_steps):
    params, rest, opt_state, loss = _step_jit(params, rest, opt_state, jnp.asarray(step), **kwargs)
    losses.append(loss)
  return params, rest, opt_state, jnp.mean(jnp.stack(losses))
