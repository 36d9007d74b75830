"""Digits (embedded, 32x32 RGB), badnets, 10 % poisoning, target 0; frozen pixel features.

  python main.py --config configs/digits_badnets.py --workdir /tmp/digits_badnets
  python main.py --config configs/digits_badnets.py:f --workdir /tmp/digits_badnets_f   # variant F
  python main.py --config configs/digits_badnets.py --mode pretrain --workdir /tmp/digits_ssl
  python main.py --config configs/digits_badnets.py:ss_f \
      --config.backbone.checkpoint=/tmp/digits_ssl/backbone --workdir /tmp/digits_ss_f

`--mode pretrain` trains a small SimCLR backbone on the same poisoned training set (the
config's ssl section, common.digits_config), about five minutes on a 2-core CPU; it writes
/tmp/digits_ssl/backbone, which ss_a / ss_f fine-tune and fm_a / fm_f read with
--config.features.extractor=backbone. docs/ssl.md has the measured results. Append
`,runlocal` to the variant (`:f,runlocal`) for the tiny smoke schedule.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  config = common.digits_config(arg)
  common.set_attack(config, "badnets")
  return config
