"""Digits (embedded, 32x32 RGB), Adaptive-Patch (Qi et al. 2023), target 0; frozen pixel
features. Training: one of four random-colour corner patches at opacity 0.5 on poison and
cover samples; test: all four at opacity 1. 1 % poison + 1 % cover samples, VIBE's
reference rates (no digits-specific change).

  python main.py --config configs/digits_adaptive_patch.py --workdir /tmp/digits_adaptive_patch
  python main.py --config configs/digits_adaptive_patch.py:f --workdir /tmp/digits_ap_f   # F
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  config = common.digits_config(arg)
  common.set_attack(config, "adaptive_patch", cover_rate=0.01)
  config.attack.rate = 0.01
  return config
