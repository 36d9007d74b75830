"""CIFAR-10, BadNets (the reference's 2x2 patch), 10 % poisoning, target 0.

Needs CIFAR-10 prepared for tfds (array_record) in dataset.data_dir:

  python main.py --config configs/cifar10_badnets.py --config.dataset.data_dir=~/tensorflow_datasets \
      --workdir runs/cifar10_badnets

Reference schedule (VIBE_SPEC.md section 2): 30,000 iterations, E-step every 1,000, batch 256,
SGD lr 1e-3 (prior 0.1), kappa = nu = 10.
"""

from configs import common


def get_config(variant: str = common.DEFAULT_VARIANT):
  config = common.base_config()
  config.variant = variant
  config.dataset.name = "cifar10"
  config.dataset.data_dir = "~/tensorflow_datasets"
  common.set_attack(config, "badnets")
  return config
