"""CIFAR-10, Adaptive-Patch (Qi et al. 2023), 1 % poison + 1 % cover samples, target 0.

  python main.py --config configs/cifar10_adap_patch.py:ss_f --config.backbone.checkpoint=CKPT --workdir runs/cifar10_adap_patch

The variant (ss_a, ss_f, fm_a, fm_f; a / f on raw pixels) is the argument after the colon
(add `,runlocal` for the tiny smoke schedule);
see configs/common.paper_config for what each needs.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("cifar10", "adaptive_patch", arg, rate=0.01)
