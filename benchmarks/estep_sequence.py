"""Cold vs warm E-steps over an EM-like sequence of problems (the E-step's warm start).

  python -m benchmarks.estep_sequence [--samples 10000] [--classes 1000] [--esteps 10]

ln P of the first E-step is the benchmark's late-EM problem (benchmarks.common.make_ln_p);
each later E-step's ln P is the previous one plus iid N(0, drift^2) noise per entry (the
M-steps between two E-steps move ln P a little; drift 0.05 by default), the prior fixed.
Every E-step is solved twice with the EM loop's defaults (estep.py): cold (zero potentials)
and warm (from the previous warm solve's g, as em/loop.py carries it). Times exclude the
one-off compile of each program.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks import common

LAM = 25.0


def run(
    num_samples: int = 10_000,
    num_classes: int = 1_000,
    esteps: int = 10,
    drift: float = 0.05,
    seed: int = 0,
    log=print,
) -> dict:
  """{'tables': [Table], 'facts': {...}}: per E-step and total, cold vs warm."""
  import jax
  import jax.numpy as jnp

  from vibe_jax.em import estep

  ln_p, prior = common.make_ln_p("late_em", num_samples, num_classes, seed=seed)
  prior = jnp.asarray(prior)
  cold_fn = estep.sinkhorn_pseudo_labels.lower(jnp.asarray(ln_p), prior, LAM).compile()
  warm_fn = estep.sinkhorn_pseudo_labels.lower(
      jnp.asarray(ln_p), prior, LAM, init_g=jnp.zeros(num_classes)
  ).compile()
  rng = np.random.default_rng(seed + 100)
  table = common.Table(
      f"E-step sequence: {esteps} E-steps, N = {num_samples:,}, C = {num_classes:,}, ln P "
      f"drifting by N(0, {drift}^2) per entry between E-steps (L-BFGS steps + Sinkhorn "
      "iterations; times exclude the compile)",
      [
          "E-step",
          "cold: steps + it",
          "cold time",
          "warm: steps + it",
          "warm time",
          "warm/cold time",
          "labels agree (warm vs cold)",
          "warm marginal err",
      ],
  )
  totals = {"cold": [0, 0.0], "warm": [0, 0.0]}
  g, converged = None, True
  for index in range(esteps):
    if index:
      ln_p = ln_p + drift * rng.standard_normal(ln_p.shape).astype(np.float32)
    device_ln_p = jnp.asarray(ln_p)
    runs = {}
    for name, call in (
        ("cold", lambda: cold_fn(device_ln_p, prior, LAM)),
        ("warm", lambda: warm_fn(device_ln_p, prior, LAM, init_g=g) if g is not None else None),
    ):
      seconds, out = common.timed(lambda: common.block(call()))
      if out is None:  # the first E-step has nothing to warm-start from: the cold solve
        out, seconds = runs["cold"]["out"], runs["cold"]["seconds"]
      labels, result = out
      steps = int(result.semi_dual_steps) + int(result.iterations)
      converged &= bool(result.converged)
      totals[name][0] += steps
      totals[name][1] += seconds
      runs[name] = {"out": out, "seconds": seconds, "steps": steps}
    g = runs["warm"]["out"][1].g
    label = lambda run: f"{int(run['out'][1].semi_dual_steps)} + {int(run['out'][1].iterations)}"
    agree = float(np.mean(np.asarray(runs["warm"]["out"][0]) == np.asarray(runs["cold"]["out"][0])))
    table.add(
        index + 1 if index else "1 (warm = cold)",
        label(runs["cold"]),
        common.fmt_seconds(runs["cold"]["seconds"]),
        label(runs["warm"]),
        common.fmt_seconds(runs["warm"]["seconds"]),
        f"{runs['warm']['seconds'] / runs['cold']['seconds']:.2f}",
        f"{100 * agree:.3f} %",
        f"{float(runs['warm']['out'][1].marginal_error):.1e}",
    )
    log(
        f"  E-step {index + 1}: cold {runs['cold']['steps']} ({runs['cold']['seconds']:.1f} s), "
        f"warm {runs['warm']['steps']} ({runs['warm']['seconds']:.1f} s), agree {agree:.5f}  "
        f"(load {common.load_average()})"
    )
  table.add(
      "**total**",
      f"**{totals['cold'][0]}**",
      f"**{common.fmt_seconds(totals['cold'][1])}**",
      f"**{totals['warm'][0]}**",
      f"**{common.fmt_seconds(totals['warm'][1])}**",
      f"**{totals['warm'][1] / totals['cold'][1]:.2f}**",
      "",
      "",
  )
  ratio = totals["cold"][0] / max(totals["warm"][0], 1)
  table.notes += [
      f"Total steps + iterations: cold {totals['cold'][0]:,}, warm {totals['warm'][0]:,}: "
      f"{ratio:.1f}x fewer warm; every solve converged to tol 1e-4: {converged}.",
      "warm: init_g = the previous warm E-step's SinkhornResult.g (em/loop.py carries it and "
      "saves it in the checkpoint); cold: init_g=None.",
  ]
  return {
      "tables": [table],
      "facts": {
          "N": num_samples,
          "C": num_classes,
          "esteps": esteps,
          "drift": drift,
          "cold_steps": totals["cold"][0],
          "warm_steps": totals["warm"][0],
          "cold_seconds": totals["cold"][1],
          "warm_seconds": totals["warm"][1],
          "all_converged": converged,
      },
  }


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--samples", type=int, default=10_000)
  parser.add_argument("--classes", type=int, default=1_000)
  parser.add_argument("--esteps", type=int, default=10)
  parser.add_argument("--drift", type=float, default=0.05)
  parser.add_argument("--threads", type=int, default=common.default_threads())
  args = parser.parse_args(argv)
  common.configure_threads(args.threads)
  out = run(args.samples, args.classes, args.esteps, args.drift)
  for table in out["tables"]:
    print(table.text())
  print(out["facts"])


if __name__ == "__main__":
  main()
