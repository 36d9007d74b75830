"""The E-step's solver strategies side by side on one problem each (ours only, no PyTorch).

  python -m benchmarks.estep_solvers [--samples 10000] [--classes 10,100,1000]

For each (kind, C): Sinkhorn alone (estep.semi_dual_steps=0, ott's adaptive momentum with
its plain restart: the E-step before issue 16), the default (L-BFGS on the semi-dual, then
Sinkhorn), and a tight solve (the default at tol 1e-5) whose labels are the yardstick.
Times exclude the compile; each solve runs once.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks import common

SOLVERS = {
    "Sinkhorn only (momentum, plain restart)": {"semi_dual_steps": 0},
    "default (L-BFGS, then Sinkhorn)": {},
    "tight (default at tol 1e-5)": {"threshold": 1e-5, "semi_dual_steps": 10_000},
}


def run(num_samples=10_000, classes=(10, 100), kinds=("late_em", "dirichlet"), log=print) -> dict:
  import jax.numpy as jnp

  from vibe_jax.em import estep

  table = common.Table(
      f"E-step solvers, N = {num_samples:,} (tol 1e-4; steps + iterations = L-BFGS steps + "
      "Sinkhorn iterations; times exclude the compile)",
      ["ln P", "C", "solver", "steps + it", "time", "marginal err", "agree w/ tight"],
  )
  for kind in kinds:
    for num_classes in classes:
      ln_p, prior = (jnp.asarray(x) for x in common.make_ln_p(kind, num_samples, num_classes))
      runs = {}
      for name, static in SOLVERS.items():
        compiled = estep.sinkhorn_pseudo_labels.lower(ln_p, prior, 25.0, **static).compile()
        seconds, (labels, result) = common.timed(lambda: common.block(compiled(ln_p, prior, 25.0)))
        runs[name] = (np.asarray(labels), result, seconds)
      tight = runs[list(SOLVERS)[-1]][0]
      for name, (labels, result, seconds) in runs.items():
        table.add(
            kind,
            num_classes,
            name,
            f"{int(result.semi_dual_steps)} + {int(result.iterations)}"
            + ("" if bool(result.converged) else " (not converged)"),
            common.fmt_seconds(seconds),
            f"{float(result.marginal_error):.1e}",
            f"{100 * np.mean(labels == tight):.3f} %",
        )
      log(f"  solvers {kind} C={num_classes}: {table.rows[-3:]} (load {common.load_average()})")
  return {"tables": [table]}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--samples", type=int, default=10_000)
  parser.add_argument("--classes", default="10,100")
  parser.add_argument("--threads", type=int, default=common.default_threads())
  args = parser.parse_args(argv)
  common.configure_threads(args.threads)
  classes = tuple(int(c) for c in args.classes.split(","))
  for table in run(args.samples, classes)["tables"]:
    print(table.text())


if __name__ == "__main__":
  main()
