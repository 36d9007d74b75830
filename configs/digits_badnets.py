"""Digits (embedded, 32x32 RGB), badnets, 10 % poisoning, target 0; frozen pixel features.

  python main.py --config configs/digits_badnets.py --workdir /tmp/digits_badnets
  python main.py --config configs/digits_badnets.py:f --workdir /tmp/digits_badnets_f   # variant F
  python main.py --config configs/digits_badnets.py:ssl --mode pretrain --workdir /tmp/digits_ssl
  python main.py --config configs/digits_badnets.py:ss_f \
      --config.backbone.checkpoint=/tmp/digits_ssl/backbone --workdir /tmp/digits_ss_f

`:ssl` is the SimCLR pretraining config (`--mode pretrain`): the same poisoned training set,
a small backbone, about five minutes on a 2-core CPU; it writes /tmp/digits_ssl/backbone,
which ss_a / ss_f fine-tune (common.set_digits_ss) and fm_a / fm_f read with
--config.features.extractor=backbone. docs/ssl.md has the measured results.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  config = common.digits_config(arg)
  common.set_attack(config, "badnets")
  return config
