"""vibe_jax: VIBE backdoor defense (variational EM with Sinkhorn pseudo-labels) in JAX/Flax.

`vibe_jax.defend(images, labels, config)` defends a data owner's images from a notebook
(vibe_jax/defense.py); imported on first use, so that `import vibe_jax` stays light.
"""

_DEFENSE_API = ("DefenseResult", "defend", "load_predictor")


def __getattr__(name: str):
  if name in _DEFENSE_API:
    from vibe_jax import defense  # pylint: disable=import-outside-toplevel

    return getattr(defense, name)
  raise AttributeError(f"module 'vibe_jax' has no attribute {name!r}")
