"""SimCLR (vibe_jax/ssl/simclr.py): NT-Xent against numpy, the training loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers.tiny import TinyBackbone, tiny_ssl
from vibe_jax.models import build_backbone
from vibe_jax.ssl import augment, simclr


def _nt_xent_numpy(z1, z2, temperature):
  """SimCLR's loss written out per anchor, float64."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n, half = len(z), len(z) // 2
  losses = []
  for i in range(n):
    positive = (i + half) % n
    others = [j for j in range(n) if j != i]
    logits = np.array([z[i] @ z[j] for j in others]) / temperature
    losses.append(-(z[i] @ z[positive] / temperature - np.log(np.exp(logits).sum())))
  return np.mean(losses)


@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_nt_xent_matches_numpy(temperature):
  rng = np.random.default_rng(2)
  z1, z2 = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
  got = simclr.nt_xent_loss(jnp.asarray(z1), jnp.asarray(z2), temperature)
  np.testing.assert_allclose(float(got), _nt_xent_numpy(z1, z2, temperature), rtol=1e-5)
  grads = jax.grad(lambda a: simclr.nt_xent_loss(a, jnp.asarray(z2), temperature))(
      jnp.asarray(z1, jnp.float32)
  )
  assert np.isfinite(grads).all()


@pytest.mark.slow
def test_loss_decreases_and_host_and_compiled_loops_agree():
  # 32 images, 16 x 16, width 4: the views of each image must be told apart from the rest.
  data = np.random.default_rng(4).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
  # No colour jitter: its four branches under vmap make up most of the step's compile time.
  config = augment.AugmentConfig(crop_scale=(0.5, 1.0), jitter_prob=0.0)

  def run(host_loop, steps):
    model = simclr.SimCLRModel(
        build_backbone("resnet18", "cifar", 4, seed=0), 32, 16, rngs=nnx.Rngs(1)
    )
    return simclr.fit(
        model,
        data,
        tiny_ssl(steps),
        augment_config=config,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        seed=0,
        host_loop=host_loop,
    )

  _, history = run(host_loop=True, steps=30)
  losses = [record["loss"] for record in history]
  assert losses[-1] < losses[0] - 0.2, losses
  # The same steps as one fori_loop per chunk (the accelerator path): the same run, up to
  # XLA:CPU using other convolution kernels inside a loop, whose rounding differences grow
  # over the 30 steps (0.26 % by step 25 at the tests' LLVM level 1; a different batch or
  # augmentation would move a chunk's loss by several percent).
  _, compiled = run(host_loop=False, steps=30)
  np.testing.assert_allclose([r["loss"] for r in compiled], losses, rtol=5e-3)


def test_nan_loss_names_the_learning_rate_field():
  data = np.random.default_rng(5).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
  model = simclr.SimCLRModel(TinyBackbone(nnx.Rngs(0)), 8, 8, rngs=nnx.Rngs(1))
  with pytest.raises(FloatingPointError, match="ssl.lr"):
    simclr.fit(
        model,
        data,
        tiny_ssl(2, lr=float("nan"), log_every=2),
        augment_config=augment.AugmentConfig(jitter_prob=0.0),  # jitter: most of the compile
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        seed=0,
    )
