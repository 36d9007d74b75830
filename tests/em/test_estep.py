"""The Sinkhorn E-step against an independent numpy log-domain Sinkhorn, and its solutions
checked in numpy: a plan of the Gibbs form exp(lam (ln P + f + g)) whose marginals are
(1/N, prior) is the entropic OT solution, whatever solver found g."""

import jax.numpy as jnp
import numpy as np
import pytest

from vibe_jax.em.estep import sinkhorn_pseudo_labels


def logsumexp(x, axis):
  """ln sum exp along `axis`, shifted by the maximum (scipy's, without its generality: the
  reference below calls it thousands of times)."""
  top = x.max(axis=axis, keepdims=True)
  return np.log(np.exp(x - top).sum(axis=axis)) + np.squeeze(top, axis)


def numpy_sinkhorn_plan(ln_p, prior, lam, iterations):
  """Log-domain Sinkhorn-Knopp on K = lam * ln P, rows 1/N, columns prior."""
  n = ln_p.shape[0]
  kernel = lam * ln_p
  f, g = np.zeros(n), np.zeros(ln_p.shape[1])
  for _ in range(iterations):
    f = np.log(1.0 / n) - logsumexp(kernel + g[None], axis=1)
    g = np.log(prior) - logsumexp(kernel + f[:, None], axis=0)
  return np.exp(kernel + f[:, None] + g[None])


def random_problem(seed, n=600, c=6, peaked=False):
  rng = np.random.default_rng(seed)
  concentration = 0.3 if peaked else 1.0
  ln_p = np.log(rng.dirichlet(np.full(c, concentration), size=n) + 1e-12)
  prior = rng.dirichlet(np.full(c, 5.0))
  return ln_p, prior


@pytest.mark.parametrize("seed,peaked", [(0, False), (1, True)])
def test_converged_labels_match_numpy_reference(seed, peaked):
  ln_p, prior = random_problem(seed, peaked=peaked)
  plan = numpy_sinkhorn_plan(ln_p, prior, 25.0, 3000)
  np.testing.assert_allclose(plan.sum(0), prior, atol=1e-6)  # the reference is converged
  labels, stats = sinkhorn_pseudo_labels(
      jnp.asarray(ln_p), jnp.asarray(prior), 25.0, threshold=1e-6
  )
  assert labels.shape == (ln_p.shape[0],) and labels.dtype == jnp.int32
  assert bool(stats.converged)
  assert np.mean(np.asarray(labels) == plan.argmax(1)) >= 0.995


def test_fixed_iterations_reproduce_reference_run():
  ln_p, prior = random_problem(2, n=300, c=5)
  plan = numpy_sinkhorn_plan(ln_p, prior, 25.0, 10_001)
  labels, stats = sinkhorn_pseudo_labels(
      jnp.asarray(ln_p), jnp.asarray(prior), 25.0, fixed_iterations=True
  )
  assert int(stats.iterations) == 10_001
  np.testing.assert_array_equal(np.asarray(labels), plan.argmax(1))


def test_plain_and_accelerated_solvers_agree():
  ln_p, prior = random_problem(3, peaked=True)
  plain, _ = sinkhorn_pseudo_labels(
      jnp.asarray(ln_p),
      jnp.asarray(prior),
      25.0,
      adaptive_momentum=False,
      threshold=1e-5,
      semi_dual_steps=0,
  )
  fast, _ = sinkhorn_pseudo_labels(
      jnp.asarray(ln_p), jnp.asarray(prior), 25.0, threshold=1e-5, semi_dual_steps=0
  )
  assert np.mean(np.asarray(plain) == np.asarray(fast)) >= 0.995


def test_column_marginal_steers_label_counts():
  # Every sample prefers class 0, but the prior asks for an even split: OT must rebalance.
  rng = np.random.default_rng(4)
  ln_p = np.log(np.tile([0.7, 0.1, 0.1, 0.1], (400, 1)) + 0.01 * rng.random((400, 4)))
  labels, _ = sinkhorn_pseudo_labels(jnp.asarray(ln_p), jnp.full((4,), 0.25), 25.0)
  counts = np.bincount(np.asarray(labels), minlength=4)
  assert counts.min() > 60, counts  # without the marginal constraint all would be class 0


@pytest.mark.slow
def test_diverging_momentum_falls_back_to_plain_sinkhorn():
  # A peaked late-EM problem on which ott's adaptive momentum overshoots to an infinite
  # marginal error by iteration 90 while ott still flags it converged.
  from benchmarks.common import make_ln_p

  ln_p, prior = make_ln_p("late_em", 1000, 100)
  labels, stats = sinkhorn_pseudo_labels(
      jnp.asarray(ln_p), jnp.asarray(prior), 25.0, threshold=3e-3, semi_dual_steps=0
  )
  plain, plain_stats = sinkhorn_pseudo_labels(
      jnp.asarray(ln_p),
      jnp.asarray(prior),
      25.0,
      threshold=3e-3,
      adaptive_momentum=False,
      semi_dual_steps=0,
  )
  assert bool(stats.converged) and 0.0 <= float(stats.marginal_error) < 3e-3
  # The accelerated attempt's iterations come on top of the plain solve's.
  assert int(plain_stats.iterations) < int(stats.iterations) <= int(plain_stats.iterations) + 100
  np.testing.assert_array_equal(np.asarray(labels), np.asarray(plain))
  plan = numpy_sinkhorn_plan(ln_p.astype(np.float64), prior.astype(np.float64), 25.0, 3000)
  assert np.mean(np.asarray(labels) == plan.argmax(1)) >= 0.99


def numpy_column_error(ln_p, prior, lam, g):
  """L1 error of the column marginals of the plan with potential g (float64): rows scaled
  to 1/N each, as the solver's f(g) does; columns should sum to the prior."""
  logits = lam * (ln_p.astype(np.float64) + np.asarray(g, np.float64)[None])
  rows = np.exp(logits - logsumexp(logits, axis=1)[:, None]) / ln_p.shape[0]
  return np.abs(rows.sum(0) - prior / prior.sum()).sum()


def peaked_many_class_problem():
  """A late-EM problem (clustered features, 10 % label noise, C = 100) on which cold plain
  Sinkhorn is still above 2e-4 after 10,000 iterations."""
  from benchmarks.common import make_ln_p

  return make_ln_p("late_em", 1000, 100)


def test_semi_dual_solve_meets_the_marginals_with_padded_rows():
  ln_p, prior = peaked_many_class_problem()
  # 24 padding rows (valid False), as sharding over devices adds: they must get no mass.
  padded = np.concatenate([ln_p, np.zeros((24, ln_p.shape[1]), np.float32)])
  valid = np.arange(padded.shape[0]) < ln_p.shape[0]
  labels, stats = sinkhorn_pseudo_labels(
      jnp.asarray(padded),
      jnp.asarray(prior),
      25.0,
      valid=jnp.asarray(valid),
      adaptive_momentum=False,
  )
  assert bool(stats.converged) and 0 < int(stats.semi_dual_steps) < 2000
  assert int(stats.iterations) <= 20  # Sinkhorn only certified the L-BFGS solution
  assert numpy_column_error(ln_p, prior, 25.0, stats.g) < 2e-4
  np.testing.assert_array_equal(
      np.asarray(labels)[: ln_p.shape[0]], np.argmax(ln_p + np.asarray(stats.g)[None], axis=1)
  )


def test_warm_start_from_the_previous_g_needs_fewer_steps():
  ln_p, prior = peaked_many_class_problem()
  solve = lambda ln_p, **kw: sinkhorn_pseudo_labels(
      jnp.asarray(ln_p), jnp.asarray(prior), 25.0, adaptive_momentum=False, **kw
  )
  _, first = solve(ln_p)
  # The next E-step's problem: ln P moved a little, as by the M-steps between E-steps.
  drifted = ln_p + 0.05 * np.random.default_rng(5).standard_normal(ln_p.shape).astype(np.float32)
  cold_labels, cold = solve(drifted)
  warm_labels, warm = solve(drifted, init_g=first.g)
  assert bool(cold.converged) and bool(warm.converged)
  assert int(warm.semi_dual_steps) < int(cold.semi_dual_steps) / 2, (warm, cold)
  assert numpy_column_error(drifted, prior, 25.0, warm.g) < 2e-4
  assert np.mean(np.asarray(warm_labels) == np.asarray(cold_labels)) >= 0.995


def test_init_g_is_checked():
  ln_p, prior = random_problem(6, n=40, c=5)
  with pytest.raises(ValueError, match=r"init_g has shape \(4,\); .* of shape \(5,\)"):
    sinkhorn_pseudo_labels(jnp.asarray(ln_p), jnp.asarray(prior), init_g=jnp.zeros(4))
  with pytest.raises(ValueError, match=r"init_g: the reference-exact E-step"):
    sinkhorn_pseudo_labels(
        jnp.asarray(ln_p), jnp.asarray(prior), fixed_iterations=True, init_g=jnp.zeros(5)
    )


def test_kernel_mode_sinkhorn_from_a_start_meets_the_marginals():
  # Sinkhorn alone (no L-BFGS) from the previous E-step's g: every iteration in kernel mode,
  # and the error it reports is the exact plan's, as numpy measures it for the g returned.
  ln_p, prior = peaked_many_class_problem()
  _, first = sinkhorn_pseudo_labels(
      jnp.asarray(ln_p), jnp.asarray(prior), 25.0, adaptive_momentum=False
  )
  drifted = ln_p + 0.05 * np.random.default_rng(7).standard_normal(ln_p.shape).astype(np.float32)
  solve = lambda init_g: sinkhorn_pseudo_labels(
      jnp.asarray(drifted),
      jnp.asarray(prior),
      25.0,
      adaptive_momentum=False,
      semi_dual_steps=0,
      init_g=jnp.asarray(init_g),
  )
  labels, stats = solve(first.g)
  assert bool(stats.converged) and 0 < int(stats.kernel_iterations) == int(stats.iterations)
  error = numpy_column_error(drifted, prior, 25.0, stats.g)  # float64 sums, float32 solve
  assert error < 1.1e-4 and abs(error - float(stats.marginal_error)) < 5e-6
  np.testing.assert_array_equal(labels, np.argmax(drifted + np.asarray(stats.g)[None], axis=1))
  # A column without mass in float32 (its g far below the rest) cannot be scaled in kernel
  # mode: the log domain takes the first segment, kernel mode the rest.
  far = np.asarray(first.g).copy()
  far[3] -= 1_000.0
  _, rescued = solve(far)
  assert bool(rescued.converged)
  assert 0 < int(rescued.kernel_iterations) < int(rescued.iterations)
  assert numpy_column_error(drifted, prior, 25.0, rescued.g) < 1.1e-4
