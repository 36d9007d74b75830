"""ImageNet-1k, universal backdoor (one blended pattern per class, many-to-many), 8,000 poisoned images.

  python main.py --config configs/imagenet1k_uba_blend.py:f --config.backbone.checkpoint=R50_CKPT --workdir runs/imagenet1k_uba_blend

As the reference runs ImageNet-1k (model/imagenet1k_*_vmf.yaml): frozen All4One ResNet-50
features (backbone.checkpoint), the Leiden filter and the SS schedule for a / f; ss_* fine-tune
it, fm_* run the FM schedule; details in configs/common.paper_config. `,runlocal`: smoke run.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("imagenet1k", "uba_blend", arg, num_poisoned=8000)
