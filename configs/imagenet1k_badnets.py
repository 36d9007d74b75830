"""ImageNet-1k (tfds imagenet2012, manual dir), badnets, 1 % poisoning, target 0 (kappa = nu = 20).

  python main.py --config configs/imagenet1k_badnets.py:f --config.backbone.checkpoint=R50_CKPT --workdir runs/imagenet1k_badnets

Generated trigger by default (the reference's 2x2 CIFAR patch at row 4, col 4). The
reference's own trigger, exactly (docs/triggers.md): add
  --config.attack.params.trigger_file=resources/apple-logo-imagenet.png \
  --config.attack.params.row=0 --config.attack.params.col=0

As the reference runs ImageNet-1k (model/imagenet1k_*_vmf.yaml): frozen All4One ResNet-50
features (backbone.checkpoint), the Leiden filter and the SS schedule for a / f; ss_* fine-tune
it, fm_* run the FM schedule; details in configs/common.paper_config. `,runlocal`: smoke run.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("imagenet1k", "badnets", arg, rate=0.01)
