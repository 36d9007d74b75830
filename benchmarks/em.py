"""One whole EM block on a CIFAR-10-sized problem: an E-step, then T M-steps.

  python -m benchmarks.em [--quick] [--threads 1]

Problem: 50,000 x 512 frozen features (a synthetic clustered set, 10 % of the given labels
flipped), C = 10, T = 1,000 M-steps of batch 256, likelihood A; mu_z = mu_y = the class
centroids under the given labels (the reference's initialisation), the same initial prior
logits on both sides.

ours:  vibe_jax.em.loop.run_estep (ln P over the training set in batches of
       features.batch_size, ott Sinkhorn at tol 1e-4 with momentum, the label diagnostics)
       then vibe_jax.em.mstep.MStep for T steps in one compiled loop (vibe_jax.engine), on data laid out
       by em.data.shard_training_data, as loop.fit does; configs/common.py defaults. Timed
       after one warm-up block (1 M-step) that compiles everything; the warm-up is reported.
torch: ln P in batches of 1,024 with the PyTorch head of benchmarks/mstep.py, the
       reference-style E-step (10,001 Sinkhorn iterations, benchmarks/estep.py), T PyTorch
       M-steps.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks import common
from benchmarks import estep as estep_bench
from benchmarks import mstep as mstep_bench

NUM_SAMPLES, NUM_CLASSES, FEATURE_DIM, PERIOD, BATCH_SIZE = 50_000, 10, 512, 1_000, 256


def _problem(num_samples: int, num_classes: int):
  features, true, given = common.clustered_features(num_samples, num_classes, FEATURE_DIM, seed=0)
  sums = np.zeros((num_classes, FEATURE_DIM))
  np.add.at(sums, given, features)
  centroids = (sums / np.maximum(np.bincount(given, minlength=num_classes), 1)[:, None]).astype(
      np.float32
  )
  prior_logits = np.random.default_rng(2).standard_normal(num_classes).astype(np.float32)
  return features, true, given, centroids, prior_logits


def ours_block(features, true, given, centroids, prior_logits, period: int) -> dict:
  """Our block as loop.fit runs it: data sharded on a 1-device mesh, run_estep, then
  M-steps in one compiled loop (frozen features). Times one warm-up block, then one."""
  import jax
  from flax import nnx
  from configs import common as configs_common
  from vibe_jax import engine, parallel
  from vibe_jax.em import loop, mstep
  from vibe_jax.em.data import shard_training_data
  from vibe_jax.models.vibe import VibeHead, VibeModel

  num_classes = centroids.shape[0]
  config = configs_common.base_config()
  kappa = common.concentration(num_classes)
  head = VibeHead(
      num_classes,
      FEATURE_DIM,
      kappa=kappa,
      nu=kappa,
      prior_temperature=config.vibe.prior_temperature,
      likelihood="a",
      rngs=nnx.Rngs(0),
      mu_z=centroids,
      mu_y=centroids,
  )
  head.prior_logits[...] = jax.numpy.asarray(prior_logits)
  mesh = parallel.make_mesh(1)
  data = shard_training_data(features, given, true, np.zeros(len(given), bool), mesh)
  graphdef, params, rest = nnx.split(VibeModel(head), nnx.Param, ...)
  optimizer = mstep.make_optimizer(config.train, params)
  params, rest = parallel.replicate_tree((params, rest), mesh)
  opt_state = parallel.replicate_tree(optimizer.init(params), mesh)
  state = {"mstep": mstep.MStepState.start(params, rest, opt_state, data.num_valid), "step": 0}
  step_fn = mstep.MStep(
      graphdef=graphdef,
      optimizer=optimizer,
      objective="vibe",
      batch_size=config.train.batch_size,
      num_samples=data.num_valid,
      batch_sharding=parallel.data_sharded(mesh),
  )
  key = jax.random.key(config.seed)
  settings = loop.EStepSettings.from_config(config)

  def block(num_steps: int) -> dict:
    times = {}
    start = time.perf_counter()
    current = state["mstep"]
    labels, record, _ = loop.run_estep(
        nnx.merge(graphdef, current.params, current.rest), data, settings, first=False
    )
    times["estep"] = time.perf_counter() - start
    start = time.perf_counter()
    inputs = mstep.MStepInputs(data.inputs, data.given_labels, labels, key)
    state["mstep"], metrics = engine.run_steps(
        step_fn, current, inputs, state["step"], num_steps, host_loop=False
    )
    times["msteps"] = time.perf_counter() - start
    state["step"] += num_steps
    return {
        **times,
        "total": times["estep"] + times["msteps"],
        "labels": parallel.to_host(labels)[: data.num_valid],
        "iterations": record["sinkhorn_iterations"],
        "loss": metrics["loss"],
    }

  warm = block(1)  # compiles ln P, the Sinkhorn solve and the M-steps
  timed = block(period)
  timed["warmup"] = warm["total"]
  return timed


def torch_block(
    features,
    given,
    centroids,
    prior_logits,
    period: int,
    reference_iterations: int = estep_bench.REFERENCE_ITERATIONS,
) -> dict:
  import torch

  num_classes = centroids.shape[0]
  head = mstep_bench.torch_head(
      num_classes, FEATURE_DIM, "a", mu_z=centroids, mu_y=centroids, prior_logits=prior_logits
  )
  inputs, given_t = torch.from_numpy(features), torch.from_numpy(given).long()
  times = {}
  start = time.perf_counter()
  with torch.no_grad():
    ln_p = torch.cat(
        [
            head.ln_joint(inputs[i : i + 1024], given_t[i : i + 1024])
            for i in range(0, len(inputs), 1024)
        ]
    ).numpy()
    prior = torch.softmax(mstep_bench.PRIOR_TEMPERATURE * head.prior_logits, 0).numpy()
  solve = estep_bench.torch_sinkhorn(
      ln_p, prior, estep_bench.LAM, max_iterations=reference_iterations
  )
  times["estep"] = time.perf_counter() - start
  trainer = mstep_bench.TorchTrainer(
      features, given, solve["labels"], num_classes, "a", head=head, batch_size=BATCH_SIZE
  )
  seconds, loss = trainer.run(period)
  times["msteps"] = seconds
  return {
      **times,
      "total": times["estep"] + times["msteps"],
      "labels": solve["labels"],
      "iterations": solve["iterations"],
      "loss": loss,
  }


def run(quick: bool = False, period: int | None = None, log=print) -> dict:
  num_samples = 2_000 if quick else NUM_SAMPLES
  period = period or (20 if quick else PERIOD)
  # --quick (CI smoke run) shortens the reference-style E-step to 1,001 iterations.
  reference_iterations = 1_001 if quick else estep_bench.REFERENCE_ITERATIONS
  torch_name = f"torch (reference-style {reference_iterations:,}-it E-step + T M-steps)"
  features, true, given, centroids, prior_logits = _problem(num_samples, NUM_CLASSES)
  log(f"EM block N={num_samples} C={NUM_CLASSES} T={period}  (load {common.load_average()})")
  results = {
      torch_name: torch_block(
          features, given, centroids, prior_logits, period, reference_iterations
      )
  }
  log(f"  torch: {results[torch_name]['total']:.1f} s")
  results["ours (run_estep + M-steps)"] = ours_block(
      features, true, given, centroids, prior_logits, period
  )
  log(f"  ours: {results['ours (run_estep + M-steps)']['total']:.1f} s")
  reference = results[torch_name]
  table = common.Table(
      f"One EM block: E-step + {period} M-steps (N = {num_samples:,}, D = 512, C = 10, "
      f"batch {BATCH_SIZE})",
      [
          "implementation",
          "E-step",
          "Sinkhorn it",
          f"{period} M-steps",
          "block total",
          "speed-up",
          "warm-up (compile)",
          "labels agree w/ torch",
          "mean loss",
      ],
  )
  for name, r in results.items():
    table.add(
        name,
        common.fmt_seconds(r["estep"]),
        r["iterations"],
        common.fmt_seconds(r["msteps"]),
        common.fmt_seconds(r["total"]),
        "-" if r is reference else f"{reference['total'] / r['total']:.1f}x",
        common.fmt_seconds(r.get("warmup")),
        f"{100 * np.mean(r['labels'] == reference['labels']):.3f} %",
        f"{r['loss']:.4f}",
    )
  table.notes += [
      "E-step includes computing ln P over the whole training set; ours also its label "
      "diagnostics (loop.run_estep). Times exclude ours' one-off compile (warm-up column: one "
      "block with a single M-step, run first).",
      "labels agree: E-step pseudo-labels vs the PyTorch reference-style run on the same "
      "initial parameters.",
  ]
  facts = {name: {k: v for k, v in r.items() if k != "labels"} for name, r in results.items()}
  return {"tables": [table], "facts": facts}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--period", type=int, default=None, help="T, the M-steps per block")
  parser.add_argument("--threads", type=int, default=common.default_threads())
  args = parser.parse_args(argv)
  common.configure_threads(args.threads)
  common.set_torch_threads(args.threads)
  out = run(quick=args.quick, period=args.period)
  for table in out["tables"]:
    print(table.text())


if __name__ == "__main__":
  main()
