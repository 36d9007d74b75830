"""CIFAR-100, blend, 10 % poisoning, target 0 (kappa = nu = 20).

  python main.py --config configs/cifar100_blend.py:ss_f --config.backbone.checkpoint=CKPT --workdir runs/cifar100_blend

Generated trigger by default (uniform noise). The reference's own trigger, exactly
(docs/triggers.md): add --config.attack.params.trigger_file=resources/hello_kitty.png

The variant (ss_a, ss_f, fm_a, fm_f; a / f on raw pixels) is the argument after the colon
(add `,runlocal` for the tiny smoke schedule);
see configs/common.paper_config for what each needs.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("cifar100", "blend", arg)
