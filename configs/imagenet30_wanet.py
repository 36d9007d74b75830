"""ImageNet-30 (image folder with train/ and test/), wanet, 10 % poisoning, target 0.

  python main.py --config configs/imagenet30_wanet.py:ss_f --config.backbone.checkpoint=CKPT --workdir runs/imagenet30_wanet

Control grid k = 224 (the reference's imagenet_k: one random offset per pixel of the
224 x 224 image). The reference draws its warp afresh and unseeded for the training, the
un-augmented training and the test set (three torch.rand calls); vibe_jax draws one warp
from attack.seed and uses it for all three, deliberately (docs/triggers.md).

Pretraining the backbone as the reference (All4One, Gaussian blur, batch 128, 400 epochs):
  python main.py --config configs/imagenet30_wanet.py --mode pretrain --workdir runs/imagenet30_wanet_ssl

The variant (ss_a, ss_f, fm_a, fm_f; a / f on raw pixels) is the argument after the colon
(add `,runlocal` for the tiny smoke schedule);
see configs/common.paper_config for what each needs.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("imagenet30", "wanet", arg, grid_size=224)
