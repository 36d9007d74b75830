"""The EM loop: an E-step every T iterations, compiled chunks of M-steps in between.

The same loop trains the undefended baseline (objective 'baseline', no E-step), so the
baseline and VIBE share features, head, optimiser and batches. Training state is
checkpointed every `checkpoint.every` iterations and at the end; a restarted run resumes
from the last checkpoint and, since batches and augmentations are pure functions of
(seed, step), ends where an uninterrupted run would.
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
from jax.sharding import Mesh

from vibe_jax import metrics, parallel
from vibe_jax.checkpoint import TrainCheckpoints
from vibe_jax.data import rows as rows_lib
from vibe_jax.em import estep, mstep
from vibe_jax.models.vibe import VibeModel


@dataclasses.dataclass(frozen=True)
class TrainData:
  """Training inputs (features or images) and given labels, padded to divide over the
  devices and sharded on rows; the first `num_valid` rows are real. The true labels and
  the poison mask (host arrays, real rows only) serve the diagnostics."""

  inputs: jax.Array
  given_labels: jax.Array
  num_valid: int
  true_labels: np.ndarray
  poison_mask: np.ndarray
  preprocess: Callable | None = None  # raw inputs -> model inputs for feature passes

  @property
  def valid(self) -> jax.Array:
    return jnp.arange(self.inputs.shape[0]) < self.num_valid


def shard_training_data(
    inputs: np.ndarray | rows_lib.Rows,
    given_labels: np.ndarray,
    true_labels: np.ndarray,
    poison_mask: np.ndarray,
    mesh: Mesh,
    preprocess: Callable | None = None,
) -> TrainData:
  """Pads the rows to a multiple of the device count (repeating the last) and shards them
  over the mesh; `inputs` given as Rows are read only where this process's devices need them."""
  num_valid = len(given_labels)
  padded = parallel.padded_length(num_valid, mesh)
  index = np.minimum(np.arange(padded), num_valid - 1)
  pad = lambda a: rows_lib.take(a, index)
  return TrainData(
      parallel.shard_rows(pad(inputs), mesh),
      parallel.shard_rows(pad(given_labels.astype(np.int32)), mesh),
      num_valid,
      np.asarray(true_labels),
      np.asarray(poison_mask, bool),
      preprocess,
  )


@functools.partial(jax.jit, static_argnames=("graphdef", "preprocess"))
def _ln_joint_batch(
    graphdef, params, rest, inputs, given_labels, uniform_likelihood, preprocess=None
):
  model = nnx.merge(graphdef, params, rest)
  inputs = inputs if preprocess is None else preprocess(inputs)
  return model.head.ln_joint(model.features(inputs, train=False), given_labels, uniform_likelihood)


@functools.partial(jax.jit, static_argnames=("graphdef", "preprocess"))
def _features_batch(graphdef, params, rest, inputs, preprocess=None):
  inputs = inputs if preprocess is None else preprocess(inputs)
  return nnx.merge(graphdef, params, rest).features(inputs, train=False)


@functools.partial(jax.jit, static_argnames=("graphdef", "preprocess"))
def _predict_batch(graphdef, params, rest, inputs, preprocess=None):
  model = nnx.merge(graphdef, params, rest)
  inputs = inputs if preprocess is None else preprocess(inputs)
  return jnp.argmax(model.head.ln_p_label_given_x(model.features(inputs, train=False)), -1)


def _batched(fn: Callable, batch_size: int, *arrays) -> jax.Array:
  """Applies fn over fixed-size batches (the last one padded), concatenating the results."""
  total = arrays[0].shape[0]
  outputs = []
  for start in range(0, total, batch_size):
    chunk = [a[start : start + batch_size] for a in arrays]
    pad = batch_size - chunk[0].shape[0]
    if pad:
      chunk = [jnp.concatenate([c, jnp.repeat(c[-1:], pad, axis=0)]) for c in chunk]
    out = fn(*chunk)
    outputs.append(out[: batch_size - pad] if pad else out)
  return jnp.concatenate(outputs)


def predict(
    model: VibeModel, inputs: jax.Array, batch_size: int = 1024, preprocess: Callable | None = None
) -> np.ndarray:
  """Defended predictions argmax_l ln p(l | x), BatchNorm in eval mode; `preprocess` maps
  raw inputs to what the model takes (the data set's eval transform)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  fn = lambda x: _predict_batch(graphdef, params, rest, x, preprocess)
  return parallel.to_host(_batched(fn, min(batch_size, inputs.shape[0]), inputs))


def features(
    model: VibeModel, inputs: jax.Array, batch_size: int = 1024, preprocess: Callable | None = None
) -> jax.Array:
  """(N, D) features the head sees, BatchNorm in eval mode (the inputs when frozen);
  `preprocess` maps raw inputs to model inputs as in `predict`."""
  if model.backbone is None:
    return inputs
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  fn = lambda x: _features_batch(graphdef, params, rest, x, preprocess)
  return _batched(fn, min(batch_size, inputs.shape[0]), inputs)


def ln_joint(
    model: VibeModel,
    inputs: jax.Array,
    given_labels: jax.Array,
    uniform_likelihood: bool,
    batch_size: int = 1024,
    preprocess: Callable | None = None,
) -> jax.Array:
  """(N, C) ln P over a whole (un-augmented) data set, in eval mode."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  fn = lambda x, y: _ln_joint_batch(graphdef, params, rest, x, y, uniform_likelihood, preprocess)
  return _batched(fn, min(batch_size, inputs.shape[0]), inputs, given_labels)


def run_estep(
    model: VibeModel, data: TrainData, config: ml_collections.ConfigDict, first: bool
) -> tuple[jax.Array, dict]:
  """Pseudo-labels for the whole training set (padding rows included) and diagnostics."""
  uniform = first and config.vibe.uniform_first_estep
  ln_p = ln_joint(
      model, data.inputs, data.given_labels, uniform, config.features.batch_size, data.preprocess
  )
  prior = jnp.exp(model.head.ln_prior())
  labels, solver = estep.sinkhorn_pseudo_labels(
      ln_p,
      prior,
      config.estep.lam,
      valid=data.valid,
      threshold=config.estep.threshold,
      max_iterations=config.estep.max_iterations,
      fixed_iterations=config.estep.fixed_iterations,
      adaptive_momentum=config.estep.adaptive_momentum,
  )
  host_labels = parallel.to_host(labels)[: data.num_valid]
  given = parallel.to_host(data.given_labels)[: data.num_valid]
  record = metrics.pseudo_label_diagnostics(host_labels, given, data.true_labels, data.poison_mask)
  record.update(
      sinkhorn_iterations=int(solver.iterations), sinkhorn_error=float(solver.marginal_error)
  )
  return labels, record


def _schedule(start: int, steps: int, *periods: float) -> list[int]:
  """Chunk boundaries: every multiple of each period in [start, steps), plus both ends."""
  points = {start, steps}
  for period in periods:
    if period and math.isfinite(period):
      points.update(range(-(-start // period) * period, steps, int(period)))
  return sorted(points)


def fit(
    model: VibeModel,
    data: TrainData,
    config: ml_collections.ConfigDict,
    *,
    objective: str,
    steps: int,
    optimizer_config: ml_collections.ConfigDict,
    mesh: Mesh,
    checkpoint_dir: str | None = None,
    train_mu_y: bool = True,
    augment: Callable | None = None,
    evaluate: Callable[[VibeModel], dict] | None = None,
    log: Callable[[dict], None] = lambda record: None,
    on_estep: Callable[[int, VibeModel, jax.Array], None] | None = None,
    desc: str = "",
) -> VibeModel:
  """Trains `model` for `steps` iterations (resuming from `checkpoint_dir`) and returns it.

  objective 'vibe': EM with an E-step every config.estep.period iterations (the first at
  iteration 0); 'baseline': cross-entropy on the given labels. `log` receives one record
  per chunk (loss, learning rates), per E-step (diagnostics) and per evaluation.
  `on_estep(step, model, pseudo_labels)` runs after each E-step on every process (the
  pseudo-labels are the sharded (N_padded,) array), e.g. to snapshot it for the report.
  """
  if objective not in mstep.OBJECTIVES:
    raise ValueError(f"objective {objective!r} is not one of {mstep.OBJECTIVES}.")
  batch_size = config.train.batch_size
  if batch_size > data.num_valid:
    raise ValueError(
        f"train.batch_size={batch_size} exceeds the {data.num_valid} training "
        "samples; lower train.batch_size."
    )
  parallel.check_batch_divides(batch_size, mesh, "train.batch_size")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  optimizer = mstep.make_optimizer(optimizer_config, params, train_mu_y)
  params, rest = parallel.replicate_tree((params, rest), mesh)
  opt_state = parallel.replicate_tree(optimizer.init(params), mesh)
  key = jax.random.wrap_key_data(
      parallel.replicate(np.asarray(jax.random.key_data(jax.random.key(config.seed))), mesh)
  )
  pseudo_labels = data.given_labels
  start = 0
  checkpoints = None
  if checkpoint_dir is not None:
    checkpoints = TrainCheckpoints(checkpoint_dir, save_every=config.checkpoint.every)
    latest = checkpoints.latest_step()
    if latest is not None:
      state = checkpoints.restore(
          latest, _train_state(params, rest, opt_state, pseudo_labels, latest, key)
      )
      params, rest, opt_state = state["params"], state["rest"], state["opt_state"]
      pseudo_labels, start = state["pseudo_labels"], int(state["step"])
      key = jax.random.wrap_key_data(state["key"])
      print(f"{desc}: resumed from the checkpoint at iteration {start}")
  is_vibe = objective == "vibe"
  period = config.estep.period if is_vibe else math.inf
  events = _schedule(
      start,
      steps,
      config.train.log_every,
      period,
      config.train.eval_every if evaluate else math.inf,
      config.checkpoint.every if checkpoints else math.inf,
  )
  batch_sharding = parallel.data_sharded(mesh)
  learning_rates = mstep.learning_rates(optimizer_config, train_mu_y)
  with tqdm.tqdm(
      total=steps,
      initial=start,
      desc=desc,
      unit="it",
      dynamic_ncols=True,
      disable=jax.process_index() != 0,  # one bar per job, not per host
  ) as bar:
    for begin, stop in zip(events[:-1], events[1:]):
      if is_vibe and begin % period == 0:
        current = nnx.merge(graphdef, params, rest)
        pseudo_labels, record = run_estep(current, data, config, first=begin == 0)
        log({"step": begin, "kind": "estep", **record})
        if on_estep is not None:
          on_estep(begin, current, pseudo_labels)
        bar.write(
            f"E-step @ {begin}: "
            + ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()
            )
        )
      if evaluate is not None and begin % config.train.eval_every == 0 and begin:
        log({"step": begin, "kind": "eval", **evaluate(nnx.merge(graphdef, params, rest))})
      params, rest, opt_state, loss = mstep.train_steps(
          graphdef,
          params,
          rest,
          opt_state,
          inputs=data.inputs,
          given_labels=data.given_labels,
          pseudo_labels=pseudo_labels,
          key=key,
          first_step=begin,
          num_steps=stop - begin,
          optimizer=optimizer,
          objective=objective,
          batch_size=batch_size,
          num_samples=data.num_valid,
          augment=augment,
          batch_sharding=batch_sharding,
          device_loop=model.backbone is None,
      )
      loss = float(loss)
      if not math.isfinite(loss):
        raise FloatingPointError(
            f"{desc} loss became {loss} between iterations {begin} and {stop}; lower the "
            "learning rate (train.lr / train.prior_lr) or check the features for NaN/inf."
        )
      log({"step": stop, "kind": "train", "loss": loss, **learning_rates})
      bar.set_postfix(loss=f"{loss:.4f}")
      bar.update(stop - begin)
      if checkpoints is not None:
        checkpoints.save(
            stop,
            _train_state(params, rest, opt_state, pseudo_labels, stop, key),
            force=stop == steps,
        )
  if checkpoints is not None:
    checkpoints.close()
  return nnx.merge(graphdef, params, rest)


def _train_state(params, rest, opt_state, pseudo_labels, step, key) -> dict:
  return {
      "params": params,
      "rest": rest,
      "opt_state": opt_state,
      "pseudo_labels": pseudo_labels,
      "step": step,
      "key": jax.random.key_data(key),
  }


def restore_model(
    model: VibeModel,
    data: TrainData,
    checkpoint_dir: str,
    optimizer_config: ml_collections.ConfigDict,
    train_mu_y: bool = True,
) -> tuple[VibeModel, int]:
  """`model` with the params and BatchNorm statistics of the latest checkpoint, and its step."""
  checkpoints = TrainCheckpoints(checkpoint_dir, save_every=1)
  latest = checkpoints.latest_step()
  if latest is None:
    raise FileNotFoundError(
        f"No training checkpoint in {checkpoint_dir}; train first "
        "(--mode train) with the same --workdir."
    )
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt_state = mstep.make_optimizer(optimizer_config, params, train_mu_y).init(params)
  state = checkpoints.restore(
      latest, _train_state(params, rest, opt_state, data.given_labels, latest, jax.random.key(0))
  )
  checkpoints.close()
  return nnx.merge(graphdef, state["params"], state["rest"]), latest
