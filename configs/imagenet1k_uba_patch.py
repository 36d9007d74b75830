"""ImageNet-1k, universal backdoor (one patch code per class, many-to-many), 2,000 poisoned images.

  python main.py --config configs/imagenet1k_uba_patch.py:ss_f --config.backbone.checkpoint=CKPT --workdir runs/imagenet1k_uba_patch

The variant (ss_a, ss_f, fm_a, fm_f; a / f on raw pixels) is the argument after the colon
(add `,runlocal` for the tiny smoke schedule);
see configs/common.paper_config for what each needs.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("imagenet1k", "uba_patch", arg, num_poisoned=2000)
