"""Digits (embedded, 32x32 RGB), blend, 10 % poisoning, target 0; frozen pixel features.

python main.py --config configs/digits_blend.py --workdir /tmp/digits_blend
python main.py --config configs/digits_blend.py:f --workdir /tmp/digits_blend_f   # variant F
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  config = common.digits_config(arg)
  common.set_attack(config, "blend")
  return config
