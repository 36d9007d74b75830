"""vibe_jax: VIBE backdoor defense (variational EM with Sinkhorn pseudo-labels) in JAX/Flax."""
