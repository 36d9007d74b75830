"""The variants (vibe_jax/variants.py)."""

from vibe_jax.variants import get_variant


def test_fm_a_keeps_mu_y_frozen():
  assert not get_variant("fm_a").train_mu_y and get_variant("fm_f").train_mu_y
