"""Digits (embedded, 32x32 RGB), wanet, 10 % poisoning, target 0; frozen pixel features.

python main.py --config configs/digits_wanet.py --workdir /tmp/digits_wanet
python main.py --config configs/digits_wanet.py:f --workdir /tmp/digits_wanet_f   # variant F
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  config = common.digits_config(arg)
  common.set_attack(config, "wanet")
  return config
