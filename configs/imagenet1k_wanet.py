"""ImageNet-1k (tfds imagenet2012, manual dir), wanet, 10 % poisoning, target 0 (kappa = nu = 20).

  python main.py --config configs/imagenet1k_wanet.py:f --config.backbone.checkpoint=R50_CKPT --workdir runs/imagenet1k_wanet

Control grid k = 224 (the reference's imagenet_k). The reference draws its warp afresh and
unseeded for the training, un-augmented training and test sets; vibe_jax draws one from
attack.seed, deliberately (docs/triggers.md).

As the reference runs ImageNet-1k (model/imagenet1k_*_vmf.yaml): frozen All4One ResNet-50
features (backbone.checkpoint), the Leiden filter and the SS schedule for a / f; ss_* fine-tune
it, fm_* run the FM schedule; details in configs/common.paper_config. `,runlocal`: smoke run.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("imagenet1k", "wanet", arg, grid_size=224)
