"""Digits (embedded, 32x32 RGB), Adaptive-Blend (Qi et al. 2023), target 0; frozen pixel
features. Training: half of the 16 pieces of a noise trigger blended at alpha 0.15 into
poison and cover samples; test: the whole trigger at alpha 0.2. 1 % poison + 1 % cover
samples, VIBE's reference rates (no digits-specific change).

  python main.py --config configs/digits_adaptive_blend.py --workdir /tmp/digits_adaptive_blend
  python main.py --config configs/digits_adaptive_blend.py:f --workdir /tmp/digits_ab_f   # F
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  config = common.digits_config(arg)
  common.set_attack(config, "adaptive_blend", cover_rate=0.01)
  config.attack.rate = 0.01
  return config
