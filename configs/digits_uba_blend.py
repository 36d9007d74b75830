"""Digits (embedded, 32x32 RGB), UBA-blend: one uniform-noise image per class blended in,
every class a target (many-to-many), 10 % of the training set; frozen pixel features.

  python main.py --config configs/digits_uba_blend.py --workdir /tmp/digits_uba_blend
  python main.py --config configs/digits_uba_blend.py:f --workdir /tmp/digits_uba_blend_f

Digits-specific change: alpha 0.15 instead of the default 0.1: with ten noise triggers
and ~13 poisoned images per class, alpha 0.1 leaves the undefended head at ~72 % ASR,
0.15 gives ~83 %.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  config = common.digits_config(arg)
  common.set_attack(config, "uba_blend", alpha=0.15)
  return config
