"""The VIBE heads: von Mises-Fisher prototypes for p(l|x) and p(y|l[,x]), and ln P.

Notation (VIBE_SPEC.md section 1): v = backbone features, l = latent clean label,
y = given (possibly poisoned) label.

  ln p(l | x)    = log_softmax_l(kappa <v/|v|, mu_z[l]/|mu_z[l]|> + log_softmax(c pi)[l])
  ln p(y | l)    = log_softmax_y(nu <mu_y[y]/|mu_y[y]|, mu_z[l]/|mu_z[l]|>)        variant A
  ln p(y | l, x) = log_softmax_y(nu <mu_y[y]/|mu_y[y]|, mu_z[l]/|mu_z[l]| + v>)   variant F
  (feature_likelihood 'normalized': v/|v| in place of v in the line above)
  ln P[i, l]     = ln p(l | x_i) + ln p(y_i | l [, x_i])
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vibe_jax.normalize import l2_normalize

LIKELIHOODS = ("a", "f")  # A: input-agnostic p(y|l); F: x-conditioned p(y|l, x).
# The feature v in F's h = mu_z/|mu_z| + v: 'reference' un-normalised, as the reference
# writes it; 'normalized' v/|v|. They agree on L2-normalised (frozen) features. On a
# fine-tuned backbone's features a large |v| lets argmax_y <mu_y, v> dominate the normaliser
# over y, which keeps poisoned samples at their given label; v/|v| avoids that but, trained
# end to end, let the backdoor in (measured in docs/likelihood.md).
FEATURE_LIKELIHOODS = ("reference", "normalized")
_HIGHEST = jax.lax.Precision.HIGHEST  # keep float32 on TPU/GPU (no bf16/TF32 passes)


class VibeHead(nnx.Module):
  """Prototypes mu_z (C, D), label prototypes mu_y (C, D) and prior logits pi (C)."""

  def __init__(
      self,
      num_classes: int,
      feature_dim: int,
      *,
      kappa: float,
      nu: float,
      prior_temperature: float,
      likelihood: str,
      rngs: nnx.Rngs,
      feature_likelihood: str = "reference",
      mu_z: jax.Array | None = None,
      mu_y: jax.Array | None = None,
  ):
    if likelihood not in LIKELIHOODS:
      raise ValueError(f"likelihood {likelihood!r} is not one of {LIKELIHOODS}.")
    if feature_likelihood not in FEATURE_LIKELIHOODS:
      raise ValueError(
          f"feature_likelihood {feature_likelihood!r} is not one of {FEATURE_LIKELIHOODS}."
      )
    init = lambda given: (
        jnp.array(given, jnp.float32, copy=True)
        if given is not None
        else jax.random.normal(rngs.params(), (num_classes, feature_dim))
    )
    self.mu_z = nnx.Param(init(mu_z))
    self.mu_y = nnx.Param(init(mu_y))
    self.prior_logits = nnx.Param(jax.random.normal(rngs.params(), (num_classes,)))
    self.kappa, self.nu = float(kappa), float(nu)
    self.prior_temperature = float(prior_temperature)
    self.likelihood = likelihood
    self.feature_likelihood = feature_likelihood

  def ln_prior(self) -> jax.Array:
    """ln softmax(c pi): the class prior, also the Sinkhorn column marginal."""
    return jax.nn.log_softmax(self.prior_temperature * self.prior_logits[...])

  def ln_p_label_given_x(self, features: jax.Array) -> jax.Array:
    """(B, C) ln p(l | x); its argmax is the defended prediction."""
    cosine = jnp.matmul(l2_normalize(features), l2_normalize(self.mu_z[...]).T, precision=_HIGHEST)
    return jax.nn.log_softmax(self.kappa * cosine + self.ln_prior(), axis=-1)

  def ln_p_given_label_given_label(self) -> jax.Array:
    """(C_y, C_l) ln p(y | l) of variant A, normalised over y (axis 0)."""
    logits = self.nu * jnp.matmul(
        l2_normalize(self.mu_y[...]), l2_normalize(self.mu_z[...]).T, precision=_HIGHEST
    )
    return jax.nn.log_softmax(logits, axis=0)

  def ln_p_given_label(self, features: jax.Array, given_labels: jax.Array) -> jax.Array:
    """(B, C_l) ln p(y_i | l [, x_i]) at each sample's given label y_i."""
    mu_y = l2_normalize(self.mu_y[...])
    label_logits = self.nu * jnp.matmul(
        mu_y, l2_normalize(self.mu_z[...]).T, precision=_HIGHEST
    )  # (C_y, C_l)
    if self.likelihood == "a":
      return jax.nn.log_softmax(label_logits, axis=0)[given_labels]
    # Variant F: logits[i, y, l] = label_logits[y, l] + feature_logits[i, y], with
    # h = mu_z/|mu_z| + v (v un-normalised, or v/|v|). The log-normaliser over y is a
    # log-matmul-exp, so memory stays O(B C) instead of O(B C^2).
    if self.feature_likelihood == "normalized":
      features = l2_normalize(features)
    feature_logits = self.nu * jnp.matmul(features, mu_y.T, precision=_HIGHEST)  # (B, C_y)
    feature_max = jnp.max(feature_logits, axis=1, keepdims=True)
    label_max = jnp.max(label_logits, axis=0, keepdims=True)
    log_normalizer = (
        feature_max
        + label_max
        + jnp.log(
            jnp.matmul(
                jnp.exp(feature_logits - feature_max),
                jnp.exp(label_logits - label_max),
                precision=_HIGHEST,
            )
        )
    )
    given_logits = label_logits[given_labels] + jnp.take_along_axis(
        feature_logits, given_labels[:, None], axis=1
    )
    return given_logits - log_normalizer

  def ln_joint(
      self,
      features: jax.Array,
      given_labels: jax.Array,
      uniform_likelihood: bool | jax.Array = False,
  ) -> jax.Array:
    """(B, C) ln P[i, l] = ln p(l|x_i) + ln p(y_i|l[,x_i]).

    With `uniform_likelihood` the second term is -ln C, as the reference does at its first
    E-step, so the first pseudo-labels come from the features alone.
    """
    ln_p_x = self.ln_p_label_given_x(features)
    ln_p_y = self.ln_p_given_label(features, given_labels)
    uniform = jnp.full_like(ln_p_y, -jnp.log(ln_p_y.shape[-1]))
    return ln_p_x + jnp.where(uniform_likelihood, uniform, ln_p_y)


def class_centroids(features: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """(C, D) mean feature per label: the reference's prototype initialisation.

  A label no sample carries gets a fixed random direction instead of the zero vector,
  whose normalisation has no gradient (NaN) and would stall training.
  """
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
  sums = jnp.matmul(one_hot.T, features, precision=_HIGHEST)
  counts = one_hot.sum(0)[:, None]
  fallback = jax.random.normal(jax.random.PRNGKey(0), sums.shape, features.dtype)
  return jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), fallback)


class VibeModel(nnx.Module):
  """A backbone (None: inputs already are frozen features) followed by the VIBE head.

  With a backbone, inputs are preprocessed image batches (vibe_jax.data.transforms). The
  backbone is kept in train mode; feature passes for the E-step and evaluation use an
  eval-mode view (BatchNorm running statistics).
  """

  def __init__(self, head: VibeHead, backbone: nnx.Module | None = None):
    self.backbone = backbone
    self.head = head

  def features(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    """Backbone features; BatchNorm in train mode only for the M-step."""
    if self.backbone is None:
      return inputs
    backbone = self.backbone if train else nnx.view(self.backbone, use_running_average=True)
    return backbone(inputs)
