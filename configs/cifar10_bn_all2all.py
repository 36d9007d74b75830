"""CIFAR-10, BadNets all-to-all (label -> (y + 1) mod C), 10 % poisoning.

  python main.py --config configs/cifar10_bn_all2all.py:ss_f --config.backbone.checkpoint=CKPT --workdir runs/cifar10_bn_all2all

The default trigger is the reference's resources/cifar_1.png exactly (docs/triggers.md).

The variant (ss_a, ss_f, fm_a, fm_f; a / f on raw pixels) is the argument after the colon
(add `,runlocal` for the tiny smoke schedule);
see configs/common.paper_config for what each needs.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("cifar10", "badnets", arg, label_mode="all_to_all")
