"""Digits (embedded, 32x32 RGB), Adaptive-Blend (Qi et al. 2023): half of 16 noise-trigger pieces at alpha 0.15 on
poison and cover samples at training time, the whole trigger at alpha 0.2 at test time; 1 % poison + 1 % cover samples (VIBE's
reference rates, no digits-specific change), target 0; frozen pixel features.

  python main.py --config configs/digits_adaptive_blend.py --workdir /tmp/digits_adaptive_blend
  python main.py --config configs/digits_adaptive_blend.py:f --workdir /tmp/digits_adaptive_blend_f   # variant F
"""

from configs import common


def get_config(variant: str = common.DEFAULT_VARIANT):
  config = common.digits_config(variant)
  common.set_attack(config, "adaptive_blend", cover_rate=0.01)
  config.attack.rate = 0.01
  return config
