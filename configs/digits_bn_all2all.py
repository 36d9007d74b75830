"""Digits, BadNets all-to-all (label -> (y + 1) mod C), 10 % poisoning; frozen pixel features.

python main.py --config configs/digits_bn_all2all.py --workdir /tmp/digits_bn_all2all
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  config = common.digits_config(arg)
  common.set_attack(config, "badnets")
  config.attack.label_mode = "all_to_all"
  return config
