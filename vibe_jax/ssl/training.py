"""What every SSL method here shares: head BatchNorm, optimisers and their schedule, batches
and on-device views, and the loop (`run_loop`) that drives a method's step through the
training engine (vibe_jax.engine, the one the EM M-steps use): each step's batch
(engine.batch_indices) and views (keys folded with the step) are pure functions of
(key, step), so chunk boundaries do not change the run; the engine's CPU policy picks a host
loop or a compiled loop.

Data parallel over a mesh (run_loop's `mesh`): the state and the training images are
replicated, each step's batch is constrained to the mesh's 'data' axis, and XLA partitions
the rest (BatchNorm statistics and the contrastive loss stay over the whole batch), so a
run over several devices takes the same steps as on one. The mesh may span the devices of
several processes (a multi-host job): every process then passes the same images and state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, PartitionSpec as P

from vibe_jax import engine, parallel
from vibe_jax.data import transforms
from vibe_jax.models.resnet import BN_EPSILON, BN_MOMENTUM
from vibe_jax.registry import Registry
from vibe_jax.ssl.augment import AugmentConfig, augment_batch

__all__ = [
    "OPTIMIZERS",
    "StepFn",
    "StepInputs",
    "batch_norm",
    "batch_views",
    "check_batch_size",
    "learning_rate_schedule",
    "make_optimizer",
    "make_views",
    "run_loop",
]


def batch_norm(features: int, *, rngs: nnx.Rngs) -> nnx.BatchNorm:
  """BatchNorm1d of the SSL heads, with the backbone's (PyTorch's) momentum and epsilon."""
  return nnx.BatchNorm(
      features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, use_fast_variance=False, rngs=rngs
  )


def learning_rate_schedule(ssl: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup from 0 over ssl.warmup_steps, then cosine decay to 0 at ssl.steps.

  A run shorter than the warmup (a smoke test with --config.ssl.steps=5) simply ends
  inside it, rather than failing.
  """
  return optax.warmup_cosine_decay_schedule(
      0.0, ssl.lr, ssl.warmup_steps, max(ssl.steps, ssl.warmup_steps + 1)
  )


def _is_kernel(params: nnx.State) -> nnx.State:
  """True for weight matrices / conv kernels; biases and BN scales are excluded from weight
  decay and LARS adaptation (solo-learn's exclude_bias_n_norm)."""
  return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


OPTIMIZERS: Registry[
    Callable[[ml_collections.ConfigDict, optax.Schedule], optax.GradientTransformation]
] = Registry("ssl optimizer")


@OPTIMIZERS.register("lars")
def _lars(ssl: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """The reference's optimiser (LARS, momentum 0.9, trust coefficient eta)."""
  return optax.lars(
      schedule,
      weight_decay=ssl.weight_decay,
      weight_decay_mask=_is_kernel,
      trust_coefficient=ssl.lars_trust_coefficient,
      trust_ratio_mask=_is_kernel,
      momentum=ssl.momentum,
  )


@OPTIMIZERS.register("sgd")
def _sgd(ssl: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """SGD with momentum and coupled (PyTorch-style) weight decay on kernels only."""
  return optax.chain(
      optax.add_decayed_weights(ssl.weight_decay, mask=_is_kernel),
      optax.sgd(schedule, momentum=ssl.momentum or None),
  )


@OPTIMIZERS.register("adam")
def _adam(ssl: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """AdamW (decoupled weight decay on kernels only); robust for short CPU runs."""
  return optax.adamw(schedule, weight_decay=ssl.weight_decay, mask=_is_kernel)


def make_optimizer(ssl: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The optimiser named by ssl.optimizer, on the warmup-cosine schedule."""
  build = OPTIMIZERS.get(ssl.optimizer, field="ssl.optimizer")
  return build(ssl, learning_rate_schedule(ssl))


class StepInputs(NamedTuple):
  """The traced, non-state inputs of a step (a pytree, so one jit argument)."""

  images: jax.Array  # (N, H, W, 3) uint8: the whole training set, on device
  key: jax.Array  # batches and views are pure functions of (key, step)
  temperature: jax.Array
  mean: jax.Array  # (3,) the data set's statistics (transforms.get_pipeline)
  std: jax.Array


def make_views(
    key: jax.Array,
    images: jax.Array,
    augment_config: AugmentConfig | tuple[AugmentConfig, AugmentConfig],
    mean: jax.Array | Sequence[float],
    std: jax.Array | Sequence[float],
) -> jax.Array:
  """Two normalised views of each image, (2B, H', W', 3): first views, then second views.

  `augment_config`: one config for both views, or one per view (asymmetric augmentation).

  Normalised by transforms.normalize with the data set's statistics, the function VIBE's
  own pipeline uses, so the backbone sees one input distribution before and after.
  """
  key1, key2 = jax.random.split(key)
  if isinstance(augment_config, AugmentConfig):
    augment_config = (augment_config, augment_config)
  views = jnp.concatenate(
      [
          augment_batch(key1, images, augment_config[0]),
          augment_batch(key2, images, augment_config[1]),
      ]
  )
  return transforms.normalize(255.0 * views, mean, std)  # views are in [0, 1]


def batch_views(
    inputs: StepInputs,
    step: jax.Array,
    batch_size: int,
    augment_config: AugmentConfig | tuple[AugmentConfig, AugmentConfig],
) -> jax.Array:
  """Batch `step` (engine.batch_indices) and its two views, (2B, H', W', 3): a pure
  function of (inputs.key, step), shared by every SSL method."""
  batch_key, view_key = jax.random.split(inputs.key)
  indices = engine.batch_indices(batch_key, step, inputs.images.shape[0], batch_size)
  batch = inputs.images[indices]
  if not jax.sharding.get_abstract_mesh().empty:  # run_loop's mesh: each device its share
    batch = jax.lax.with_sharding_constraint(batch, P(parallel.DATA_AXIS))
  return make_views(
      jax.random.fold_in(view_key, step),
      batch,
      augment_config,
      inputs.mean,
      inputs.std,
  )


# A method's step: (inputs, step, state) -> (state, metrics), metrics a dict of scalars
# with at least "loss" (engine.StepFn). Static (hashed by identity): a functools.partial
# over the method's graphdefs, optimiser and batch size.
StepFn = engine.StepFn


def check_batch_size(
    ssl: ml_collections.ConfigDict, num_samples: int, mesh: Mesh | None = None
) -> None:
  if not 2 <= ssl.batch_size <= num_samples:
    raise ValueError(
        f"ssl.batch_size={ssl.batch_size} must lie in [2, {num_samples}] (the number of "
        "training images); lower ssl.batch_size."
    )
  if mesh is not None:
    parallel.check_batch_divides(ssl.batch_size, mesh, "ssl.batch_size")


def run_loop(
    step_fn: StepFn,
    state: object,
    images: np.ndarray | jax.Array,
    ssl: ml_collections.ConfigDict,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int,
    log: Callable[[dict], None],
    desc: str,
    host_loop: bool | None,
    name: str,
    mesh: Mesh | None = None,
) -> tuple[object, list[dict]]:
  """The training loop every SSL method shares: ssl.steps steps of `step_fn` from `state`.

  One record {"step", "loss", <the step's other metrics>, "lr"} per chunk of ssl.log_every
  steps (chunk means) goes to `log` and to the returned history. `host_loop` (default: the
  engine's CPU policy) runs each step as its own jitted call instead of one fori_loop per
  chunk; both give the same steps. A non-finite loss stops the run naming ssl.lr. With a
  `mesh` the steps run data parallel over its devices (module docstring).
  """
  schedule = learning_rate_schedule(ssl)
  if host_loop is None:
    host_loop = engine.use_host_loop(convolutional=True)
  inputs = StepInputs(
      images=jnp.asarray(images),
      key=jax.random.key(seed),
      temperature=jnp.asarray(ssl.temperature, jnp.float32),
      mean=jnp.asarray(mean, jnp.float32),
      std=jnp.asarray(std, jnp.float32),
  )
  if mesh is not None:
    state, inputs = parallel.replicate_tree((state, inputs), mesh)
  history = []
  with (
      jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext(),
      engine.progress_bar(ssl.steps, 0, desc) as bar,
  ):
    for start, stop in engine.chunks(0, ssl.steps, ssl.log_every):
      state, metrics = engine.run_steps(
          step_fn, state, inputs, start, stop - start, host_loop=host_loop, progress=bar
      )
      loss = metrics.pop("loss")
      engine.check_finite(
          loss,
          name,
          start,
          stop,
          f"lower the learning rate ssl.lr (now {ssl.lr}) or raise ssl.warmup_steps.",
      )
      record = {"step": stop, "loss": loss, **metrics, "lr": float(schedule(stop - 1))}
      history.append(record)
      log(record)
      bar.set_postfix(loss=f"{loss:.4f}")
  return state, history
