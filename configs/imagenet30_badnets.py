"""ImageNet-30 (image folder with train/ and test/), badnets, 10 % poisoning, target 0.

  python main.py --config configs/imagenet30_badnets.py:ss_f --config.backbone.checkpoint=CKPT --workdir runs/imagenet30_badnets

The variant (ss_a, ss_f, fm_a, fm_f; a / f on raw pixels) is the argument after the colon
(add `,runlocal` for the tiny smoke schedule);
see configs/common.paper_config for what each needs.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("imagenet30", "badnets", arg)
