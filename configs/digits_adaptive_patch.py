"""Digits (embedded, 32x32 RGB), Adaptive-Patch (Qi et al. 2023): one of four random-colour corner patches at
opacity 0.5 on poison and cover samples at training time, all four at opacity 1 at test; 1 % poison + 1 % cover samples (VIBE's
reference rates, no digits-specific change), target 0; frozen pixel features.

  python main.py --config configs/digits_adaptive_patch.py --workdir /tmp/digits_adaptive_patch
  python main.py --config configs/digits_adaptive_patch.py:f --workdir /tmp/digits_adaptive_patch_f   # variant F
"""

from configs import common


def get_config(variant: str = common.DEFAULT_VARIANT):
  config = common.digits_config(variant)
  common.set_attack(config, "adaptive_patch", cover_rate=0.01)
  config.attack.rate = 0.01
  return config
