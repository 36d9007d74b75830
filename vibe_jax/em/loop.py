"""The EM loop: an E-step every T iterations, M-steps through the training engine between.

The same loop trains the undefended baseline (a phase without E-step, objective
'baseline'), so the baseline and VIBE share features, head, optimiser and batches. Training
state is checkpointed every `checkpoint.every` iterations and at the end; a restarted run
resumes from the last checkpoint and, since batches and augmentations are pure functions of
(seed, step), ends where an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from vibe_jax import engine, metrics, parallel
from vibe_jax.checkpoint import CheckpointMismatchError, TrainCheckpoints
from vibe_jax.em import estep, inference, mstep
from vibe_jax.em.data import TrainData
from vibe_jax.models.vibe import VibeModel

__all__ = [
    "EStepSettings",
    "Phase",
    "fit",
    "phases",
    "restore_model",
    "run_estep",
]


@dataclasses.dataclass(frozen=True)
class EStepSettings:
  """How the E-step runs (config sections estep and vibe.uniform_first_estep)."""

  period: int
  lam: float
  threshold: float
  max_iterations: int
  fixed_iterations: bool
  adaptive_momentum: bool
  semi_dual_steps: int
  warm_start: bool  # start each E-step from the previous one's dual potential g
  uniform_first: bool  # iteration 0 replaces ln p(y|l) by -ln C, as the reference does
  batch_size: int  # of the ln P pass (features.batch_size)

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "EStepSettings":
    return cls(
        period=config.estep.period,
        lam=config.estep.lam,
        threshold=config.estep.threshold,
        max_iterations=config.estep.max_iterations,
        fixed_iterations=config.estep.fixed_iterations,
        adaptive_momentum=config.estep.adaptive_momentum,
        semi_dual_steps=config.estep.semi_dual_steps,
        warm_start=config.estep.warm_start,
        uniform_first=config.vibe.uniform_first_estep,
        batch_size=config.features.batch_size,
    )


@dataclasses.dataclass(frozen=True)
class Phase:
  """One model a run trains, from its config section (`section`: 'baseline' or 'train'):
  schedule, optimiser (section's lr, prior_lr, momentum, weight_decay), cadence, and the
  E-step (None: cross-entropy on the given labels, the undefended baseline)."""

  name: str  # the checkpoint subdirectory and the log's phase tag
  section: str
  objective: str
  steps: int
  batch_size: int
  kappa: float
  optimizer: ml_collections.ConfigDict
  train_mu_y: bool
  log_every: int
  eval_every: int
  checkpoint_every: int
  seed: int
  estep: EStepSettings | None
  desc: str


def phases(config: ml_collections.ConfigDict, train_mu_y: bool) -> list[Phase]:
  """The models a run trains, in order: the undefended deep victim (if victim.enabled; a
  whole network on images, vibe_jax.prepare.prepare_victim), the undefended baseline head
  (if baseline.enabled), then VIBE. `train_mu_y`: whether VIBE trains mu_y (the variant's
  choice; the undefended models always do)."""

  def phase(name, section, objective, kappa, train_mu_y, estep_settings, desc):
    fields = config[section]
    return Phase(
        name=name,
        section=section,
        objective=objective,
        steps=fields.steps,
        batch_size=fields.batch_size,
        kappa=kappa,
        optimizer=fields,
        train_mu_y=train_mu_y,
        log_every=fields.log_every,
        eval_every=fields.eval_every,
        checkpoint_every=config.checkpoint.every,
        seed=config.seed,
        estep=estep_settings,
        desc=desc,
    )

  undefended = [
      phase(name, name, "baseline", config[name].kappa, True, None, name)
      for name in ("victim", "baseline")
      if config[name].enabled
  ]
  vibe = phase(
      "vibe",
      "train",
      "vibe",
      config.vibe.kappa,
      train_mu_y,
      EStepSettings.from_config(config),
      f"vibe-{config.variant}",
  )
  return [*undefended, vibe]


def run_estep(
    model: VibeModel,
    data: TrainData,
    settings: EStepSettings,
    first: bool,
    init_g: jax.Array | None = None,
) -> tuple[jax.Array, dict, jax.Array]:
  """Pseudo-labels for the whole training set (padding rows included), diagnostics, and the
  solve's column potential g (C,): the next E-step's warm start. `init_g` is the previous
  E-step's g (None: start cold), used after the first E-step with settings.warm_start."""
  warm = settings.warm_start and not first and not settings.fixed_iterations and init_g is not None
  start_g = init_g if warm else None
  if not warm and not settings.fixed_iterations and settings.semi_dual_steps:
    # A cold start is L-BFGS from g = 0; passed as zeros, it is the same compiled program as
    # the warm E-steps' (one compile per run instead of two; the same numbers).
    start_g = (
        jnp.zeros_like(init_g)
        if init_g is not None
        else jnp.zeros(model.head.prior_logits.shape, jnp.float32)
    )
  ln_p = inference.ln_joint(
      model,
      data.inputs,
      data.given_labels,
      first and settings.uniform_first,
      settings.batch_size,
      data.preprocess,
  )
  labels, solver = estep.sinkhorn_pseudo_labels(
      ln_p,
      jnp.exp(model.head.ln_prior()),
      settings.lam,
      valid=data.valid,
      threshold=settings.threshold,
      max_iterations=settings.max_iterations,
      fixed_iterations=settings.fixed_iterations,
      adaptive_momentum=settings.adaptive_momentum,
      semi_dual_steps=settings.semi_dual_steps,
      init_g=start_g,
  )
  host_labels = parallel.to_host(labels)[: data.num_valid]
  given = parallel.to_host(data.given_labels)[: data.num_valid]
  record = metrics.pseudo_label_diagnostics(host_labels, given, data.true_labels, data.poison_mask)
  record.update(
      sinkhorn_iterations=int(solver.iterations),
      semi_dual_steps=int(solver.semi_dual_steps),
      sinkhorn_error=float(solver.marginal_error),
      sinkhorn_converged=int(solver.converged),  # 1 or 0: a TensorBoard scalar too
      sinkhorn_warm_start=int(warm),
  )
  return labels, record, solver.g


def _check_estep(record: dict, phase: Phase, step: int) -> None:
  """A non-finite Sinkhorn error stops the run (its pseudo-labels mean nothing); one that
  did not fall below the threshold is a warning (the pseudo-labels are approximate), also
  in the record's sinkhorn_converged."""
  settings, error = phase.estep, record["sinkhorn_error"]
  if not math.isfinite(error):
    raise FloatingPointError(
        f"{phase.desc} E-step at iteration {step}: the Sinkhorn marginal error is {error}; "
        f"lower estep.lam={settings.lam} or vibe.kappa / vibe.nu, or check the features "
        "for NaN/inf."
    )
  if not record["sinkhorn_converged"]:
    logging.warning(
        "%s E-step at iteration %d: Sinkhorn did not converge (marginal error %.3g, "
        "estep.threshold=%g, %d L-BFGS steps of estep.semi_dual_steps=%d, %d Sinkhorn "
        "iterations of estep.max_iterations=%d); the pseudo-labels are approximate. Raise "
        "estep.semi_dual_steps or estep.max_iterations, or lower estep.lam.",
        phase.desc,
        step,
        error,
        settings.threshold,
        record["semi_dual_steps"],
        settings.semi_dual_steps,
        record["sinkhorn_iterations"],
        settings.max_iterations,
    )


def _format_record(record: dict) -> str:
  return ", ".join(
      f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()
  )


def fit(
    model: VibeModel,
    data: TrainData,
    phase: Phase,
    *,
    mesh: Mesh,
    checkpoint_dir: str | None = None,
    evaluate: Callable[[VibeModel], dict] | None = None,
    log: Callable[[dict], None] = lambda record: None,
    on_estep: Callable[[int, VibeModel, jax.Array], None] | None = None,
    fingerprint: str | None = None,
) -> VibeModel:
  """Trains `model` for phase.steps iterations (resuming from `checkpoint_dir`), returns it.

  With an E-step (VIBE) one runs every phase.estep.period iterations, the first at iteration
  0. `log` receives one record per chunk (loss, learning rates), per E-step (diagnostics)
  and per evaluation (`evaluate`, every phase.eval_every iterations). `on_estep(step, model,
  pseudo_labels)` runs after each E-step on every process (the pseudo-labels are the sharded
  (N_padded,) array), e.g. to snapshot it for the report. `fingerprint`: the experiment's
  (vibe_jax.workdir), saved with each checkpoint and checked on restore.
  """
  if phase.objective not in mstep.OBJECTIVES:
    raise ValueError(f"objective {phase.objective!r} is not one of {mstep.OBJECTIVES}.")
  if phase.batch_size > data.num_valid:
    raise ValueError(
        f"{phase.section}.batch_size={phase.batch_size} exceeds the {data.num_valid} training "
        f"samples; lower {phase.section}.batch_size."
    )
  parallel.check_batch_divides(phase.batch_size, mesh, f"{phase.section}.batch_size")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  optimizer = mstep.make_optimizer(phase.optimizer, params, phase.train_mu_y)
  params, rest = parallel.replicate_tree((params, rest), mesh)
  opt_state = parallel.replicate_tree(optimizer.init(params), mesh)
  key = parallel.replicate_tree(jax.random.key(phase.seed), mesh)
  pseudo_labels, start = data.given_labels, 0
  # The last E-step's column potential: the next E-step starts from it (estep.warm_start).
  # Zeros until the first E-step, which starts cold; saved with the state, so that a resumed
  # run warm-starts as the uninterrupted one does.
  estep_g = parallel.replicate(np.zeros(model.head.prior_logits.shape, np.float32), mesh)
  checkpoints = None
  if checkpoint_dir is not None:
    checkpoints = TrainCheckpoints(
        checkpoint_dir, save_every=phase.checkpoint_every, fingerprint=fingerprint
    )
    restored = checkpoints.restore_latest(
        _train_state(params, rest, opt_state, _unpadded(pseudo_labels, data, mesh), estep_g, 0, key)
    )
    if restored is not None:
      _, saved = restored
      params, rest, opt_state = saved["params"], saved["rest"], saved["opt_state"]
      pseudo_labels, start = _padded(saved["pseudo_labels"], data, mesh), int(saved["step"])
      estep_g = saved["estep_g"]
      _check_step(start, phase, checkpoint_dir)
      key = jax.random.wrap_key_data(saved["key"])
      print(f"{phase.desc}: resumed from the checkpoint at iteration {start}")
  step_fn = mstep.MStep(
      graphdef=graphdef,
      optimizer=optimizer,
      objective=phase.objective,
      batch_size=phase.batch_size,
      num_samples=data.num_valid,
      augment=data.augment,
      batch_sharding=parallel.data_sharded(mesh),
  )
  state = mstep.MStepState.start(params, rest, opt_state, data.num_valid, mesh)
  host_loop = engine.use_host_loop(convolutional=model.backbone is not None)
  period = phase.estep.period if phase.estep else math.inf
  chunks = engine.chunks(
      start,
      phase.steps,
      phase.log_every,
      period,
      phase.eval_every if evaluate else math.inf,
      phase.checkpoint_every if checkpoints else math.inf,
  )
  with engine.progress_bar(phase.steps, start, phase.desc) as bar:
    for begin, end in chunks:
      if phase.estep and begin % period == 0:
        current = nnx.merge(graphdef, state.params, state.rest)
        estep_started = time.perf_counter()
        pseudo_labels, record, estep_g = run_estep(
            current, data, phase.estep, first=begin == 0, init_g=estep_g
        )
        # Wall seconds of ln P, the solve and the diagnostics (run_estep ends on the host).
        record["seconds"] = round(time.perf_counter() - estep_started, 3)
        log({"step": begin, "kind": "estep", **record})
        _check_estep(record, phase, begin)
        if on_estep is not None:
          on_estep(begin, current, pseudo_labels)
        bar.write(f"E-step @ {begin}: {_format_record(record)}")
      if evaluate is not None and begin % phase.eval_every == 0 and begin:
        log(
            {
                "step": begin,
                "kind": "eval",
                **evaluate(nnx.merge(graphdef, state.params, state.rest)),
            }
        )
      inputs = mstep.MStepInputs(data.inputs, data.given_labels, pseudo_labels, key)
      state, chunk_metrics = engine.run_steps(
          step_fn, state, inputs, begin, end - begin, host_loop=host_loop, progress=bar
      )
      loss = chunk_metrics["loss"]
      engine.check_finite(
          loss,
          phase.desc,
          begin,
          end,
          f"lower the learning rate ({phase.section}.lr / {phase.section}.prior_lr) or check "
          "the features for NaN/inf.",
      )
      log(
          {
              "step": end,
              "kind": "train",
              "loss": loss,
              **mstep.learning_rates(phase.optimizer, phase.train_mu_y, end),
          }
      )
      bar.set_postfix(loss=f"{loss:.4f}")
      if checkpoints is not None and checkpoints.due(end, force=end == phase.steps):
        unpadded = _unpadded(pseudo_labels, data, mesh)
        checkpoints.save(
            end,
            _train_state(state.params, state.rest, state.opt_state, unpadded, estep_g, end, key),
        )
  if checkpoints is not None:
    checkpoints.close()
  return nnx.merge(graphdef, state.params, state.rest)


def _check_step(step: int, phase: Phase, checkpoint_dir: str) -> None:
  """A checkpoint past the phase's end belongs to a longer schedule: resuming from it would
  train on and log its iterations as this schedule's."""
  if step > phase.steps:
    raise CheckpointMismatchError(
        f"the checkpoint in {checkpoint_dir} is at iteration {step}, beyond "
        f"{phase.section}.steps={phase.steps}; use the config it was trained with, a fresh "
        "--workdir, or --restart to start over."
    )


def _unpadded(pseudo_labels: jax.Array, data: TrainData, mesh: Mesh) -> jax.Array:
  """The real rows' pseudo-labels, replicated: what a checkpoint stores, so that a run can
  resume on a device count that pads the rows differently."""
  return parallel.replicate(parallel.to_host(pseudo_labels)[: data.num_valid], mesh)


def _padded(saved: jax.Array, data: TrainData, mesh: Mesh) -> jax.Array:
  """Saved pseudo-labels padded as data's rows are (the last row repeated, which is also
  what the E-step gives a padding row) and sharded on rows again."""
  labels = parallel.to_host(saved)[: data.num_valid]
  index = np.minimum(np.arange(data.inputs.shape[0]), data.num_valid - 1)
  return parallel.shard_rows(labels[index], mesh)


def _train_state(params, rest, opt_state, pseudo_labels, estep_g, step, key) -> dict:
  return {
      "params": params,
      "rest": rest,
      "opt_state": opt_state,
      "pseudo_labels": pseudo_labels,
      "estep_g": estep_g,
      "step": step,
      "key": jax.random.key_data(key),
  }


def restore_model(
    model: VibeModel,
    data: TrainData,
    checkpoint_dir: str,
    phase: Phase,
    fingerprint: str | None = None,
) -> tuple[VibeModel, int]:
  """`model` with the params and BatchNorm statistics of the latest intact checkpoint (of
  the experiment `fingerprint`, when given), and its step."""
  checkpoints = TrainCheckpoints(checkpoint_dir, save_every=1, fingerprint=fingerprint)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt_state = mstep.make_optimizer(phase.optimizer, params, phase.train_mu_y).init(params)
  mesh = data.given_labels.sharding.mesh
  like = _train_state(
      params,
      rest,
      opt_state,
      _unpadded(data.given_labels, data, mesh),
      parallel.replicate(np.zeros(model.head.prior_logits.shape, np.float32), mesh),
      0,
      jax.random.key(0),
  )
  restored = checkpoints.restore_latest(like, move_corrupt=False)  # eval changes nothing
  checkpoints.close()
  if restored is None:
    raise FileNotFoundError(
        f"No training checkpoint in {checkpoint_dir}; train first "
        "(--mode train) with the same --workdir."
    )
  step, saved = restored
  _check_step(step, phase, checkpoint_dir)
  return nnx.merge(graphdef, saved["params"], saved["rest"]), step
