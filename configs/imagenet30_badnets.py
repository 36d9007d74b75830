"""ImageNet-30 (image folder with train/ and test/), badnets, 10 % poisoning, target 0.

  python main.py --config configs/imagenet30_badnets.py:ss_f --config.backbone.checkpoint=CKPT --workdir runs/imagenet30_badnets

Generated trigger by default (the reference's 2x2 CIFAR patch at row 4, col 4). The
reference's own trigger, exactly (docs/triggers.md): add
  --config.attack.params.trigger_file=resources/apple-logo-imagenet.png \
  --config.attack.params.row=0 --config.attack.params.col=0

Pretraining the backbone as the reference (All4One, Gaussian blur, batch 128, 400 epochs):
  python main.py --config configs/imagenet30_badnets.py --mode pretrain --workdir runs/imagenet30_badnets_ssl

The variant (ss_a, ss_f, fm_a, fm_f; a / f on raw pixels) is the argument after the colon
(add `,runlocal` for the tiny smoke schedule);
see configs/common.paper_config for what each needs.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("imagenet30", "badnets", arg)
