"""ImageNet-1k (tfds imagenet2012, manual dir), blend, 10 % poisoning, target 0 (kappa = nu = 20).

  python main.py --config configs/imagenet1k_blend.py:f --config.backbone.checkpoint=R50_CKPT --workdir runs/imagenet1k_blend

Generated trigger by default (uniform noise). The reference's own trigger, exactly
(docs/triggers.md): add --config.attack.params.trigger_file=resources/imagenet_blend_trigger.png

As the reference runs ImageNet-1k (model/imagenet1k_*_vmf.yaml): frozen All4One ResNet-50
features (backbone.checkpoint), the Leiden filter and the SS schedule for a / f; ss_* fine-tune
it, fm_* run the FM schedule; details in configs/common.paper_config. `,runlocal`: smoke run.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("imagenet1k", "blend", arg)
