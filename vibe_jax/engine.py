"""The one training engine: EM M-steps and SSL pretraining both run their steps through it.

A training step is a pure function `step_fn(inputs, step, state) -> (state, metrics)`:
`inputs` are the traced, non-state arrays (a pytree), `step` the global iteration, `state`
the pytree it updates, `metrics` a dict of scalars with at least "loss". `step_fn` is a
static jit argument, hashed by value: a frozen dataclass holding the static settings (graph
definitions, optimiser, batch size), never `**kwargs` into jit. Batches and augmentations
are pure functions of (key, step) (`batch_indices`), so how the steps are cut into chunks
does not change the run, and a resumed run draws the batches an uninterrupted one would.

CPU policy (`use_host_loop`): a chunk runs as one compiled `fori_loop` (no dispatch per
step; the trip count is traced, so chunks of any length share one compilation), except on
XLA:CPU for models with convolutions, which run one compiled call per step from the host:
XLA:CPU compiles weight-gradient convolutions inside a while loop to much slower kernels.
Measured once (`python -m benchmarks.cpu_while_loop`, 2026-12-01, jax 0.10.2, 2-core CPU):
the digits SS M-step (ResNet-18 width 16, batch 128 of 32x32) takes 0.15 s per step from
the host loop and 2.16 s inside one fori_loop, 14.7x slower. Frozen-feature heads have no
convolutions and gain from the compiled loop (no dispatch per step).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

__all__ = [
    "StepFn",
    "batch_indices",
    "chunks",
    "check_finite",
    "compiled_step",
    "compiled_steps",
    "epoch_permutation",
    "progress_bar",
    "run_steps",
    "use_host_loop",
]

StepFn = Callable[[Any, jax.Array, Any], tuple[Any, dict[str, jax.Array]]]


def epoch_permutation(key: jax.Array, epoch: jax.Array, num_samples: int) -> jax.Array:
  """The order in which epoch `epoch` visits the rows."""
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_samples)


def batch_indices(key: jax.Array, step: jax.Array, num_samples: int, batch_size: int) -> jax.Array:
  """Indices of mini-batch `step`: shuffled epochs without replacement, last partial batch
  dropped. A pure function of (key, step), so a resumed run draws the same batches."""
  epoch, position = jnp.divmod(step, num_samples // batch_size)
  permutation = epoch_permutation(key, epoch, num_samples)
  return jax.lax.dynamic_slice(permutation, (position * batch_size,), (batch_size,))


def use_host_loop(convolutional: bool) -> bool:
  """The CPU policy of the module docstring: one call per step on XLA:CPU with convolutions."""
  return convolutional and jax.default_backend() == "cpu"


def _mean_metrics_shape(step_fn: StepFn, inputs, step, state) -> dict[str, jax.Array]:
  return jax.tree.map(
      lambda leaf: jnp.zeros(leaf.shape, jnp.float32),
      jax.eval_shape(step_fn, inputs, step, state)[1],
  )


@functools.partial(jax.jit, static_argnames=("step_fn",), donate_argnames=("state",))
def compiled_steps(step_fn: StepFn, state, inputs, first_step, num_steps):
  """`num_steps` steps from `first_step` in one compiled loop; the chunk's mean metrics."""

  def body(i, carry):
    state, sums = carry
    state, metrics = step_fn(inputs, first_step + i, state)
    return state, jax.tree.map(jnp.add, sums, metrics)

  zeros = _mean_metrics_shape(step_fn, inputs, first_step, state)
  state, sums = jax.lax.fori_loop(0, num_steps, body, (state, zeros))
  return state, jax.tree.map(lambda total: total / jnp.maximum(num_steps, 1), sums)


@functools.partial(jax.jit, static_argnames=("step_fn",), donate_argnames=("state",))
def compiled_step(step_fn: StepFn, state, inputs, step):
  return step_fn(inputs, step, state)


def run_steps(
    step_fn: StepFn,
    state,
    inputs,
    first_step: int,
    num_steps: int,
    *,
    host_loop: bool,
    progress: tqdm.tqdm | None = None,
) -> tuple[Any, dict[str, float]]:
  """Runs steps [first_step, first_step + num_steps) (host loop or one compiled loop, see the
  module docstring); returns the new state and each metric's mean over them (host floats),
  advancing `progress` as the steps complete."""
  if host_loop:
    sums = None
    for step in range(first_step, first_step + num_steps):
      state, metrics = compiled_step(step_fn, state, inputs, np.int32(step))
      sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
      if progress is not None:
        progress.update(1)
    metrics = jax.tree.map(lambda total: total / num_steps, sums)
  else:
    state, metrics = compiled_steps(
        step_fn, state, inputs, np.int32(first_step), np.int32(num_steps)
    )
    if progress is not None:
      progress.update(num_steps)
  return state, {name: float(value) for name, value in metrics.items()}


def check_finite(loss: float, what: str, begin: int, end: int, fix: str) -> None:
  """The one non-finite-loss guard: stops the run, naming the steps and the fix."""
  if not math.isfinite(loss):
    raise FloatingPointError(
        f"{what} loss became {loss} between iterations {begin} and {end}; {fix}"
    )


def chunks(start: int, end: int, *periods: float) -> Iterator[tuple[int, int]]:
  """Consecutive (begin, end) chunks of [start, end), cut at every multiple of each period
  (log, E-step, evaluation, checkpoint cadences; inf or 0 for none)."""
  points = {start, end}
  for period in periods:
    if period and math.isfinite(period):
      points.update(range(-(-start // int(period)) * int(period), end, int(period)))
  points = sorted(points)
  return zip(points[:-1], points[1:])


def progress_bar(total: int, initial: int, desc: str) -> tqdm.tqdm:
  """The one progress bar: on process 0 only (one bar per job, not per host)."""
  return tqdm.tqdm(
      total=total,
      initial=initial,
      desc=desc,
      unit="it",
      dynamic_ncols=True,
      disable=jax.process_index() != 0,
  )
