"""ImageNet-30 (image folder with train/ and test/), blend, 10 % poisoning, target 0.

  python main.py --config configs/imagenet30_blend.py:ss_f --config.backbone.checkpoint=CKPT --workdir runs/imagenet30_blend

Generated trigger by default (uniform noise). The reference's own trigger, exactly
(docs/triggers.md): add --config.attack.params.trigger_file=resources/imagenet_blend_trigger.png

Pretraining the backbone as the reference (All4One, Gaussian blur, batch 128, 400 epochs):
  python main.py --config configs/imagenet30_blend.py --mode pretrain --workdir runs/imagenet30_blend_ssl

The variant (ss_a, ss_f, fm_a, fm_f; a / f on raw pixels) is the argument after the colon
(add `,runlocal` for the tiny smoke schedule);
see configs/common.paper_config for what each needs.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("imagenet30", "blend", arg)
