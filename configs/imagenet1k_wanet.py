"""ImageNet-1k (tfds imagenet2012, manual dir), wanet, 10 % poisoning, target 0 (kappa = nu = 20).

  python main.py --config configs/imagenet1k_wanet.py:f --config.backbone.checkpoint=R50_CKPT --workdir runs/imagenet1k_wanet

Control grid k = 224 (the reference's imagenet_k). The reference draws its warp afresh and
unseeded for the training, un-augmented training and test sets; vibe_jax draws one from
attack.seed, deliberately (docs/triggers.md).

The reference's ImageNet-1k run (model/imagenet1k_*_vmf.yaml): a frozen All4One ResNet-50
(backbone.checkpoint: `--mode pretrain` with this config's ssl section, or a solo-learn
checkpoint converted by convert_torch_ckpt.py --arch resnet50 --stem imagenet), its features
cached (features.extractor='backbone'), the Leiden filter on, and the SS schedule (30,000
iterations, E-step every 1,000, batch 256, lr 1e-3): variants a / f here. ss_a / ss_f
fine-tune the ResNet-50 instead; fm_a / fm_f run the FM schedule on the same features.
Add `,runlocal` for the tiny smoke schedule; configs/common.paper_config has the details.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("imagenet1k", "wanet", arg, grid_size=224)
