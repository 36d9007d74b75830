"""The EM loop: an E-step every T iterations, compiled chunks of M-steps in between.

The same loop trains the undefended baseline (objective 'baseline', no E-step), so the
baseline and VIBE share features, head, optimiser and batches.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from flax import nnx

from vibe_jax import metrics
from vibe_jax.em import estep, mstep
from vibe_jax.models.vibe import VibeModel


@dataclasses.dataclass(frozen=True)
class TrainData:
  """Training inputs (features or images) with given labels; truth kept for diagnostics."""
  inputs: jax.Array
  given_labels: jax.Array
  true_labels: np.ndarray
  poison_mask: np.ndarray


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _ln_joint_batch(graphdef, params, rest, inputs, given_labels, uniform_likelihood):
  model = nnx.merge(graphdef, params, rest)
  return model.head.ln_joint(model.features(inputs, train=False), given_labels,
                             uniform_likelihood)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _predict_batch(graphdef, params, rest, inputs):
  model = nnx.merge(graphdef, params, rest)
  return jnp.argmax(model.head.ln_p_label_given_x(model.features(inputs, train=False)), -1)


def _batched(fn: Callable, batch_size: int, *arrays) -> jax.Array:
  """Applies fn over fixed-size batches (the last one padded), concatenating the results."""
  total = arrays[0].shape[0]
  outputs = []
  for start in range(0, total, batch_size):
    chunk = [a[start:start + batch_size] for a in arrays]
    pad = batch_size - chunk[0].shape[0]
    if pad:
      chunk = [jnp.concatenate([c, jnp.repeat(c[-1:], pad, axis=0)]) for c in chunk]
    out = fn(*chunk)
    outputs.append(out[:batch_size - pad] if pad else out)
  return jnp.concatenate(outputs)


def predict(model: VibeModel, inputs: jax.Array, batch_size: int = 1024) -> np.ndarray:
  """Defended predictions argmax_l ln p(l | x), BatchNorm in eval mode."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  fn = lambda x: _predict_batch(graphdef, params, rest, x)
  return np.asarray(_batched(fn, min(batch_size, inputs.shape[0]), inputs))


def ln_joint(model: VibeModel, inputs: jax.Array, given_labels: jax.Array,
             uniform_likelihood: bool, batch_size: int = 1024) -> jax.Array:
  """(N, C) ln P over a whole (un-augmented) data set, in eval mode."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  fn = lambda x, y: _ln_joint_batch(graphdef, params, rest, x, y, uniform_likelihood)
  return _batched(fn, min(batch_size, inputs.shape[0]), inputs, given_labels)


def run_estep(model: VibeModel, data: TrainData, config: ml_collections.ConfigDict,
              first: bool) -> tuple[jax.Array, dict]:
  """Pseudo-labels for the whole training set and their diagnostics."""
  uniform = first and config.vibe.uniform_first_estep
  ln_p = ln_joint(model, data.inputs, data.given_labels, uniform, config.features.batch_size)
  prior = jnp.exp(model.head.ln_prior())
  labels, solver = estep.sinkhorn_pseudo_labels(
      ln_p, prior, config.estep.lam, threshold=config.estep.threshold,
      max_iterations=config.estep.max_iterations,
      fixed_iterations=config.estep.fixed_iterations,
      adaptive_momentum=config.estep.adaptive_momentum)
  record = metrics.pseudo_label_diagnostics(np.asarray(labels), np.asarray(data.given_labels),
                                            data.true_labels, data.poison_mask)
  record.update(sinkhorn_iterations=int(solver.iterations),
                sinkhorn_error=float(solver.marginal_error))
  return labels, record


def fit(model: VibeModel, data: TrainData, config: ml_collections.ConfigDict, *,
        objective: str, steps: int, optimizer_config: ml_collections.ConfigDict,
        train_mu_y: bool = True, augment: Callable | None = None,
        evaluate: Callable[[VibeModel], dict] | None = None,
        log: Callable[[dict], None] = lambda record: None, desc: str = "") -> VibeModel:
  """Trains `model` in place for `steps` iterations and returns it.

  objective 'vibe': EM with an E-step every config.estep.period iterations (the first at
  iteration 0); 'baseline': cross-entropy on the given labels. `log` receives one record
  per chunk (loss), per E-step (diagnostics) and per evaluation.
  """
  if objective not in mstep.OBJECTIVES:
    raise ValueError(f"objective {objective!r} is not one of {mstep.OBJECTIVES}.")
  num_samples = data.inputs.shape[0]
  batch_size = config.train.batch_size
  if batch_size > num_samples:
    raise ValueError(f"train.batch_size={batch_size} exceeds the {num_samples} training "
                     "samples; lower train.batch_size.")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  optimizer = mstep.make_optimizer(optimizer_config, params, train_mu_y)
  opt_state = optimizer.init(params)
  key = jax.random.key(config.seed)
  pseudo_labels = data.given_labels
  period = config.estep.period if objective == "vibe" else math.inf
  events = sorted({steps} | {s for s in range(0, steps, config.train.log_every)}
                  | ({s for s in range(0, steps, period)} if objective == "vibe" else set())
                  | ({s for s in range(0, steps, config.train.eval_every)} if evaluate else set()))
  with tqdm.tqdm(total=steps, desc=desc, unit="it", dynamic_ncols=True) as bar:
    for start, stop in zip(events[:-1], events[1:]):
      if objective == "vibe" and start % period == 0:
        model = nnx.merge(graphdef, params, rest)
        pseudo_labels, record = run_estep(model, data, config, first=start == 0)
        log({"step": start, "kind": "estep", **record})
        bar.write(f"E-step @ {start}: " + ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
      if evaluate is not None and start % config.train.eval_every == 0 and start:
        log({"step": start, "kind": "eval", **evaluate(nnx.merge(graphdef, params, rest))})
      params, rest, opt_state, loss = mstep.train_steps(
          graphdef, params, rest, opt_state, inputs=data.inputs, given_labels=data.given_labels,
          pseudo_labels=pseudo_labels, key=key, first_step=jnp.asarray(start),
          num_steps=jnp.asarray(stop - start), optimizer=optimizer, objective=objective,
          batch_size=batch_size, augment=augment)
      loss = float(loss)
      if not math.isfinite(loss):
        raise FloatingPointError(
            f"{desc} loss became {loss} between iterations {start} and {stop}; lower the "
            "learning rate (train.lr / train.prior_lr) or check the features for NaN/inf.")
      log({"step": stop, "kind": "train", "loss": loss})
      bar.set_postfix(loss=f"{loss:.4f}")
      bar.update(stop - start)
  return nnx.merge(graphdef, params, rest)
