"""CIFAR-10, label-consistent (PGD eps 16/255 + 4-corner pattern), 25 % of the target class.

  python main.py --config configs/cifar10_lc.py:ss_f --config.backbone.checkpoint=CKPT --workdir runs/cifar10_lc

The variant (ss_a, ss_f, fm_a, fm_f; a / f on raw pixels) is the argument after the colon
(add `,runlocal` for the tiny smoke schedule);
see configs/common.paper_config for what each needs.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("cifar10", "label_consistent", arg, rate=0.25)
