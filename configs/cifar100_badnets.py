"""CIFAR-100, badnets, 10 % poisoning, target 0 (kappa = nu = 20).

  python main.py --config configs/cifar100_badnets.py:ss_f --config.backbone.checkpoint=CKPT --workdir runs/cifar100_badnets

The default trigger is the reference's resources/cifar_1.png exactly (a 2x2 patch at row 4,
col 4; the file gives the same pixels with row=0, col=0, docs/triggers.md).

The variant (ss_a, ss_f, fm_a, fm_f; a / f on raw pixels) is the argument after the colon
(add `,runlocal` for the tiny smoke schedule);
see configs/common.paper_config for what each needs.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("cifar100", "badnets", arg)
