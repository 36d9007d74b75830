"""The Sinkhorn E-step against an independent numpy log-domain Sinkhorn."""

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
      jnp.asarray(ln_p), jnp.asarray(prior), 25.0, adaptive_momentum=False, threshold=1e-5
  )
  fast, _ = sinkhorn_pseudo_labels(jnp.asarray(ln_p), jnp.asarray(prior), 25.0, threshold=1e-5)
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
      jnp.asarray(ln_p), jnp.asarray(prior), 25.0, threshold=3e-3
  )
  plain, plain_stats = sinkhorn_pseudo_labels(
      jnp.asarray(ln_p), jnp.asarray(prior), 25.0, threshold=3e-3, adaptive_momentum=False
  )
  assert bool(stats.converged) and 0.0 <= float(stats.marginal_error) < 3e-3
  # The accelerated attempt's iterations come on top of the plain solve's.
  assert int(plain_stats.iterations) < int(stats.iterations) <= int(plain_stats.iterations) + 100
  np.testing.assert_array_equal(np.asarray(labels), np.asarray(plain))
  plan = numpy_sinkhorn_plan(ln_p.astype(np.float64), prior.astype(np.float64), 25.0, 3000)
  assert np.mean(np.asarray(labels) == plan.argmax(1)) >= 0.99
