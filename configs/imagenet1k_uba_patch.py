"""ImageNet-1k, universal backdoor (one patch code per class, many-to-many), 2,000 poisoned images.

  python main.py --config configs/imagenet1k_uba_patch.py:f --config.backbone.checkpoint=R50_CKPT --workdir runs/imagenet1k_uba_patch

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
  return common.paper_config("imagenet1k", "uba_patch", arg, num_poisoned=2000)
