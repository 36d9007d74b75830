"""E-step: clean pseudo-labels by entropy-regularised optimal transport (ott-jax Sinkhorn).

  Q = argmax_Q <Q, ln P> + (1/lambda) H(Q),  Q 1 = 1/N,  Q^T 1 = prior

is Sinkhorn with cost -ln P and epsilon = 1/lambda (set explicitly: ott's default epsilon
is relative to the cost). The pseudo-label of sample i is argmax_l Q[i, l]; with the dual
potential g this is argmax_l (ln P[i, l] + g_l), so the N x C plan is never materialised.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import acceleration, sinkhorn

# The reference runs max_iter + 1 Sinkhorn iterations whatever the convergence.
REFERENCE_FIXED_ITERATIONS = 10_001


class SinkhornResult(NamedTuple):
  iterations: jax.Array
  converged: jax.Array
  marginal_error: jax.Array
  # (C,) the dual potential g: the pseudo-labels are argmax_l (ln P[i, l] + g_l), and
  # softmax_l(ln P[i, l] + g_l) is the class-balanced posterior vibe_jax.relabel scores with.
  label_potentials: jax.Array


@functools.partial(
    jax.jit,
    static_argnames=("threshold", "max_iterations", "fixed_iterations", "adaptive_momentum"),
)
def sinkhorn_pseudo_labels(
    ln_p: jax.Array,
    prior: jax.Array,
    lam: float | jax.Array = 25.0,
    *,
    valid: jax.Array | None = None,
    threshold: float = 1e-4,
    max_iterations: int = 10_001,
    fixed_iterations: bool = False,
    adaptive_momentum: bool = True,
) -> tuple[jax.Array, SinkhornResult]:
  """Pseudo-labels (N,) int32 from ln P (N, C) and the class prior (C,), plus solver stats.

  `fixed_iterations=True` reproduces the reference exactly: 10,001 plain iterations, no
  convergence test. Otherwise Sinkhorn stops once the L1 marginal error is < `threshold`;
  `adaptive_momentum` (ott's over-relaxation with its momentum estimated after 50
  iterations) cuts the iterations on the peaked late-EM problems about tenfold; when it
  diverges (seen at C = 100 to 1,000), the plain solve runs instead and the iterations add up.
  `valid` (N,) bool marks real rows when N was padded to divide over devices: padded rows
  get zero mass, which leaves the potentials of the real problem unchanged.
  A stop-gradient computation: nothing differentiates through it.
  """
  ln_p = jax.lax.stop_gradient(ln_p.astype(jnp.float32))
  prior = jax.lax.stop_gradient(prior.astype(jnp.float32))
  num_samples = ln_p.shape[0]
  geom = geometry.Geometry(cost_matrix=-ln_p, epsilon=1.0 / lam)
  weights = jnp.ones((num_samples,)) if valid is None else valid.astype(jnp.float32)
  problem = linear_problem.LinearProblem(geom, a=weights / weights.sum(), b=prior / prior.sum())
  if fixed_iterations:
    solver = sinkhorn.Sinkhorn(
        threshold=-1.0,
        inner_iterations=1,
        min_iterations=REFERENCE_FIXED_ITERATIONS,
        max_iterations=REFERENCE_FIXED_ITERATIONS,
    )
    g, iterations, converged, marginal_error = _solve(solver, problem, threshold)
    return _labels(ln_p, g), SinkhornResult(iterations, converged, marginal_error, g)
  plain = sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations)
  if not adaptive_momentum:
    g, iterations, converged, marginal_error = _solve(plain, problem, threshold)
    return _labels(ln_p, g), SinkhornResult(iterations, converged, marginal_error, g)
  accelerated = sinkhorn.Sinkhorn(
      threshold=threshold, max_iterations=max_iterations, momentum=acceleration.Momentum(start=50)
  )
  g, iterations, converged, marginal_error = _solve(accelerated, problem, threshold)
  # The momentum estimate can overshoot on peaked problems with many classes and diverge, which
  # ott still reports as converged; then solve again without it.
  g, extra, converged, marginal_error = jax.lax.cond(
      converged,
      lambda: (g, jnp.zeros_like(iterations), converged, marginal_error),
      lambda: _solve(plain, problem, threshold),
  )
  return _labels(ln_p, g), SinkhornResult(iterations + extra, converged, marginal_error, g)


def _solve(
    solver: sinkhorn.Sinkhorn, problem: linear_problem.LinearProblem, threshold: float = -1.0
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """(g, iterations, converged, last marginal error); converged means a finite last error
  below `threshold`, whatever ott's own flag says."""
  out = solver(problem)
  errors = out.errors  # -1 where an iteration was not run (or not checked)
  last = jnp.max(jnp.where(errors >= 0, jnp.arange(errors.shape[0]), 0))
  marginal_error = errors[last]
  converged = jnp.isfinite(marginal_error) & (marginal_error >= 0) & (marginal_error < threshold)
  return out.g, jnp.asarray(out.n_iters, jnp.int32), converged, marginal_error


def _labels(ln_p: jax.Array, g: jax.Array) -> jax.Array:
  return jnp.argmax(ln_p + g[None, :], axis=1).astype(jnp.int32)
