"""VIBE variants by name (config field `variant`): which likelihood, what is trained."""

from __future__ import annotations

import dataclasses

from vibe_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class Variant:
  """likelihood 'a': p(y|l) input-agnostic; 'f': p(y|l, x) x-conditioned.

  finetune_backbone: the M-step trains the backbone (config field backbone.checkpoint) on
  augmented images; otherwise frozen features (features.extractor) are cached and used.
  leiden_filter: the Leiden poison-cluster filter runs before EM (config field filter.leiden
  'auto' follows this; 'on' / 'off' override it).
  """

  likelihood: str
  finetune_backbone: bool = False
  train_mu_y: bool = True
  leiden_filter: bool = False
  description: str = ""


VARIANTS: Registry[Variant] = Registry("variant")
VARIANTS.register("a")(Variant("a", description="frozen features, p(y|l)"))
VARIANTS.register("f")(Variant("f", description="frozen features, p(y|l,x)"))
VARIANTS.register("ss_a")(
    Variant(
        "a",
        finetune_backbone=True,
        leiden_filter=True,
        description="VIBE-SS-A: fine-tuned SSL backbone, p(y|l)",
    )
)
VARIANTS.register("ss_f")(
    Variant(
        "f",
        finetune_backbone=True,
        leiden_filter=True,
        description="VIBE-SS-F: fine-tuned SSL backbone, p(y|l,x)",
    )
)
VARIANTS.register("fm_a")(
    Variant("a", train_mu_y=False, description="VIBE-FM-A: frozen foundation model, mu_y frozen")
)
VARIANTS.register("fm_f")(Variant("f", description="VIBE-FM-F: frozen foundation model"))


def get_variant(name: str) -> Variant:
  return VARIANTS.get(name, field="variant")
