"""Digits (embedded, 32x32 RGB), badnets, 10 % poisoning, target 0; frozen pixel features.

  python main.py --config configs/digits_badnets.py --workdir /tmp/digits_badnets
  python main.py --config configs/digits_badnets.py:f --workdir /tmp/digits_badnets_f   # variant F
"""

from configs import common


def get_config(variant: str = common.DEFAULT_VARIANT):
  config = common.digits_config(variant)
  common.set_attack(config, "badnets")
  return config
