"""M-step: gradient descent on -ln P[i, l_i] over mini-batches (optax SGD), as a step of the
training engine (vibe_jax.engine).

The same step, with the cross-entropy on the given labels as its objective, trains the
undefended baseline, so the two differ only in what they are told to fit.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from vibe_jax import engine, parallel

OBJECTIVES = ("vibe", "baseline")


def param_group(path: tuple, train_mu_y: bool = True) -> str:
  """Which learning-rate group a parameter belongs to: 'prior', 'frozen' or 'default'."""
  names = [getattr(key, "key", getattr(key, "name", None)) for key in path]
  if "prior_logits" in names:
    return "prior"
  if "mu_y" in names and not train_mu_y:
    return "frozen"
  return "default"


SCHEDULES = ("constant", "cosine")


def _schedule(train: ml_collections.ConfigDict, learning_rate: float) -> optax.ScalarOrSchedule:
  """A section's `schedule` ('constant' where it has none; 'cosine' decays to 0 over its
  steps, what a network trained from scratch needs to reach its accuracy)."""
  if train.get("schedule", "constant") == "cosine":
    return optax.cosine_decay_schedule(learning_rate, train.steps)
  return learning_rate


def make_optimizer(
    train: ml_collections.ConfigDict, params: nnx.State, train_mu_y: bool = True
) -> optax.GradientTransformation:
  """SGD with momentum and (PyTorch-style, coupled) weight decay; the prior has its own lr."""

  def sgd(learning_rate: float) -> optax.GradientTransformation:
    return optax.chain(
        optax.add_decayed_weights(train.weight_decay),
        optax.sgd(_schedule(train, learning_rate), momentum=train.momentum or None),
    )

  labels = jax.tree_util.tree_map_with_path(lambda path, _: param_group(path, train_mu_y), params)
  return optax.multi_transform(
      {"default": sgd(train.lr), "prior": sgd(train.prior_lr), "frozen": optax.set_to_zero()},
      labels,
  )


def learning_rates(
    train: ml_collections.ConfigDict, train_mu_y: bool = True, step: int = 0
) -> dict[str, float]:
  """The learning rate of each parameter group at `step`, as `make_optimizer` applies
  them, for the training logs."""
  rates = {"lr": _at(train, train.lr, step), "prior_lr": _at(train, train.prior_lr, step)}
  if not train_mu_y:
    rates["mu_y_lr"] = 0.0
  return rates


def _at(train: ml_collections.ConfigDict, learning_rate: float, step: int) -> float:
  schedule = _schedule(train, learning_rate)
  return float(schedule(step) if callable(schedule) else schedule)


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


class MStepInputs(NamedTuple):
  """The traced, non-state inputs of an M-step (a pytree: one jit argument)."""

  inputs: jax.Array  # (N, ...) training features or images, row-sharded
  given_labels: jax.Array  # (N,)
  pseudo_labels: jax.Array  # (N,) the last E-step's labels (the given ones for the baseline)
  key: jax.Array  # batches and augmentations are pure functions of (key, step)


class MStepState(NamedTuple):
  """What an M-step updates: the model's parameters and other state, the optimiser state,
  and the current epoch's row order (redrawn only when the epoch changes, rather than
  sorting all N rows at every step; the same batches as engine.batch_indices)."""

  params: nnx.State
  rest: nnx.State
  opt_state: optax.OptState
  epoch: jax.Array
  permutation: jax.Array

  @classmethod
  def start(
      cls, params, rest, opt_state, num_samples: int, mesh: Mesh | None = None
  ) -> "MStepState":
    """A state whose first step draws its epoch's order (epoch -1 matches none); with a
    `mesh`, that order is replicated over it like the rest of the state."""
    sampler = (np.int32(-1), np.zeros((num_samples,), np.int32))
    if mesh is not None:
      sampler = parallel.replicate_tree(sampler, mesh)
    return cls(params, rest, opt_state, *sampler)


@dataclasses.dataclass(frozen=True)
class MStep:
  """One M-step as an engine step function; its fields are the static settings (hashed by
  value, so equal settings share a compilation).

  Batches are drawn from the first `num_samples` rows (the rest is padding that makes N
  divide over the devices) and laid out on `batch_sharding`; `augment(key, batch)` is the
  training transform (None for frozen features).
  """

  graphdef: nnx.GraphDef
  optimizer: optax.GradientTransformation
  objective: str
  batch_size: int
  num_samples: int
  augment: Callable | None = None
  batch_sharding: jax.sharding.Sharding | None = None

  def __call__(
      self, inputs: MStepInputs, step: jax.Array, state: MStepState
  ) -> tuple[MStepState, dict[str, jax.Array]]:
    epoch, position = jnp.divmod(step, self.num_samples // self.batch_size)
    permutation = jax.lax.cond(
        epoch == state.epoch,
        lambda: state.permutation,
        lambda: engine.epoch_permutation(inputs.key, epoch, self.num_samples).astype(jnp.int32),
    )
    indices = jax.lax.dynamic_slice(permutation, (position * self.batch_size,), (self.batch_size,))
    batch = inputs.inputs[indices]
    if self.batch_sharding is not None:
      batch = jax.lax.with_sharding_constraint(batch, self.batch_sharding)
    if self.augment is not None:
      augment_key = jax.random.split(inputs.key)[0]  # a stream apart from the batch draws
      batch = self.augment(jax.random.fold_in(augment_key, step), batch)

    def loss_fn(params, rest):
      # copy=True: fresh Variables in this trace, so BatchNorm may update its statistics.
      model = nnx.merge(self.graphdef, params, rest, copy=True)
      loss = objective_loss(
          model,
          batch,
          inputs.given_labels[indices],
          inputs.pseudo_labels[indices],
          self.objective,
      )
      return loss, nnx.state(model, nnx.Not(nnx.Param))

    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.rest)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return MStepState(params, rest, opt_state, epoch, permutation), {"loss": loss}
