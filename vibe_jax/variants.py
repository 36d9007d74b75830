"""VIBE variants by name (config field `variant`): which likelihood, what is trained."""

from __future__ import annotations

import dataclasses

from vibe_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class Variant:
  """likelihood 'a': p(y|l) input-agnostic; 'f': p(y|l, x) x-conditioned."""
  likelihood: str
  train_mu_y: bool = True
  description: str = ""


VARIANTS: Registry[Variant] = Registry("variant")
VARIANTS.register("a")(Variant("a", description="frozen features, p(y|l)"))
VARIANTS.register("f")(Variant("f", description="frozen features, p(y|l,x)"))


def get_variant(name: str) -> Variant:
  return VARIANTS.get(name, field="variant")
