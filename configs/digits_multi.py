"""Digits (embedded, 32x32 RGB), three attacks at once on disjoint samples: BadNets -> 0,
Blend -> 1, WaNet -> 2, each 10 % of the training set; frozen pixel features. results.json
reports asr/<name> and ra/<name> per attack next to the pooled ASR/RA.

  python main.py --config configs/digits_multi.py --workdir /tmp/digits_multi
  python main.py --config configs/digits_multi.py:f --workdir /tmp/digits_multi_f   # variant F
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  config = common.digits_config(arg)
  common.set_attack(config, "multi", attacks="badnets,blend,wanet", targets="0,1,2")
  return config
