"""ln P against a numpy transcription of VIBE_SPEC.md section 1 (both variants, and F with
the feature as is or L2-normalised)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import log_softmax

from vibe_jax.models.vibe import VibeHead, class_centroids


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def numpy_ln_joint(v, y, mu_z, mu_y, pi, kappa, nu, c, variant, feature_likelihood):
  """Direct formulas, with the full (B, C_y, C_l) tensor for variant F."""
  ln_p_l_x = log_softmax(kappa * unit(v) @ unit(mu_z).T + log_softmax(c * pi), axis=1)
  if variant == "a":
    logits = nu * unit(mu_y) @ unit(mu_z).T  # [y, l]
    ln_p_y_l = log_softmax(logits, axis=0)[y]  # softmax over y, then pick y_i
  else:
    v_in_h = v if feature_likelihood == "reference" else unit(v)
    h = unit(mu_z)[None, :, :] + v_in_h[:, None, :]  # (B, C_l, D)
    logits = nu * np.einsum("yd,bld->byl", unit(mu_y), h)  # (B, C_y, C_l)
    ln_p_y_l = log_softmax(logits, axis=1)[np.arange(len(y)), y]  # over y
  return ln_p_l_x + ln_p_y_l


@pytest.mark.parametrize(
    "variant,feature_likelihood", [("a", "reference"), ("f", "reference"), ("f", "normalized")]
)
def test_ln_joint_matches_formulas(variant, feature_likelihood):
  rng = np.random.default_rng(0)
  batch, classes, dim = 7, 5, 6
  v = rng.normal(size=(batch, dim)) * 3.0  # |v| about 7: the two F forms differ
  y = rng.integers(0, classes, size=batch)
  mu_z, mu_y = rng.normal(size=(classes, dim)), rng.normal(size=(classes, dim))
  head = VibeHead(
      classes,
      dim,
      kappa=10.0,
      nu=20.0,
      prior_temperature=0.02,
      likelihood=variant,
      rngs=nnx.Rngs(0),
      feature_likelihood=feature_likelihood,
      mu_z=mu_z,
      mu_y=mu_y,
  )
  pi = np.asarray(head.prior_logits[...])
  expected = numpy_ln_joint(v, y, mu_z, mu_y, pi, 10.0, 20.0, 0.02, variant, feature_likelihood)
  actual = head.ln_joint(jnp.asarray(v, jnp.float32), jnp.asarray(y))
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-4, atol=1e-4)


def test_uniform_likelihood_at_first_estep():
  rng = np.random.default_rng(1)
  head = VibeHead(
      4, 3, kappa=10.0, nu=10.0, prior_temperature=0.02, likelihood="f", rngs=nnx.Rngs(1)
  )
  v = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 4, size=5))
  expected = np.asarray(head.ln_p_label_given_x(v)) - np.log(4)
  np.testing.assert_allclose(np.asarray(head.ln_joint(v, y, True)), expected, atol=1e-6)


def test_p_y_given_l_normalises_over_y():
  head = VibeHead(
      6, 4, kappa=10.0, nu=10.0, prior_temperature=0.02, likelihood="a", rngs=nnx.Rngs(2)
  )
  table = np.exp(np.asarray(head.ln_p_given_label_given_label()))
  np.testing.assert_allclose(table.sum(axis=0), 1.0, atol=1e-5)


def test_class_centroids():
  features = jnp.asarray([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
  centroids = np.asarray(class_centroids(features, jnp.asarray([0, 0, 2]), 3))
  np.testing.assert_allclose(centroids[[0, 2]], [[2, 0], [0, 2]])
  assert np.linalg.norm(centroids[1]) > 0.1  # no sample of class 1: a random direction


def test_empty_class_keeps_gradients_finite():
  features, labels = jnp.asarray([[1.0, 0.0], [0.0, 2.0]]), jnp.asarray([0, 2])
  centroids = class_centroids(features, labels, 3)
  head = VibeHead(
      3,
      2,
      kappa=10.0,
      nu=10.0,
      prior_temperature=0.02,
      likelihood="a",
      rngs=nnx.Rngs(0),
      mu_z=centroids,
      mu_y=centroids,
  )
  graphdef, params = nnx.split(head, nnx.Param)
  grads = jax.grad(lambda p: nnx.merge(graphdef, p).ln_joint(features, labels).sum())(params)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_head_gradients_are_finite():
  head = VibeHead(
      3, 4, kappa=10.0, nu=10.0, prior_temperature=0.02, likelihood="f", rngs=nnx.Rngs(3)
  )
  graphdef, params = nnx.split(head, nnx.Param)
  v, y = jnp.ones((2, 4)), jnp.asarray([0, 2])
  grads = jax.grad(lambda p: nnx.merge(graphdef, p).ln_joint(v, y).sum())(params)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
