"""Digits (embedded, 32x32 RGB), UBA-patch: one 4x4-pixel colour code per class in the
bottom-right corner, every class a target (many-to-many), 10 % of the training set
(the reference counts 2,000 images on ImageNet-1k; rate x N for small sets); frozen
pixel features.

  python main.py --config configs/digits_uba_patch.py --workdir /tmp/digits_uba_patch
  python main.py --config configs/digits_uba_patch.py:f --workdir /tmp/digits_uba_patch_f
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  config = common.digits_config(arg)
  common.set_attack(config, "uba_patch")
  return config
