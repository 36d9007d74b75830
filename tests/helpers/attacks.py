"""Random images and attacks built the way the attack tests build them."""

from __future__ import annotations

import numpy as np

from vibe_jax.data.attacks import make_attack

SHAPE = (32, 32, 3)
# The attacks beyond BadNets, Blend and WaNet.
NEW_ATTACKS = (
    "ftrojan",
    "adaptive_blend",
    "adaptive_patch",
    "label_consistent",
    "uba_patch",
    "uba_blend",
    "multi",
)
# label_consistent's surrogate and PGD, cut to what a test needs.
FAST_LC = dict(surrogate_steps=40, surrogate_hidden=32, pgd_steps=5, batch_size=64)


def data(n=200, classes=10, seed=0, low=0, high=256, shape=SHAPE):
  """(images, labels): uint8 noise in [low, high), labels 0, 1, ..., classes - 1, 0, ..."""
  rng = np.random.default_rng(seed)
  images = rng.integers(low, high, size=(n, *shape), dtype=np.uint8)
  return images, (np.arange(n) % classes).astype(np.int32)


def attack(name, **kw):
  """make_attack for 10 classes of SHAPE (or `shape`), target 0, rate 0.1; `target`,
  `rate`, `label_mode` and `seed` go to make_attack, the rest are the attack's params."""
  common = dict(num_classes=10, image_shape=kw.pop("shape", SHAPE), target=0, rate=0.1)
  common.update({k: kw.pop(k) for k in list(kw) if k in ("target", "rate", "label_mode", "seed")})
  if name == "label_consistent":
    kw = {**FAST_LC, **kw}
  return make_attack(name, params=kw, **common)
